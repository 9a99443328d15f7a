package hbrbot

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// This file parses the text of the /hbr-upgrade slash command:
//
//	ID... [--region REGION] [--cross-account-user-id N --cross-account-role NAME]
//	help
//	status
//
// The text comes from Slack as the user typed it, so before it is split into
// words it is normalized the way Slack and people's keyboards mangle it:
//
//   - Slack link markup is unwrapped: <url|label> becomes label, and <url>
//     becomes url, without a mailto:, http:// or https:// scheme and without a
//     trailing slash. Mentions (<@U…>, <#C…|name>, <!here>) are kept as they
//     are, and refused as "a Slack mention, not an ID".
//   - The entities Slack escapes with (&amp; &lt; &gt;) are decoded to plain
//     characters; they never start link markup.
//   - Words are separated by any Unicode white space (non-breaking and
//     ideographic spaces included), commas (also "，" and "、"), semicolons,
//     quotes (' " and the curly ones), square brackets and backticks, so IDs
//     in code spans (`i-…`, ```i-…```) and pasted JSON arrays (["i-a","i-b"])
//     read as IDs.
//   - Invisible format characters (zero-width space and joiners, word joiner,
//     BOM, soft hyphen, bidi marks, variation selectors) are dropped.
//   - Full-width ASCII (what CJK input methods type: "ｉ－ａｂｃ", "，") becomes
//     ASCII.
//   - Every dash look-alike (hyphen, non-breaking hyphen, figure, en and em
//     dashes, horizontal bar, minus sign, …) becomes "-". A flag may be
//     written with one or two dashes, so "—region" (an em dash autocorrected
//     from "--"), "–region", "−region", "-region" and "--region" are all the
//     region flag.
//
// Then the words are read. No words at all, or "help" (also "--help", "-h",
// "?") as the first word, whatever follows, is a request for help; "status"
// alone asks for the status. Anything else is an upgrade: IDs and flags in
// any order, a flag's value either after "=" or as the next word. An error
// names the first word that is wrong. Keywords and flag names are matched
// case-insensitively ("_" may stand for "-" in flag names); IDs, regions
// and values are not folded: an ID or region with capitals is refused.

// CommandError is a slash command text that cannot be parsed. Its message
// says what is wrong, for the user who typed the command: it is Slack mrkdwn,
// safe to post as it is (the few words of the input it quotes are cut to a
// short prefix, put in a code span, and escaped: & < >).
type CommandError struct {
	Message string
}

func (e *CommandError) Error() string { return e.Message }

const (
	// cmdDefaultMaxTargets is the limit ParseCommand applies when given
	// none (HBRBOT_MAX_TARGETS' default).
	cmdDefaultMaxTargets = 500
	// cmdMaxTokenBytes: no valid word is longer; a longer one is refused
	// as soon as it is seen, without reading the rest of it.
	cmdMaxTokenBytes = 256
	// cmdMaxMarkupBytes bounds the inside of a <…> link.
	cmdMaxMarkupBytes = 1024
	// cmdMaxTokens is the most words ever looked at.
	cmdMaxTokens = 100_000
	// cmdExcerptRunes is the most runes of a word an error message quotes.
	cmdExcerptRunes = 32
)

const (
	cmdFlagRegion = "region"
	cmdFlagUserID = "cross-account-user-id"
	cmdFlagRole   = "cross-account-role"
	cmdFlagDryRun = "dry-run"  // takes no value
	cmdFlagForce  = "force"    // takes no value
	cmdFlagStale  = "outdated" // takes no value: select the region's outdated clients
	cmdFlagLimit  = "limit"
)

