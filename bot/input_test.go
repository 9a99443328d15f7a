package bot

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/hbrbot/hbrbot"
	"github.com/hbrbot/hbrbot/policy"
)

// TestInputErrorText: each problem of the parser in the words users see.
func TestInputErrorText(t *testing.T) {
	tests := []struct {
		problem hbrbot.InputProblem
		text    string
		max     int
		want    string
	}{
		{hbrbot.ProblemStatusNotAlone, "status i-abc", 0, "`status` takes nothing after it, not `i-abc`: use `/hbr-upgrade status` on its own."},
		{hbrbot.ProblemStatusNotFirst, "i-abc status", 0, "`status` takes no IDs or flags: use `/hbr-upgrade status` on its own."},
		{hbrbot.ProblemHelpNotFirst, "i-abc --help", 0, "`--help` must come first: type `/hbr-upgrade help` for the usage."},
		{hbrbot.ProblemTooManyWords, strings.Repeat("i-a ", 39), 3, "The command is too long: more than 38 words. One command may name at most 3 IDs."},
		{hbrbot.ProblemWordTooLong, "i-a " + strings.Repeat("x", 4000), 0, "`" + strings.Repeat("x", 32) + "…` is too long to be an ID, a flag or a flag's value."},
		{hbrbot.ProblemLoneDash, "i-a - i-b", 0, "`-` on its own is neither an ID nor a flag; flags are written like `--region cn-hangzhou`."},
		{hbrbot.ProblemUnknownFlag, "i-a --foo", 0, "Unknown flag `--foo`. The flags are `--region`, `--cross-account-user-id`, `--cross-account-role`, `--dry-run`, `--force`, `--outdated` and `--limit`."},
		{hbrbot.ProblemFlagTakesNoValue, "i-abc --dry-run=yes", 0, "`--dry-run` takes no value."},
		{hbrbot.ProblemFlagRepeated, "i-a --region cn-hangzhou --region cn-hangzhou", 0, "`--region` is given more than once."},
		{hbrbot.ProblemFlagNeedsValue, "i-a --region", 0, "`--region` needs a value, like `--region cn-hangzhou`."},
		{hbrbot.ProblemFlagNeedsValue, "i-a --cross-account-user-id", 0, "`--cross-account-user-id` needs a value, like `--cross-account-user-id 1234567890123456`."},
		{hbrbot.ProblemFlagNeedsValue, "i-a --cross-account-role", 0, "`--cross-account-role` needs a value, like `--cross-account-role hbrcrossrole`."},
		{hbrbot.ProblemBadRegion, "i-a --region hangzhou", 0, "`hangzhou` is not a region ID. Region IDs are lowercase, like `cn-hangzhou` or `ap-southeast-1`."},
		{hbrbot.ProblemBadAccountID, "i-a --cross-account-user-id 0 --cross-account-role r", 0, "`--cross-account-user-id` takes an Alibaba Cloud account ID (digits only, like `1234567890123456`), not `0`."},
		{hbrbot.ProblemBadLimit, "--outdated --limit 0", 0, "`--limit` takes a number of clients from 1 to 500, not `0`."},
		{hbrbot.ProblemRoleARN, "i-a --cross-account-user-id 1 --cross-account-role acs:ram::1234567890123456:role/hbrcrossrole", 0, "`--cross-account-role` takes the role's name, not its ARN: did you mean `hbrcrossrole`?"},
		{hbrbot.ProblemRoleARN, "i-a --cross-account-user-id 1 --cross-account-role acs:ram::1:role/", 0, "`--cross-account-role` takes the role's name (like `hbrcrossrole`), not its ARN."},
		{hbrbot.ProblemBadRole, "i-a --cross-account-user-id 1 --cross-account-role hbr!role", 0, "`--cross-account-role` takes a RAM role name (1 to 64 letters, digits, `.`, `-` or `_`), not `hbr!role`."},
		{hbrbot.ProblemIncompleteID, "i-", 0, "`i-` is an incomplete instance ID: something must follow `i-`."},
		{hbrbot.ProblemIncompleteID, "i-a C-", 0, "`C-` is an incomplete client ID: something must follow `c-`."},
		{hbrbot.ProblemIDBadCharacter, "c-ab_c", 0, "`c-ab_c` is not a valid client ID: only lowercase letters and digits may follow `c-`."},
		{hbrbot.ProblemIDCapitals, "i-ABC", 0, "`i-ABC` has capital letters: instance IDs are lowercase."},
		{hbrbot.ProblemIDTooLong, "i-" + strings.Repeat("a", 65), 0, "`i-" + strings.Repeat("a", 30) + "…` is too long for an instance ID (at most 64 characters after `i-`)."},
		{hbrbot.ProblemMention, "i-a <@U012ABCDEF>", 0, "`&lt;@U012ABCDEF&gt;` is a Slack mention, not an instance or client ID."},
		{hbrbot.ProblemRegionWithoutFlag, "i-a cn-hangzhou", 0, "`cn-hangzhou` is not an ID. To choose a region, put `--region` before it."},
		{hbrbot.ProblemUnknownWord, "i-a upgrade", 0, "`upgrade` is not an instance ID (`i-…`), a client ID (`c-…`) or a flag."},
		{hbrbot.ProblemOutdatedWithIDs, "--outdated i-abc", 0, "`--outdated` selects the clients itself: give it no IDs, as in `--outdated --region cn-hangzhou`."},
		{hbrbot.ProblemLimitWithoutOutdated, "i-abc --limit 3", 0, "`--limit` goes with `--outdated` only."},
		{hbrbot.ProblemNoIDs, "--region cn-hangzhou", 0, "No instance or client IDs given. Example: `/hbr-upgrade i-bp1abc c-000xyz`; `/hbr-upgrade help` shows the usage."},
		{hbrbot.ProblemTooManyIDs, "i-a i-b c-c c-d", 3, "Too many IDs: 4 given, at most 3 per command."},
		{hbrbot.ProblemRoleWithoutUserID, "i-a --cross-account-role hbrcrossrole", 0, "`--cross-account-role` needs `--cross-account-user-id` too: a cross-account upgrade names both."},
		{hbrbot.ProblemUserIDWithoutRole, "i-a --cross-account-user-id 1234567890123456", 0, "`--cross-account-user-id` needs `--cross-account-role` too: a cross-account upgrade names both."},
	}
	for _, tt := range tests {
		_, err := hbrbot.ParseCommand(tt.text, tt.max)
		var e *hbrbot.InputError
		if !errors.As(err, &e) || e.Problem != tt.problem {
			t.Errorf("ParseCommand(%.40q) error %v, want problem %s", tt.text, err, tt.problem)
			continue
		}
		if got := InputErrorText(err); got != tt.want {
			t.Errorf("%s:\n got %s\nwant %s", tt.problem, got, tt.want)
		}
	}

	// The rules' refusals come through the same path.
	refusal := &policy.Refusal{Rule: policy.RuleRegions, Region: "cn-beijing", Allowed: []string{"cn-hangzhou"}}
	if got, want := CommandRefusalText(refusal), "Region `cn-beijing` is not allowed in this channel (allowed: cn-hangzhou)."; got != want {
		t.Errorf("refusal rendered as %q, want %q", got, want)
	}
}

