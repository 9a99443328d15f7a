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

// InputError is a slash command text that cannot be parsed: what is wrong,
// and the facts needed to say so. Package bot words it for the user
// (bot.InputErrorText); Error is for logs and tests.
type InputError struct {
	Problem InputProblem
	// Token is the word of the input at fault, normalized as above and cut
	// to its first cmdMaxTokenBytes bytes. It is the user's text: quote it
	// with care.
	Token string
	// Flag is the flag concerned, as its name is written after "--" (one
	// of the Flag... constants).
	Flag string
	// Prefix is the kind of ID at fault: "i-" (instance) or "c-" (client).
	Prefix string
	// Suggestion is what the user probably meant (ProblemRoleARN: the role
	// name at the end of the ARN); often empty.
	Suggestion string
	// Count is how many distinct IDs the command names
	// (ProblemTooManyIDs).
	Count int
	// Limit is the bound the input broke: the most words read
	// (ProblemTooManyWords) or characters after the ID's prefix
	// (ProblemIDTooLong).
	Limit int
	// MaxTargets is the most IDs one command may name
	// (ProblemTooManyWords, ProblemTooManyIDs, ProblemBadLimit).
	MaxTargets int
}

// Error is short and for developers, e.g. `input: unknown_flag "--foo"`.
func (e *InputError) Error() string {
	switch {
	case e.Token != "":
		return fmt.Sprintf("input: %s %q", e.Problem, e.Token)
	case e.Flag != "":
		return fmt.Sprintf("input: %s --%s", e.Problem, e.Flag)
	}
	return "input: " + string(e.Problem)
}

// InputProblem is what is wrong with a command's text.
type InputProblem string

// The problems of an InputError, and the fields they set.
const (
	ProblemStatusNotAlone       InputProblem = "status_not_alone"       // "status" then more: Token is the next word
	ProblemStatusNotFirst       InputProblem = "status_not_first"       // Token
	ProblemHelpNotFirst         InputProblem = "help_not_first"         // Token
	ProblemTooManyWords         InputProblem = "too_many_words"         // Limit, MaxTargets
	ProblemWordTooLong          InputProblem = "word_too_long"          // Token
	ProblemLoneDash             InputProblem = "lone_dash"              // Token
	ProblemUnknownFlag          InputProblem = "unknown_flag"           // Token
	ProblemFlagTakesNoValue     InputProblem = "flag_takes_no_value"    // Flag
	ProblemFlagRepeated         InputProblem = "flag_repeated"          // Flag
	ProblemFlagNeedsValue       InputProblem = "flag_needs_value"       // Flag
	ProblemBadRegion            InputProblem = "bad_region"             // Token
	ProblemBadAccountID         InputProblem = "bad_account_id"         // Token
	ProblemBadLimit             InputProblem = "bad_limit"              // Token, MaxTargets
	ProblemRoleARN              InputProblem = "role_arn"               // Token, Suggestion if any
	ProblemBadRole              InputProblem = "bad_role"               // Token
	ProblemIncompleteID         InputProblem = "incomplete_id"          // Token, Prefix
	ProblemIDBadCharacter       InputProblem = "id_bad_character"       // Token, Prefix
	ProblemIDCapitals           InputProblem = "id_capitals"            // Token, Prefix
	ProblemIDTooLong            InputProblem = "id_too_long"            // Token, Prefix, Limit
	ProblemMention              InputProblem = "mention"                // Token
	ProblemRegionWithoutFlag    InputProblem = "region_without_flag"    // Token
	ProblemUnknownWord          InputProblem = "unknown_word"           // Token
	ProblemOutdatedWithIDs      InputProblem = "outdated_with_ids"      // no other field
	ProblemLimitWithoutOutdated InputProblem = "limit_without_outdated" // no other field
	ProblemNoIDs                InputProblem = "no_ids"                 // no other field
	ProblemTooManyIDs           InputProblem = "too_many_ids"           // Count, MaxTargets
	ProblemRoleWithoutUserID    InputProblem = "role_without_user_id"   // no other field
	ProblemUserIDWithoutRole    InputProblem = "user_id_without_role"   // no other field
)

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
)

// The flags, as written after "--".
const (
	FlagRegion             = "region"
	FlagCrossAccountUserID = "cross-account-user-id"
	FlagCrossAccountRole   = "cross-account-role"
	FlagDryRun             = "dry-run"  // takes no value
	FlagForce              = "force"    // takes no value
	FlagOutdated           = "outdated" // takes no value: select the region's outdated clients
	FlagLimit              = "limit"
)

