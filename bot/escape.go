package bot

import (
	"strings"

	"github.com/hbrbot/hbrbot"
)

// Text that did not come from the bot itself (HBR's names, versions,
// statuses, codes and messages; what users typed; Slack's errors) is made
// inert before it reaches Slack markup: in mrkdwn a "<" starts a mention
// (<!channel>, <@U…>), a link (<https://…|text>) or a date, and a backtick
// ends a code span. These are the only ways it enters a message.

// mrkdwnEscaper escapes what Slack requires (&, <, >), and swaps a
// backtick for a look-alike: one would pair with the bot's own code spans
// around it.
var mrkdwnEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", "`", "ʼ")

// esc is s as inert mrkdwn text: no mention, link, date or code span can
// come of it.
func esc(s string) string { return mrkdwnEscaper.Replace(s) }

// lineBreaks would break a code span over lines.
var lineBreaks = strings.NewReplacer("\n", " ", "\r", " ")

// code is s as an inert code span.
func code(s string) string { return "`" + esc(lineBreaks.Replace(s)) + "`" }

// mention mentions a Slack user by ID; anything that is not a user ID is
// shown as code instead, so it cannot mention anyone else.
func mention(id string) string {
	if !hbrbot.ValidUserID(id) {
		return code(id)
	}
	return "<@" + id + ">"
}

// csvCell neutralises a cell a spreadsheet would run as a formula.
func csvCell(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}