// ParseCommand parses the text of the slash command. maxTargets is the most
// distinct IDs an upgrade may name (HBRBOT_MAX_TARGETS); 0 or less means 500.
// Any error is a *CommandError. It never panics, and it reads at most a few
// thousand words of the text (2*maxTargets+32), so a huge text costs little.
func ParseCommand(text string, maxTargets int) (Command, error) {
	if maxTargets <= 0 {
		maxTargets = cmdDefaultMaxTargets
	}
	limit := cmdMaxTokens
	if maxTargets < (cmdMaxTokens-32)/2 {
		limit = 2*maxTargets + 32
	}
	toks, more := cmdTokenize(text, limit)
	if len(toks) == 0 {
		return Command{Kind: CommandHelp}, nil
	}
	if !toks[0].long {
		switch cmdKeyword(toks[0].text) {
		case "help":
			return Command{Kind: CommandHelp}, nil
		case "status":
			if len(toks) > 1 {
				return Command{}, cmdErrorf("`status` takes nothing after it, not %s: use `/hbr-upgrade status` on its own.", cmdQuote(toks[1].text))
			}
			return Command{Kind: CommandStatus}, nil
		}
	}
	if more {
		return Command{}, cmdErrorf("The command is too long: more than %d words. One command may name at most %d IDs.", limit, maxTargets)
	}

	var (
		spec   UpgradeSpec
		seen   = make(map[string]bool, min(len(toks), maxTargets+1))
		flags  = make(map[string]bool)
		uidSet bool
	)
	for i := 0; i < len(toks); i++ {
		tok := toks[i]
		t := tok.text
		if tok.long {
			return Command{}, cmdErrorf("%s is too long to be an ID, a flag or a flag's value.", cmdQuote(t))
		}
		if strings.HasPrefix(t, "-") {
			name, value, hasValue := strings.Cut(t, "=")
			key := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(strings.TrimPrefix(name, "-"), "-"), "_", "-"))
			switch key {
			case cmdFlagRegion, cmdFlagUserID, cmdFlagRole, cmdFlagLimit:
			case cmdFlagStale:
				if hasValue {
					return Command{}, cmdErrorf("`--outdated` takes no value.")
				}
				spec.Outdated = true
				continue
			case cmdFlagDryRun:
				if hasValue {
					return Command{}, cmdErrorf("`--dry-run` takes no value.")
				}
				spec.DryRun = true
				continue
			case cmdFlagForce:
				if hasValue {
					return Command{}, cmdErrorf("`--force` takes no value.")
				}
				spec.Force = true
				continue
			case "":
				return Command{}, cmdErrorf("%s on its own is neither an ID nor a flag; flags are written like `--region cn-hangzhou`.", cmdQuote(t))
			case "help", "h":
				return Command{}, cmdErrorf("%s must come first: type `/hbr-upgrade help` for the usage.", cmdQuote(name))
			default:
				return Command{}, cmdErrorf("Unknown flag %s. The flags are `--region`, `--cross-account-user-id`, `--cross-account-role`, `--dry-run`, `--force`, `--outdated` and `--limit`.", cmdQuote(name))
			}
			if flags[key] {
				return Command{}, cmdErrorf("`--%s` is given more than once.", key)
			}
			flags[key] = true
			if !hasValue || value == "" {
				if i+1 < len(toks) && !strings.HasPrefix(toks[i+1].text, "-") {
					i++
					value = toks[i].text
				} else {
					return Command{}, cmdErrorf("`--%s` needs a value, like %s.", key, cmdFlagExample(key))
				}
			}
			switch key {
			case cmdFlagRegion:
				if !ValidRegion(value) {
					return Command{}, cmdErrorf("%s is not a region ID. Region IDs are lowercase, like `cn-hangzhou` or `ap-southeast-1`.", cmdQuote(value))
				}
				spec.Region = value
			case cmdFlagUserID:
				uid, ok := cmdParseUserID(value)
				if !ok {
					return Command{}, cmdErrorf("`--cross-account-user-id` takes an Alibaba Cloud account ID (digits only, like `1234567890123456`), not %s.", cmdQuote(value))
				}
				if spec.CrossAccount == nil {
					spec.CrossAccount = &CrossAccount{}
				}
				spec.CrossAccount.UserID = uid
				uidSet = true
			case cmdFlagLimit:
				n, err := strconv.Atoi(value)
				if err != nil || n < 1 || n > maxTargets {
					return Command{}, cmdErrorf("`--limit` takes a number of clients from 1 to %d, not %s.", maxTargets, cmdQuote(value))
				}
				spec.Limit = n
			case cmdFlagRole:
				if err := cmdCheckRole(value); err != nil {
					return Command{}, err
				}
				if spec.CrossAccount == nil {
					spec.CrossAccount = &CrossAccount{}
				}
				spec.CrossAccount.RoleName = value
			}
			continue
		}

		lower := strings.ToLower(t)
		if strings.HasPrefix(lower, "i-") || strings.HasPrefix(lower, "c-") {
			if err := cmdCheckID(t); err != nil {
				return Command{}, err
			}
			if seen[t] {
				continue
			}
			seen[t] = true
			if t[0] == 'i' {
				spec.InstanceIDs = append(spec.InstanceIDs, t)
			} else {
				spec.ClientIDs = append(spec.ClientIDs, t)
			}
			continue
		}
		switch {
		case lower == "help" || lower == "?":
			return Command{}, cmdErrorf("%s must come first: type `/hbr-upgrade help` for the usage.", cmdQuote(t))
		case lower == "status":
			return Command{}, cmdErrorf("%s takes no IDs or flags: use `/hbr-upgrade status` on its own.", cmdQuote(t))
		case strings.HasPrefix(t, "<@") || strings.HasPrefix(t, "<#") || strings.HasPrefix(t, "<!"):
			return Command{}, cmdErrorf("%s is a Slack mention, not an instance or client ID.", cmdQuote(t))
		case ValidRegion(t):
			return Command{}, cmdErrorf("%s is not an ID. To choose a region, put `--region` before it.", cmdQuote(t))
		}
		return Command{}, cmdErrorf("%s is not an instance ID (`i-…`), a client ID (`c-…`) or a flag.", cmdQuote(t))
	}

	switch {
	case spec.Outdated && spec.Len() > 0:
		return Command{}, cmdErrorf("`--outdated` selects the clients itself: give it no IDs, as in `--outdated --region cn-hangzhou`.")
	case spec.Limit > 0 && !spec.Outdated:
		return Command{}, cmdErrorf("`--limit` goes with `--outdated` only.")
	case spec.Outdated:
		if spec.Limit == 0 {
			spec.Limit = maxTargets
		}
		return Command{Kind: CommandUpgrade, Upgrade: spec}, cmdCheckCross(spec, uidSet)
	}
	if spec.Len() == 0 {
		return Command{}, cmdErrorf("No instance or client IDs given. Example: `/hbr-upgrade i-bp1abc c-000xyz`; `/hbr-upgrade help` shows the usage.")
	}
	if err := cmdCheckCross(spec, uidSet); err != nil {
		return Command{}, err
	}
	if n := spec.Len(); n > maxTargets {
		return Command{}, cmdErrorf("Too many IDs: %d given, at most %d per command.", n, maxTargets)
	}
	return Command{Kind: CommandUpgrade, Upgrade: spec}, nil
}