// FuzzInputErrorText: whatever is typed, the answer is short and quotes
// only a little of it, in code spans, without live Slack markup.
func FuzzInputErrorText(f *testing.F) {
	for _, s := range []string{
		"status i-a", "i-A", "i-", "--", "-", "--region", "--foo=bar", "<@U123> <#C1|x> <!here>", "&lt;i-a&gt; &amp;",
		"i-a --cross-account-role acs:ram::1:role/r", "i-a\xff\xfe", "i-a `x` <y> &z", strings.Repeat("<", 300),
	} {
		f.Add(s)
	}
	unescape := strings.NewReplacer("&amp;", "&", "&lt;", "<", "&gt;", ">")
	f.Fuzz(func(t *testing.T, text string) {
		_, err := hbrbot.ParseCommand(text, 0)
		if err == nil {
			return
		}
		msg := InputErrorText(err)
		if msg == "" || len(msg) > 300 || !utf8.ValidString(msg) {
			t.Fatalf("message %q: empty, over 300 bytes or not UTF-8", msg)
		}
		// Raw < and > would be Slack markup.
		if strings.ContainsAny(msg, "<>") {
			t.Fatalf("message has unescaped < or >: %q", msg)
		}
		// What is quoted of the input sits in code spans, at most 33 runes
		// once Slack's escapes are undone (32 of the input and "…").
		parts := strings.Split(msg, "`")
		if len(parts)%2 == 0 {
			t.Fatalf("message has unbalanced backticks: %q", msg)
		}
		for i := 1; i < len(parts); i += 2 {
			if n := utf8.RuneCountInString(unescape.Replace(parts[i])); n > excerptRunes+1 {
				t.Fatalf("message quotes %d runes: %q", n, msg)
			}
		}
	})
}

func TestUsageText(t *testing.T) {
	u := UsageText()
	for _, want := range []string{
		"/hbr-upgrade ID...", "--region", "--cross-account-user-id", "--cross-account-role",
		"i-…", "c-…", "`/hbr-upgrade status`", "`/hbr-upgrade help`", "commas", "--region=cn-hangzhou",
	} {
		if !strings.Contains(u, want) {
			t.Errorf("UsageText() lacks %q", want)
		}
	}
	// The examples in the usage parse.
	for _, line := range strings.Split(u, "\n") {
		if !strings.HasPrefix(line, "`/hbr-upgrade ") || strings.Contains(line, "ID...") {
			continue
		}
		text := strings.TrimPrefix(line, "`/hbr-upgrade ")
		text = text[:strings.IndexByte(text, '`')]
		if _, err := hbrbot.ParseCommand(text, 500); err != nil {
			t.Errorf("example %q: %v", text, err)
		}
	}
}