// ParseCommand parses the text of the slash command. maxTargets is the most
// distinct IDs an upgrade may name (HBRBOT_MAX_TARGETS); 0 or less means 500.
// Any error is an *InputError. It never panics, and it reads at most a few
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
				return Command{}, &InputError{Problem: ProblemStatusNotAlone, Token: toks[1].text}
			}
			return Command{Kind: CommandStatus}, nil
		}
	}
	if more {
		return Command{}, &InputError{Problem: ProblemTooManyWords, Limit: limit, MaxTargets: maxTargets}
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
			return Command{}, &InputError{Problem: ProblemWordTooLong, Token: t}
		}
		if strings.HasPrefix(t, "-") {
			name, value, hasValue := strings.Cut(t, "=")
			key := strings.ToLower(strings.ReplaceAll(strings.TrimPrefix(strings.TrimPrefix(name, "-"), "-"), "_", "-"))
			switch key {
			case FlagRegion, FlagCrossAccountUserID, FlagCrossAccountRole, FlagLimit:
			case FlagOutdated, FlagDryRun, FlagForce:
				if hasValue {
					return Command{}, &InputError{Problem: ProblemFlagTakesNoValue, Flag: key}
				}
				switch key {
				case FlagOutdated:
					spec.Outdated = true
				case FlagDryRun:
					spec.DryRun = true
				case FlagForce:
					spec.Force = true
				}
				continue
			case "":
				return Command{}, &InputError{Problem: ProblemLoneDash, Token: t}
			case "help", "h":
				return Command{}, &InputError{Problem: ProblemHelpNotFirst, Token: name}
			default:
				return Command{}, &InputError{Problem: ProblemUnknownFlag, Token: name}
			}
			if flags[key] {
				return Command{}, &InputError{Problem: ProblemFlagRepeated, Flag: key}
			}
			flags[key] = true
			if !hasValue || value == "" {
				if i+1 < len(toks) && !strings.HasPrefix(toks[i+1].text, "-") {
					i++
					value = toks[i].text
				} else {
					return Command{}, &InputError{Problem: ProblemFlagNeedsValue, Flag: key}
				}
			}
			switch key {
			case FlagRegion:
				if !ValidRegion(value) {
					return Command{}, &InputError{Problem: ProblemBadRegion, Token: value}
				}
				spec.Region = value
			case FlagCrossAccountUserID:
				uid, ok := cmdParseUserID(value)
				if !ok {
					return Command{}, &InputError{Problem: ProblemBadAccountID, Token: value}
				}
				if spec.CrossAccount == nil {
					spec.CrossAccount = &CrossAccount{}
				}
				spec.CrossAccount.UserID = uid
				uidSet = true
			case FlagLimit:
				n, err := strconv.Atoi(value)
				if err != nil || n < 1 || n > maxTargets {
					return Command{}, &InputError{Problem: ProblemBadLimit, Token: value, MaxTargets: maxTargets}
				}
				spec.Limit = n
			case FlagCrossAccountRole:
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
			return Command{}, &InputError{Problem: ProblemHelpNotFirst, Token: t}
		case lower == "status":
			return Command{}, &InputError{Problem: ProblemStatusNotFirst, Token: t}
		case strings.HasPrefix(t, "<@") || strings.HasPrefix(t, "<#") || strings.HasPrefix(t, "<!"):
			return Command{}, &InputError{Problem: ProblemMention, Token: t}
		case ValidRegion(t):
			return Command{}, &InputError{Problem: ProblemRegionWithoutFlag, Token: t}
		}
		return Command{}, &InputError{Problem: ProblemUnknownWord, Token: t}
	}

	switch {
	case spec.Outdated && spec.Len() > 0:
		return Command{}, &InputError{Problem: ProblemOutdatedWithIDs}
	case spec.Limit > 0 && !spec.Outdated:
		return Command{}, &InputError{Problem: ProblemLimitWithoutOutdated}
	case spec.Outdated:
		if spec.Limit == 0 {
			spec.Limit = maxTargets
		}
		return Command{Kind: CommandUpgrade, Upgrade: spec}, cmdCheckCross(spec, uidSet)
	}
	if spec.Len() == 0 {
		return Command{}, &InputError{Problem: ProblemNoIDs}
	}
	if err := cmdCheckCross(spec, uidSet); err != nil {
		return Command{}, err
	}
	if n := spec.Len(); n > maxTargets {
		return Command{}, &InputError{Problem: ProblemTooManyIDs, Count: n, MaxTargets: maxTargets}
	}
	return Command{Kind: CommandUpgrade, Upgrade: spec}, nil
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

// cmdCheckID checks a word that starts with i- or c- (in any case), and
// says what is wrong with it.
func cmdCheckID(t string) error {
	if ValidInstanceID(t) || ValidClientID(t) {
		return nil
	}
	e := &InputError{Token: t, Prefix: strings.ToLower(t[:2])}
	rest := t[2:]
	upper := t[0] == 'I' || t[0] == 'C'
	for i := 0; i < len(rest) && e.Problem == ""; i++ {
		switch c := rest[i]; {
		case isLower(c), isDigit(c):
		case 'A' <= c && c <= 'Z':
			upper = true
		default:
			e.Problem = ProblemIDBadCharacter
		}
	}
	switch {
	case rest == "":
		e.Problem = ProblemIncompleteID
	case e.Problem != "":
	case upper:
		e.Problem = ProblemIDCapitals
	default: // the only rule left
		e.Problem, e.Limit = ProblemIDTooLong, MaxIDChars
	}
	return e
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

func cmdCheckRole(s string) error {
	if cmdValidRole(s) {
		return nil
	}
	if strings.HasPrefix(strings.ToLower(s), "acs:ram:") {
		e := &InputError{Problem: ProblemRoleARN, Token: s}
		if i := strings.LastIndexByte(s, '/'); i >= 0 && cmdValidRole(s[i+1:]) {
			e.Suggestion = s[i+1:]
		}
		return e
	}
	return &InputError{Problem: ProblemBadRole, Token: s}
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
		return &InputError{Problem: ProblemRoleWithoutUserID}
	case spec.CrossAccount.RoleName == "":
		return &InputError{Problem: ProblemUserIDWithoutRole}
	}
	return nil
}