// Usage is the help text of the slash command, in Slack mrkdwn.
func Usage() string {
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

func cmdErrorf(format string, args ...any) *CommandError {
	return &CommandError{Message: fmt.Sprintf(format, args...)}
}

// cmdQuote quotes a word of the input in an error message: its beginning,
// in a code span, with control characters replaced and & < > escaped for
// Slack; the quoted text, escapes included, is at most cmdExcerptRunes runes
// (and "…" when cut).
func cmdQuote(s string) string {
	var b strings.Builder
	b.WriteByte('`')
	n := 0
	for _, r := range s {
		var esc string
		switch {
		case r == '&':
			esc = "&amp;"
		case r == '<':
			esc = "&lt;"
		case r == '>':
			esc = "&gt;"
		case r == '`' || !unicode.IsPrint(r):
			esc = string(utf8.RuneError)
		default:
			esc = string(r)
		}
		if k := utf8.RuneCountInString(esc); n+k <= cmdExcerptRunes {
			b.WriteString(esc)
			n += k
			continue
		}
		b.WriteString("…")
		break
	}
	b.WriteByte('`')
	return b.String()
}

// cmdKeyword says whether a first word is "help" or "status".
func cmdKeyword(t string) string {
	l := strings.ToLower(t)
	switch l {
	case "help", "-help", "--help", "-h", "--h", "?":
		return "help"
	case "status":
		return "status"
	}
	return ""
}

func cmdFlagExample(key string) string {
	switch key {
	case cmdFlagRegion:
		return "`--region cn-hangzhou`"
	case cmdFlagUserID:
		return "`--cross-account-user-id 1234567890123456`"
	}
	return "`--cross-account-role hbrcrossrole`"
}

// cmdCheckID checks a word that starts with i- or c- (in any case), and
// says what is wrong with it.
func cmdCheckID(t string) *CommandError {
	if ValidInstanceID(t) || ValidClientID(t) {
		return nil
	}
	kind := "instance"
	if t[0] == 'c' || t[0] == 'C' {
		kind = "client"
	}
	prefix := strings.ToLower(t[:2])
	rest := t[2:]
	if rest == "" {
		return cmdErrorf("%s is an incomplete %s ID: something must follow `%s`.", cmdQuote(t), kind, prefix)
	}
	upper := t[0] == 'I' || t[0] == 'C'
	for i := 0; i < len(rest); i++ {
		switch c := rest[i]; {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9':
		case 'A' <= c && c <= 'Z':
			upper = true
		default:
			return cmdErrorf("%s is not a valid %s ID: only lowercase letters and digits may follow `%s`.", cmdQuote(t), kind, prefix)
		}
	}
	if upper {
		return cmdErrorf("%s has capital letters: %s IDs are lowercase.", cmdQuote(t), kind)
	}
	if len(rest) > MaxIDChars {
		return cmdErrorf("%s is too long for an %s ID (at most %d characters after `%s`).", cmdQuote(t), kind, MaxIDChars, prefix)
	}
	return nil
}

// cmdParseUserID parses an Alibaba Cloud account ID: a positive decimal
// int64 without sign or leading zero.
func cmdParseUserID(s string) (int64, bool) {
	if s == "" || s[0] == '0' || len(s) > 19 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil && ValidAccountID(n)
}

// cmdValidRole says whether s is a valid RAM role name: 1..64 letters,
// digits, '.', '-' and '_'.
func cmdValidRole(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '.', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}

func cmdCheckRole(s string) *CommandError {
	if cmdValidRole(s) {
		return nil
	}
	if strings.HasPrefix(strings.ToLower(s), "acs:ram:") {
		if i := strings.LastIndexByte(s, '/'); i >= 0 && cmdValidRole(s[i+1:]) {
			return cmdErrorf("`--cross-account-role` takes the role's name, not its ARN: did you mean %s?", cmdQuote(s[i+1:]))
		}
		return cmdErrorf("`--cross-account-role` takes the role's name (like `hbrcrossrole`), not its ARN.")
	}
	return cmdErrorf("`--cross-account-role` takes a RAM role name (1 to 64 letters, digits, `.`, `-` or `_`), not %s.", cmdQuote(s))
}

// Tokenizing.

type cmdToken struct {
	text string
	long bool // longer than cmdMaxTokenBytes: text is its beginning
}

type cmdLexer struct {
	toks  []cmdToken
	cur   []byte
	long  bool
	limit int
	done  bool // stop reading: a word too long, or limit words passed
	more  bool // there were more than limit words
	// Next '<' and '>' after the current position, so that finding link
	// markup costs O(len(text)) in all.
	nextLT, nextGT int
}

// cmdTokenize splits text into normalized words (see the top of the file).
// It reads at most limit words; more says there were more. A word longer
// than cmdMaxTokenBytes ends the reading; it is the last one, marked long.
func cmdTokenize(text string, limit int) (toks []cmdToken, more bool) {
	l := &cmdLexer{limit: limit, nextLT: -2, nextGT: -2}
	l.scan(text, true)
	l.flush()
	return l.toks, l.more
}

func (l *cmdLexer) scan(s string, markup bool) {
	for i := 0; i < len(s) && !l.done; {
		switch s[i] {
		case '<':
			if markup {
				if seg, end, ok := l.link(s, i); ok {
					l.scan(seg, false)
					i = end
					continue
				}
			}
		case '&':
			if r, n := cmdEntity(s[i:]); n > 0 {
				l.char(r)
				i += n
				continue
			}
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		l.rune(r)
		i += n
	}
}

// link looks at the '<' at s[i]. When it starts Slack link markup it returns
// the text that stands for the link and the index after the closing '>'.
func (l *cmdLexer) link(s string, i int) (seg string, end int, ok bool) {
	if l.nextLT != -1 && l.nextLT <= i {
		l.nextLT = cmdIndexFrom(s, i+1, '<')
	}
	if l.nextGT != -1 && l.nextGT <= i {
		l.nextGT = cmdIndexFrom(s, i+1, '>')
	}
	j := l.nextGT
	if j < 0 || (l.nextLT >= 0 && l.nextLT < j) || j-i-1 > cmdMaxMarkupBytes || j == i+1 {
		return "", 0, false
	}
	content := s[i+1 : j]
	switch content[0] {
	case '@', '#', '!': // a mention: keep it, to refuse it by name
		return "", 0, false
	}
	if _, label, found := strings.Cut(content, "|"); found {
		return label, j + 1, true
	}
	lower := strings.ToLower(content)
	for _, scheme := range []string{"mailto:", "http://", "https://"} {
		if strings.HasPrefix(lower, scheme) {
			content = strings.TrimSuffix(content[len(scheme):], "/")
			break
		}
	}
	return content, j + 1, true
}

func cmdIndexFrom(s string, from int, c byte) int {
	if from >= len(s) {
		return -1
	}
	if k := strings.IndexByte(s[from:], c); k >= 0 {
		return from + k
	}
	return -1
}

// cmdEntity decodes the HTML entity Slack escapes with at the start of s.
func cmdEntity(s string) (rune, int) {
	switch {
	case strings.HasPrefix(s, "&amp;"):
		return '&', 5
	case strings.HasPrefix(s, "&lt;"):
		return '<', 4
	case strings.HasPrefix(s, "&gt;"):
		return '>', 4
	}
	return 0, 0
}

const (
	cmdRuneChar = iota
	cmdRuneSep
	cmdRuneSkip
)

// cmdNormRune normalizes one rune of the input and says what it is.
func cmdNormRune(r rune) (rune, int) {
	if r < utf8.RuneSelf { // ASCII, the common case
		switch r {
		case ' ', '\t', '\n', '\v', '\f', '\r', ',', ';', '`', '"', '\'', '[', ']':
			return r, cmdRuneSep
		}
		return r, cmdRuneChar
	}
	if 0xFF01 <= r && r <= 0xFF5E { // full-width ASCII
		r -= 0xFEE0
	}
	switch r {
	case ',', ';', '`', '"', '\'', '[', ']',
		'\u3001', '\uFF64', // ideographic commas
		'\u2018', '\u2019', '\u201A', '\u201B', '\u201C', '\u201D', '\u201E', '\u201F':
		return r, cmdRuneSep
	case '\u2010', '\u2011', '\u2012', '\u2013', '\u2014', '\u2015', '\u2212', '\u2043',
		'\u2E3A', '\u2E3B', '\uFE58', '\uFE63', '\u058A', '\u1806', '\u2E17', '\u2E1A', '\u301C', '\u30A0':
		return '-', cmdRuneChar
	case '\u034F': // combining grapheme joiner
		return r, cmdRuneSkip
	}
	switch {
	case unicode.IsSpace(r):
		return r, cmdRuneSep
	case unicode.Is(unicode.Cf, r), unicode.Is(unicode.Variation_Selector, r):
		return r, cmdRuneSkip
	}
	return r, cmdRuneChar
}

func (l *cmdLexer) rune(r rune) {
	r, kind := cmdNormRune(r)
	switch kind {
	case cmdRuneSkip:
		return
	case cmdRuneSep:
		l.flush()
		return
	}
	l.char(r)
}

// char adds r to the current word, as it is.
func (l *cmdLexer) char(r rune) {
	if len(l.cur)+utf8.RuneLen(r) > cmdMaxTokenBytes {
		l.long = true
		l.flush()
		return
	}
	l.cur = utf8.AppendRune(l.cur, r)
}

func (l *cmdLexer) flush() {
	if l.done || (len(l.cur) == 0 && !l.long) {
		return
	}
	if len(l.toks) == l.limit {
		l.more, l.done = true, true
		return
	}
	l.toks = append(l.toks, cmdToken{text: string(l.cur), long: l.long})
	if l.long {
		l.done = true
	}
	l.cur, l.long = l.cur[:0], false
}

// cmdCheckCross checks that the cross-account flags came together.
func cmdCheckCross(spec UpgradeSpec, uidSet bool) error {
	switch {
	case spec.CrossAccount == nil:
		return nil
	case !uidSet:
		return cmdErrorf("`--cross-account-role` needs `--cross-account-user-id` too: a cross-account upgrade names both.")
	case spec.CrossAccount.RoleName == "":
		return cmdErrorf("`--cross-account-user-id` needs `--cross-account-role` too: a cross-account upgrade names both.")
	}
	return nil
}
