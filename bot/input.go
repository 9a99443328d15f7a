package bot

import (
	"errors"
	"fmt"

	"github.com/hbrbot/hbrbot"
)

// excerptRunes is the most runes of the user's input that a message quotes.
const excerptRunes = 32

// InputErrorText says what is wrong with a command, for the user who typed
// it. It is Slack mrkdwn, safe to post as it is: the few words of the input
// it quotes are cut to a short prefix, put in a code span, and escaped
// (& < >). An error that is not an *hbrbot.InputError, such as a policy
// refusal, already speaks to the user: its Error() is the text.
func InputErrorText(err error) string {
	var e *hbrbot.InputError
	if !errors.As(err, &e) {
		return err.Error()
	}
	tok := quote(e.Token)
	switch e.Problem {
	case hbrbot.ProblemStatusNotAlone:
		return "`status` takes nothing after it, not " + tok + ": use `/hbr-upgrade status` on its own."
	case hbrbot.ProblemStatusNotFirst:
		return tok + " takes no IDs or flags: use `/hbr-upgrade status` on its own."
	case hbrbot.ProblemHelpNotFirst:
		return tok + " must come first: type `/hbr-upgrade help` for the usage."
	case hbrbot.ProblemTooManyWords:
		return fmt.Sprintf("The command is too long: more than %d words. One command may name at most %d IDs.", e.Limit, e.MaxTargets)
	case hbrbot.ProblemWordTooLong:
		return tok + " is too long to be an ID, a flag or a flag's value."
	case hbrbot.ProblemLoneDash:
		return tok + " on its own is neither an ID nor a flag; flags are written like `--region cn-hangzhou`."
	case hbrbot.ProblemUnknownFlag:
		return "Unknown flag " + tok + ". The flags are `--region`, `--cross-account-user-id`, `--cross-account-role`, `--dry-run`, `--force`, `--outdated` and `--limit`."
	case hbrbot.ProblemFlagTakesNoValue:
		return "`--" + e.Flag + "` takes no value."
	case hbrbot.ProblemFlagRepeated:
		return "`--" + e.Flag + "` is given more than once."
	case hbrbot.ProblemFlagNeedsValue:
		return "`--" + e.Flag + "` needs a value, like " + flagExample(e.Flag) + "."
	case hbrbot.ProblemBadRegion:
		return tok + " is not a region ID. Region IDs are lowercase, like `cn-hangzhou` or `ap-southeast-1`."
	case hbrbot.ProblemBadAccountID:
		return "`--cross-account-user-id` takes an Alibaba Cloud account ID (digits only, like `1234567890123456`), not " + tok + "."
	case hbrbot.ProblemBadLimit:
		return fmt.Sprintf("`--limit` takes a number of clients from 1 to %d, not %s.", e.MaxTargets, tok)
	case hbrbot.ProblemRoleARN:
		if e.Suggestion != "" {
			return "`--cross-account-role` takes the role's name, not its ARN: did you mean " + quote(e.Suggestion) + "?"
		}
		return "`--cross-account-role` takes the role's name (like `hbrcrossrole`), not its ARN."
	case hbrbot.ProblemBadRole:
		return "`--cross-account-role` takes a RAM role name (1 to 64 letters, digits, `.`, `-` or `_`), not " + tok + "."
	case hbrbot.ProblemIncompleteID:
		return fmt.Sprintf("%s is an incomplete %s ID: something must follow `%s`.", tok, idKind(e.Prefix), e.Prefix)
	case hbrbot.ProblemIDBadCharacter:
		return fmt.Sprintf("%s is not a valid %s ID: only lowercase letters and digits may follow `%s`.", tok, idKind(e.Prefix), e.Prefix)
	case hbrbot.ProblemIDCapitals:
		return fmt.Sprintf("%s has capital letters: %s IDs are lowercase.", tok, idKind(e.Prefix))
	case hbrbot.ProblemIDTooLong:
		return fmt.Sprintf("%s is too long for an %s ID (at most %d characters after `%s`).", tok, idKind(e.Prefix), e.Limit, e.Prefix)
	case hbrbot.ProblemMention:
		return tok + " is a Slack mention, not an instance or client ID."
	case hbrbot.ProblemRegionWithoutFlag:
		return tok + " is not an ID. To choose a region, put `--region` before it."
	case hbrbot.ProblemUnknownWord:
		return tok + " is not an instance ID (`i-…`), a client ID (`c-…`) or a flag."
	case hbrbot.ProblemOutdatedWithIDs:
		return "`--outdated` selects the clients itself: give it no IDs, as in `--outdated --region cn-hangzhou`."
	case hbrbot.ProblemLimitWithoutOutdated:
		return "`--limit` goes with `--outdated` only."
	case hbrbot.ProblemNoIDs:
		return "No instance or client IDs given. Example: `/hbr-upgrade i-bp1abc c-000xyz`; `/hbr-upgrade help` shows the usage."
	case hbrbot.ProblemTooManyIDs:
		return fmt.Sprintf("Too many IDs: %d given, at most %d per command.", e.Count, e.MaxTargets)
	case hbrbot.ProblemRoleWithoutUserID:
		return "`--cross-account-role` needs `--cross-account-user-id` too: a cross-account upgrade names both."
	case hbrbot.ProblemUserIDWithoutRole:
		return "`--cross-account-user-id` needs `--cross-account-role` too: a cross-account upgrade names both."
	}
	return e.Error() // a problem without words yet; TestInputErrorText lists them all
}

// flagExample shows a flag that takes a value with one.
func flagExample(flag string) string {
	switch flag {
	case hbrbot.FlagRegion:
		return "`--region cn-hangzhou`"
	case hbrbot.FlagCrossAccountUserID:
		return "`--cross-account-user-id 1234567890123456`"
	}
	return "`--cross-account-role hbrcrossrole`"
}

func idKind(prefix string) string {
	if prefix == "c-" {
		return "client"
	}
	return "instance"
}

// quote quotes a word of the input: its first excerptRunes runes, as an
// inert code span.
func quote(s string) string { return code(hbrbot.Excerpt(s, excerptRunes)) }

// UsageText is the help text of the slash command, in Slack mrkdwn.
func UsageText() string {
	return "*`/hbr-upgrade`* upgrades HBR backup clients, after an approver approves.\n" +
		"`/hbr-upgrade ID... [--region REGION] [--cross-account-user-id N --cross-account-role NAME]`\n" +
		"• `ID`: an ECS instance ID (`i-…`) or an HBR client ID (`c-…`). Separate IDs with spaces or commas; " +
		"duplicates are dropped. One command may name up to `HBRBOT_MAX_TARGETS` IDs (500 by default); " +
		"they are upgraded in HBR jobs of at most 100 IDs.\n" +
		"• `--region REGION`: the region of the IDs, like `cn-hangzhou` or `ap-southeast-1`; " +
		"without it, the bot's default region.\n" +
		"• `--cross-account-user-id N --cross-account-role NAME`: upgrade clients of another Alibaba Cloud " +
		"account (its account ID) through a RAM role it trusts. Give both or neither.\n" +
		"• `--dry-run`: go through approval and reporting, but never call UpgradeBackupClients.\n" +
		"• `--force`: also upgrade clients that already run the latest version (left out otherwise).\n" +
		"• `--outdated [--limit N]`: instead of IDs, every ECS client of the region older than the latest version (at most N).\n" +
		"• A flag's value may also follow `=`: `--region=cn-hangzhou`.\n" +
		"The command posts an approval card to the channel; nothing is upgraded until an approver clicks *Approve*.\n" +
		"*Examples*\n" +
		"`/hbr-upgrade i-bp1abcdefgh12345678 i-bp1ijklmnop12345678`\n" +
		"`/hbr-upgrade c-000abcdefgh1234567, c-000ijklmnop1234567 --region ap-southeast-1`\n" +
		"`/hbr-upgrade i-bp1abcdefgh12345678 --cross-account-user-id 1234567890123456 --cross-account-role hbrcrossrole`\n" +
		"`/hbr-upgrade status`: the requests and jobs in flight in this channel.\n" +
		"`/hbr-upgrade help`: this message."
}
