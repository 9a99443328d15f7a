package hbrbot_test

import (
	"errors"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/hbrbot/hbrbot"
)

// pcUpgrade builds the upgrade command a test expects.
func pcUpgrade(instances, clients []string, region string, ca *hbrbot.CrossAccount) hbrbot.Command {
	return hbrbot.Command{Kind: hbrbot.CommandUpgrade, Upgrade: hbrbot.UpgradeSpec{
		Targets:      hbrbot.Targets{InstanceIDs: instances, ClientIDs: clients},
		Region:       region,
		CrossAccount: ca,
	}}
}

func pcIDs(ids ...string) []string { return ids }

// pcGen makes n distinct IDs like real ones: prefix + 20 lowercase alnum.
func pcGen(prefix string, n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = prefix + "bp1" + strings.Repeat("x", 10) + strconv.FormatInt(int64(1000000+i), 36)
	}
	return ids
}

var (
	pcHelp   = hbrbot.Command{Kind: hbrbot.CommandHelp}
	pcStatus = hbrbot.Command{Kind: hbrbot.CommandStatus}
	pcOneI   = pcUpgrade(pcIDs("i-abc"), nil, "", nil)
	pcCross  = &hbrbot.CrossAccount{UserID: 1234567890123456, RoleName: "hbrcrossrole"}
)

func TestParseCommand(t *testing.T) {
	long4000 := strings.Join(pcGen("i-", 200), ",\u00a0") // 200 IDs, 4,000+ characters
	if n := utf8.RuneCountInString(long4000); n < 4000 {
		t.Fatalf("long input is only %d runes", n)
	}
	tests := []struct {
		name    string
		text    string
		max     int
		want    hbrbot.Command
		wantErr *hbrbot.InputError // nil = no error
	}{
		// help and status
		{name: "empty", text: "", want: pcHelp},
		{name: "whitespace", text: " \t\r\n ", want: pcHelp},
		{name: "unicode whitespace only", text: "\u00a0\u3000\u2003\u200b\ufeff", want: pcHelp},
		{name: "separators only", text: ",,; ``` ```", want: pcHelp},
		{name: "help", text: "help", want: pcHelp},
		{name: "help capitalized", text: "Help", want: pcHelp},
		{name: "help with more", text: "help i-abc --region", want: pcHelp},
		{name: "--help", text: "--help", want: pcHelp},
		{name: "em-dash help", text: "—help", want: pcHelp},
		{name: "-h", text: "-h", want: pcHelp},
		{name: "question mark", text: " ? ", want: pcHelp},
		{name: "help in code", text: "`help`", want: pcHelp},
		{name: "status", text: "status", want: pcStatus},
		{name: "status capitalized, spaces", text: "  Status\u00a0", want: pcStatus},
		{name: "status with id", text: "status i-abc", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemStatusNotAlone, Token: "i-abc"}},
		{name: "status later", text: "i-abc status", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemStatusNotFirst, Token: "status"}},
		{name: "help later", text: "i-abc help", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemHelpNotFirst, Token: "help"}},
		{name: "--help later", text: "i-abc --help", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemHelpNotFirst, Token: "--help"}},
		{name: "? later", text: "i-abc ?", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemHelpNotFirst, Token: "?"}},

		// IDs
		{name: "one instance", text: "i-abc", want: pcOneI},
		{name: "one client", text: "c-000abc", want: pcUpgrade(nil, pcIDs("c-000abc"), "", nil)},
		{name: "spaces and commas", text: "i-a,i-b, c-x ,c-y  i-c", want: pcUpgrade(pcIDs("i-a", "i-b", "i-c"), pcIDs("c-x", "c-y"), "", nil)},
		{name: "empty between commas", text: ",i-a,,,i-b,", want: pcUpgrade(pcIDs("i-a", "i-b"), nil, "", nil)},
		{name: "newlines and tabs", text: "i-a\ni-b\r\n\tc-c", want: pcUpgrade(pcIDs("i-a", "i-b"), pcIDs("c-c"), "", nil)},
		{name: "duplicates dropped, first order kept", text: "i-b i-a i-b c-x i-a c-x c-y", want: pcUpgrade(pcIDs("i-b", "i-a"), pcIDs("c-x", "c-y"), "", nil)},
		{name: "64 chars after prefix", text: "i-" + strings.Repeat("a", 64), want: pcUpgrade(pcIDs("i-"+strings.Repeat("a", 64)), nil, "", nil)},
		{name: "digits only", text: "c-0", want: pcUpgrade(nil, pcIDs("c-0"), "", nil)},
		{name: "incomplete instance", text: "i-", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemIncompleteID, Token: "i-", Prefix: "i-"}},
		{name: "incomplete client", text: "i-a C-", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemIncompleteID, Token: "C-", Prefix: "c-"}},
		{name: "upper rest", text: "i-ABC", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemIDCapitals, Token: "i-ABC", Prefix: "i-"}},
		{name: "upper prefix", text: "C-abc", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemIDCapitals, Token: "C-abc", Prefix: "c-"}},
		{name: "bad char", text: "i-ab.c", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemIDBadCharacter, Token: "i-ab.c", Prefix: "i-"}},
		{name: "underscore in client", text: "c-ab_c", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemIDBadCharacter, Token: "c-ab_c", Prefix: "c-"}},
		{name: "hyphen inside", text: "i-abc-1", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemIDBadCharacter, Token: "i-abc-1", Prefix: "i-"}},
		{name: "trailing period", text: "i-abc.", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemIDBadCharacter, Token: "i-abc.", Prefix: "i-"}},
		{name: "too long id", text: "i-" + strings.Repeat("a", 65), wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemIDTooLong, Token: "i-" + strings.Repeat("a", 65), Prefix: "i-", Limit: 64}},
		{name: "cyrillic i", text: "і-abc", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemUnknownWord, Token: "і-abc"}},
		{name: "unknown word", text: "i-a upgrade", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemUnknownWord, Token: "upgrade"}},
		{name: "task id", text: "t-abc", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemUnknownWord, Token: "t-abc"}},
		{name: "region without flag", text: "i-a cn-hangzhou", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemRegionWithoutFlag, Token: "cn-hangzhou"}},
		{name: "no ids", text: "--region cn-hangzhou", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemNoIDs}},
		{name: "no ids with cross account", text: "--cross-account-user-id 1 --cross-account-role r", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemNoIDs}},

		// flags
		{name: "region", text: "i-abc --region cn-hangzhou", want: pcUpgrade(pcIDs("i-abc"), nil, "cn-hangzhou", nil)},
		{name: "region first", text: "--region ap-southeast-1 i-abc", want: pcUpgrade(pcIDs("i-abc"), nil, "ap-southeast-1", nil)},
		{name: "region =", text: "i-abc --region=us-east-1", want: pcUpgrade(pcIDs("i-abc"), nil, "us-east-1", nil)},
		{name: "region = then space", text: "i-abc --region= cn-hangzhou", want: pcUpgrade(pcIDs("i-abc"), nil, "cn-hangzhou", nil)},
		{name: "region between ids", text: "i-a --region cn-shanghai-finance-1 i-b", want: pcUpgrade(pcIDs("i-a", "i-b"), nil, "cn-shanghai-finance-1", nil)},
		{name: "flag name case", text: "i-abc --Region cn-hangzhou", want: pcUpgrade(pcIDs("i-abc"), nil, "cn-hangzhou", nil)},
		{name: "single dash flag", text: "i-abc -region cn-hangzhou", want: pcUpgrade(pcIDs("i-abc"), nil, "cn-hangzhou", nil)},
		{name: "underscores in flag", text: "i-abc --cross_account_user_id=1234567890123456 --cross_account_role=hbrcrossrole", want: pcUpgrade(pcIDs("i-abc"), nil, "", pcCross)},
		{name: "cross account", text: "i-abc --cross-account-user-id 1234567890123456 --cross-account-role hbrcrossrole", want: pcUpgrade(pcIDs("i-abc"), nil, "", pcCross)},
		{name: "cross account = and reversed", text: "--cross-account-role=hbrcrossrole c-x --cross-account-user-id=1234567890123456", want: pcUpgrade(nil, pcIDs("c-x"), "", pcCross)},
		{name: "all flags", text: "i-a c-b --region eu-central-1 --cross-account-user-id 1234567890123456 --cross-account-role hbrcrossrole", want: pcUpgrade(pcIDs("i-a"), pcIDs("c-b"), "eu-central-1", pcCross)},
		{name: "uid max int64", text: "i-a --cross-account-user-id 9223372036854775807 --cross-account-role r", want: pcUpgrade(pcIDs("i-a"), nil, "", &hbrbot.CrossAccount{UserID: 9223372036854775807, RoleName: "r"})},
		{name: "role chars", text: "i-a --cross-account-user-id 1 --cross-account-role Hbr.Cross-Role_1", want: pcUpgrade(pcIDs("i-a"), nil, "", &hbrbot.CrossAccount{UserID: 1, RoleName: "Hbr.Cross-Role_1"})},
		{name: "role starting with a dash after =", text: "i-a --cross-account-user-id 1 --cross-account-role=-r", want: pcUpgrade(pcIDs("i-a"), nil, "", &hbrbot.CrossAccount{UserID: 1, RoleName: "-r"})},
		{name: "role starting with a dash as a word", text: "i-a --cross-account-user-id 1 --cross-account-role -r", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemFlagNeedsValue, Flag: hbrbot.FlagCrossAccountRole}},
		{name: "role 64", text: "i-a --cross-account-user-id 1 --cross-account-role " + strings.Repeat("r", 64), want: pcUpgrade(pcIDs("i-a"), nil, "", &hbrbot.CrossAccount{UserID: 1, RoleName: strings.Repeat("r", 64)})},
		{name: "dry run", text: "i-abc --dry-run", want: func() hbrbot.Command { c := pcOneI; c.Upgrade.DryRun = true; return c }()},
		{name: "dry run em dash first", text: "—dry-run i-abc", want: func() hbrbot.Command { c := pcOneI; c.Upgrade.DryRun = true; return c }()},
		{name: "outdated", text: "--outdated --region cn-shanghai", want: hbrbot.Command{Kind: hbrbot.CommandUpgrade, Upgrade: hbrbot.UpgradeSpec{Outdated: true, Limit: 500, Region: "cn-shanghai"}}},
		{name: "outdated limit", text: "--outdated --limit 20", want: hbrbot.Command{Kind: hbrbot.CommandUpgrade, Upgrade: hbrbot.UpgradeSpec{Outdated: true, Limit: 20}}},
		{name: "outdated with ids", text: "--outdated i-abc", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemOutdatedWithIDs}},
		{name: "limit without outdated", text: "i-abc --limit 3", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemLimitWithoutOutdated}},
		{name: "limit zero", text: "--outdated --limit 0", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemBadLimit, Token: "0", MaxTargets: 500}},
		{name: "force", text: "i-abc --force", want: func() hbrbot.Command { c := pcOneI; c.Upgrade.Force = true; return c }()},
		{name: "dry run with value", text: "i-abc --dry-run=yes", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemFlagTakesNoValue, Flag: hbrbot.FlagDryRun}},
		{name: "unknown flag", text: "i-a --foo", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemUnknownFlag, Token: "--foo"}},
		{name: "unknown flag with value", text: "i-a --regoin=cn-hangzhou", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemUnknownFlag, Token: "--regoin"}},
		{name: "three dashes", text: "i-a ---region cn-hangzhou", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemUnknownFlag, Token: "---region"}},
		{name: "lone dash", text: "i-a - i-b", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemLoneDash, Token: "-"}},
		{name: "lone en dash", text: "i-a – i-b", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemLoneDash, Token: "-"}},
		{name: "lone double dash", text: "i-a -- i-b", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemLoneDash, Token: "--"}},
		{name: "repeated region", text: "i-a --region cn-hangzhou --region cn-hangzhou", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemFlagRepeated, Flag: hbrbot.FlagRegion}},
		{name: "repeated region mixed forms", text: "i-a --region=cn-hangzhou —REGION cn-beijing", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemFlagRepeated, Flag: hbrbot.FlagRegion}},
		{name: "repeated uid", text: "i-a --cross-account-user-id 1 --cross-account-user-id 2", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemFlagRepeated, Flag: hbrbot.FlagCrossAccountUserID}},
		{name: "repeated role", text: "i-a --cross-account-role a --cross-account-role=a", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemFlagRepeated, Flag: hbrbot.FlagCrossAccountRole}},
		{name: "region without value at end", text: "i-a --region", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemFlagNeedsValue, Flag: hbrbot.FlagRegion}},
		{name: "region = at end", text: "i-a --region=", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemFlagNeedsValue, Flag: hbrbot.FlagRegion}},
		{name: "region followed by flag", text: "i-a --region --cross-account-user-id 1", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemFlagNeedsValue, Flag: hbrbot.FlagRegion}},
		{name: "uid without value", text: "i-a --cross-account-user-id", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemFlagNeedsValue, Flag: hbrbot.FlagCrossAccountUserID}},
		{name: "role without value", text: "i-a --cross-account-role", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemFlagNeedsValue, Flag: hbrbot.FlagCrossAccountRole}},
		{name: "region no hyphen", text: "i-a --region hangzhou", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemBadRegion, Token: "hangzhou"}},
		{name: "region upper", text: "i-a --region CN-HANGZHOU", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemBadRegion, Token: "CN-HANGZHOU"}},
		{name: "region double hyphen", text: "i-a --region=cn--hangzhou", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemBadRegion, Token: "cn--hangzhou"}},
		{name: "region trailing hyphen", text: "i-a --region=cn-", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemBadRegion, Token: "cn-"}},
		{name: "region digit first", text: "i-a --region=1cn-a", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemBadRegion, Token: "1cn-a"}},
		{name: "region 33", text: "i-a --region=cn-" + strings.Repeat("a", 30), wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemBadRegion, Token: "cn-" + strings.Repeat("a", 30)}},
		{name: "region 32", text: "i-a --region=cn-" + strings.Repeat("a", 29), want: pcUpgrade(pcIDs("i-a"), nil, "cn-"+strings.Repeat("a", 29), nil)},
		{name: "region is an id", text: "--region i-abc", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemBadRegion, Token: "i-abc"}},
		{name: "uid zero", text: "i-a --cross-account-user-id 0 --cross-account-role r", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemBadAccountID, Token: "0"}},
		{name: "uid leading zero", text: "i-a --cross-account-user-id 0123 --cross-account-role r", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemBadAccountID, Token: "0123"}},
		{name: "uid plus", text: "i-a --cross-account-user-id +1 --cross-account-role r", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemBadAccountID, Token: "+1"}},
		{name: "uid negative", text: "i-a --cross-account-user-id -1 --cross-account-role r", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemFlagNeedsValue, Flag: hbrbot.FlagCrossAccountUserID}},
		{name: "uid letters", text: "i-a --cross-account-user-id=12a --cross-account-role r", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemBadAccountID, Token: "12a"}},
		{name: "uid overflow", text: "i-a --cross-account-user-id 9223372036854775808 --cross-account-role r", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemBadAccountID, Token: "9223372036854775808"}},
		{name: "uid too many digits", text: "i-a --cross-account-user-id 12345678901234567890 --cross-account-role r", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemBadAccountID, Token: "12345678901234567890"}},
		{name: "role bad char", text: "i-a --cross-account-user-id 1 --cross-account-role hbr!role", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemBadRole, Token: "hbr!role"}},
		{name: "role 65", text: "i-a --cross-account-user-id 1 --cross-account-role " + strings.Repeat("r", 65), wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemBadRole, Token: strings.Repeat("r", 65)}},
		{name: "role arn", text: "i-a --cross-account-user-id 1 --cross-account-role acs:ram::1234567890123456:role/hbrcrossrole", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemRoleARN, Token: "acs:ram::1234567890123456:role/hbrcrossrole", Suggestion: "hbrcrossrole"}},
		{name: "role bad arn", text: "i-a --cross-account-user-id 1 --cross-account-role acs:ram::1:role/", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemRoleARN, Token: "acs:ram::1:role/"}},
		{name: "uid without role", text: "i-a --cross-account-user-id 1234567890123456", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemUserIDWithoutRole}},
		{name: "role without uid", text: "i-a --cross-account-role hbrcrossrole", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemRoleWithoutUserID}},

		// limits
		{name: "exactly max", text: "i-a i-b c-c", max: 3, want: pcUpgrade(pcIDs("i-a", "i-b"), pcIDs("c-c"), "", nil)},
		{name: "max+1", text: "i-a i-b c-c c-d", max: 3, wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemTooManyIDs, Count: 4, MaxTargets: 3}},
		{name: "duplicates do not count", text: "i-a i-a i-b i-b c-c c-c", max: 3, want: pcUpgrade(pcIDs("i-a", "i-b"), pcIDs("c-c"), "", nil)},
		{name: "default max 500", text: strings.Join(pcGen("i-", 500), " "), max: 0, want: pcUpgrade(pcGen("i-", 500), nil, "", nil)},
		{name: "default max 501", text: strings.Join(pcGen("c-", 501), " "), max: -1, wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemTooManyIDs, Count: 501, MaxTargets: 500}},
		{name: "word cap", text: strings.Repeat("i-a ", 39), max: 3, wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemTooManyWords, Limit: 38, MaxTargets: 3}},
		{name: "word cap not reached", text: strings.Repeat("i-a ", 38), max: 3, want: pcUpgrade(pcIDs("i-a"), nil, "", nil)},
		{name: "4000+ characters", text: long4000 + " --region cn-hangzhou", max: 500, want: pcUpgrade(pcGen("i-", 200), nil, "cn-hangzhou", nil)},
		{name: "4000 character word", text: "i-a " + strings.Repeat("x", 4000), wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemWordTooLong, Token: strings.Repeat("x", 256)}},
		{name: "4000 character id", text: "i-" + strings.Repeat("a", 4000), wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemWordTooLong, Token: "i-" + strings.Repeat("a", 254)}},

		// dashes
		{name: "em dash flag", text: "i-a —region cn-hangzhou", want: pcUpgrade(pcIDs("i-a"), nil, "cn-hangzhou", nil)},
		{name: "en dash flag", text: "i-a –region cn-hangzhou", want: pcUpgrade(pcIDs("i-a"), nil, "cn-hangzhou", nil)},
		{name: "minus sign flag", text: "i-a −region cn-hangzhou", want: pcUpgrade(pcIDs("i-a"), nil, "cn-hangzhou", nil)},
		{name: "two em dashes", text: "i-a ——region cn-hangzhou", want: pcUpgrade(pcIDs("i-a"), nil, "cn-hangzhou", nil)},
		{name: "en dash + hyphen", text: "i-a –-region=cn-hangzhou", want: pcUpgrade(pcIDs("i-a"), nil, "cn-hangzhou", nil)},
		{name: "full-width hyphens", text: "i-a －－region＝cn-hangzhou", want: pcUpgrade(pcIDs("i-a"), nil, "cn-hangzhou", nil)},
		{name: "dashes inside flag name", text: "i-a —cross‐account‐user‐id 1 —cross–account–role r", want: pcUpgrade(pcIDs("i-a"), nil, "", &hbrbot.CrossAccount{UserID: 1, RoleName: "r"})},
		{name: "dash look-alike in id", text: "i‐abc c–def i−ghi", want: pcUpgrade(pcIDs("i-abc", "i-ghi"), pcIDs("c-def"), "", nil)},
		{name: "dash look-alike in region", text: "i-a --region cn—hangzhou", want: pcUpgrade(pcIDs("i-a"), nil, "cn-hangzhou", nil)},
		{name: "em dash unknown flag", text: "i-a —foo", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemUnknownFlag, Token: "-foo"}},

		// unicode white space and invisible characters
		{name: "nbsp", text: "i-a\u00a0i-b\u00a0--region\u00a0cn-hangzhou", want: pcUpgrade(pcIDs("i-a", "i-b"), nil, "cn-hangzhou", nil)},
		{name: "other spaces", text: "i-a\u2003i-b\u3000i-c\u202fi-d\u2009i-e\u205fi-f\u1680i-g\u2028i-h\u0085i-i", want: pcUpgrade(pcIDs("i-a", "i-b", "i-c", "i-d", "i-e", "i-f", "i-g", "i-h", "i-i"), nil, "", nil)},
		{name: "zero-width inside id", text: "i-ab\u200bc", want: pcOneI},
		{name: "zero-width joiners", text: "\u200di-a\u200cbc\u2060", want: pcOneI},
		{name: "bom", text: "\ufeffi-abc", want: pcOneI},
		{name: "soft hyphen", text: "i-a\u00adbc", want: pcOneI},
		{name: "bidi marks", text: "\u200ei-abc\u202c\u2066", want: pcOneI},
		{name: "variation selector", text: "i-abc\ufe0f", want: pcOneI},
		{name: "zero-width only between ids is not a separator", text: "i-a\u200bi-b", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemIDBadCharacter, Token: "i-ai-b", Prefix: "i-"}},
		{name: "full-width id", text: "ｉ－ａｂｃ", want: pcOneI},
		{name: "full-width comma", text: "i-a，i-b、c-c；c-d", want: pcUpgrade(pcIDs("i-a", "i-b"), pcIDs("c-c", "c-d"), "", nil)},

		// code spans, quotes, JSON
		{name: "code span", text: "`i-abc`", want: pcOneI},
		{name: "code spans, commas", text: "`i-a`, `i-b`,`c-c`", want: pcUpgrade(pcIDs("i-a", "i-b"), pcIDs("c-c"), "", nil)},
		{name: "code block", text: "```i-abc```", want: pcOneI},
		{name: "code block lines", text: "```\ni-a\ni-b\n``` --region `cn-hangzhou`", want: pcUpgrade(pcIDs("i-a", "i-b"), nil, "cn-hangzhou", nil)},
		{name: "json array", text: `["i-a","i-b", "c-c"]`, want: pcUpgrade(pcIDs("i-a", "i-b"), pcIDs("c-c"), "", nil)},
		{name: "smart quotes", text: "“i-a” ‘i-b’", want: pcUpgrade(pcIDs("i-a", "i-b"), nil, "", nil)},
		{name: "quoted value", text: `i-a --region="cn-hangzhou"`, want: pcUpgrade(pcIDs("i-a"), nil, "cn-hangzhou", nil)},

		// Slack markup
		{name: "link url", text: "<http://i-abc>", want: pcOneI},
		{name: "link https slash", text: "<https://i-abc/>", want: pcOneI},
		{name: "link with label", text: "<http://i-abc|i-abc>", want: pcOneI},
		{name: "label wins", text: "<http://example.com/x|i-abc>", want: pcOneI},
		{name: "label with several ids", text: "<http://example.com|i-a i-b>,c-c", want: pcUpgrade(pcIDs("i-a", "i-b"), pcIDs("c-c"), "", nil)},
		{name: "mailto without label", text: "<mailto:i-abc>", want: pcOneI},
		{name: "mailto email", text: "<mailto:i-abc@example.com|i-abc@example.com>", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemIDBadCharacter, Token: "i-abc@example.com", Prefix: "i-"}},
		{name: "link scheme upper", text: "<HTTPS://i-abc>", want: pcOneI},
		{name: "other scheme", text: "i-a <ftp://i-abc>", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemUnknownWord, Token: "ftp://i-abc"}},
		{name: "link flag value", text: "i-a --region <http://cn-hangzhou|cn-hangzhou>", want: pcUpgrade(pcIDs("i-a"), nil, "cn-hangzhou", nil)},
		{name: "link in code", text: "`<http://i-abc|i-abc>`", want: pcOneI},
		{name: "entity in label", text: "<http://x?a=1&amp;b=2|i-abc>", want: pcOneI},
		{name: "user mention", text: "i-a <@U012ABCDEF>", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemMention, Token: "<@U012ABCDEF>"}},
		{name: "channel mention", text: "i-a <#C012ABCDE|general>", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemMention, Token: "<#C012ABCDE|general>"}},
		{name: "special mention", text: "i-a <!here>", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemMention, Token: "<!here>"}},
		{name: "escaped brackets", text: "&lt;i-abc&gt;", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemUnknownWord, Token: "<i-abc>"}},
		{name: "typed <@…> reads as a mention", text: "&lt;@U1&gt;", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemMention, Token: "<@U1>"}},
		{name: "escaped ampersand", text: "i-a &amp; i-b", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemUnknownWord, Token: "&"}},
		{name: "unterminated link", text: "i-a <http://i-b", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemUnknownWord, Token: "<http://i-b"}},
		{name: "empty brackets", text: "i-a <>", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemUnknownWord, Token: "<>"}},
		{name: "nested open", text: "<<http://i-a>", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemUnknownWord, Token: "<i-a"}},
		{name: "empty label", text: "i-a <http://x|>", want: pcUpgrade(pcIDs("i-a"), nil, "", nil)},

		// hostile bytes
		{name: "invalid utf-8", text: "i-a\xff", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemIDBadCharacter, Token: "i-a�", Prefix: "i-"}},
		{name: "nul byte", text: "i-a\x00b", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemIDBadCharacter, Token: "i-a\x00b", Prefix: "i-"}},
		{name: "backtick cannot be echoed", text: "i-a foo\u200b", wantErr: &hbrbot.InputError{Problem: hbrbot.ProblemUnknownWord, Token: "foo"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := hbrbot.ParseCommand(tt.text, tt.max)
			if tt.wantErr != nil {
				if err == nil {
					t.Fatalf("ParseCommand(%.60q) = %+v, want error %v", tt.text, got, tt.wantErr)
				}
				if e := pcCheckError(t, err); !reflect.DeepEqual(e, tt.wantErr) {
					t.Fatalf("ParseCommand(%.60q) error\n%+v\nwant\n%+v", tt.text, e, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseCommand(%.60q): %v", tt.text, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("ParseCommand(%.60q) =\n%+v\nwant\n%+v", tt.text, got, tt.want)
			}
		})
	}
}

// pcCheckError checks what every error of ParseCommand must be: an
// *InputError naming a problem, with at most a word's worth of the input.
// What users see of it is bot's business (bot.InputErrorText).
func pcCheckError(t *testing.T, err error) *hbrbot.InputError {
	t.Helper()
	var e *hbrbot.InputError
	if !errors.As(err, &e) {
		t.Fatalf("error %T %q is not an *InputError", err, err)
	}
	if e.Problem == "" || !strings.HasPrefix(e.Error(), "input: "+string(e.Problem)) {
		t.Fatalf("error %+v: no problem, or Error() %q does not name it", e, e.Error())
	}
	if len(e.Token) > 256 || len(e.Suggestion) > 256 {
		t.Fatalf("error %+v holds more than a word of the input", e)
	}
	return e
}

// pcLongestEcho is the length in runes of the longest run of msg that
// appears in text.
func pcLongestEcho(msg, text string) int {
	runes := []rune(msg)
	best := 0
	for i := range runes {
		for j := i + best + 1; j <= len(runes); j++ {
			if !strings.Contains(text, string(runes[i:j])) {
				break
			}
			best = j - i
		}
	}
	return best
}

// hugeInputs are a megabyte each, of what might trip a parser.
var hugeInputs = map[string]string{
	"1 MB of ids":           strings.Repeat("i-abc ", 1<<20/6),
	"1 MB word":             strings.Repeat("a", 1<<20),
	"1 MB of <":             strings.Repeat("<", 1<<20),
	"1 MB of < and spaces":  strings.Repeat("< ", 1<<19),
	"1 MB of <http://":      strings.Repeat("<http://", 1<<17),
	"1 MB of links":         strings.Repeat("<http://i-a|i-a>", 1<<16),
	"1 MB of zero-width":    strings.Repeat("\u200b", 1<<20/3),
	"1 MB of spaces":        strings.Repeat(" ", 1<<20),
	"1 MB of entities":      strings.Repeat("&lt;", 1<<18),
	"1 MB of em dashes":     strings.Repeat("—", 1<<20/3),
	"1 MB of commas + help": "help " + strings.Repeat(",", 1<<20),
}

// A huge input is cheap: the parser stops after a few words. Cheap is
// counted in allocations, not wall-clock time (which a loaded machine
// stretches); BenchmarkParseCommandHugeInput times it.
func TestParseCommandHugeInput(t *testing.T) {
	for name, text := range hugeInputs {
		allocs := testing.AllocsPerRun(1, func() { _, _ = hbrbot.ParseCommand(text, 500) })
		_, err := hbrbot.ParseCommand(text, 500)
		if allocs > 5000 {
			t.Errorf("%s: %v allocations", name, allocs)
		}
		if err != nil {
			pcCheckError(t, err)
		}
	}
}

var pcIDShape = regexp.MustCompile(`^[ic]-[a-z0-9]{1,64}$`)
var pcRegionShape = regexp.MustCompile(`^[a-z][a-z0-9]*(-[a-z0-9]+)+$`)
var pcRoleShape = regexp.MustCompile(`^[A-Za-z0-9._-]{1,64}$`)

func FuzzParseCommand(f *testing.F) {
	seeds := []string{
		"", "help", "status", "status i-a", "i-abc", "i-a,c-b i-a", "i-a --region cn-hangzhou",
		"i-a --region=cn-hangzhou --cross-account-user-id=1234567890123456 --cross-account-role=hbrcrossrole",
		"i-a —region cn-hangzhou", "i-a –region cn-hangzhou", "i-a −region cn-hangzhou", "i-a ——region x-y",
		"<http://i-abc|i-abc>", "<mailto:i-abc@example.com|i-abc@example.com>", "<https://i-abc/>", "<@U123> <#C1|x> <!here>",
		"`i-abc`", "```i-abc\ni-def```", "i-a\u00a0i-b\u3000c-c\u200b", "&lt;i-a&gt; &amp;", "ｉ－ａｂｃ，ｃ－ｘ",
		"i-A", "i-", "--", "-", "--region", "--foo=bar", "i-a --cross-account-role acs:ram::1:role/r",
		"<<http://i-a>", "<http://x|<http://y|i-a>>", "i-a\xff\xfe", strings.Repeat("i-a ", 40), strings.Repeat("x", 300),
	}
	for _, s := range seeds {
		f.Add(s, uint16(0))
		f.Add(s, uint16(3))
	}
	f.Fuzz(func(t *testing.T, text string, m uint16) {
		maxTargets := int(m % 600)
		effective := maxTargets
		if effective == 0 {
			effective = 500
		}
		cmd, err := hbrbot.ParseCommand(text, maxTargets)
		if err != nil {
			pcCheckError(t, err)
			return
		}
		switch cmd.Kind {
		case hbrbot.CommandHelp, hbrbot.CommandStatus:
			if !reflect.DeepEqual(cmd.Upgrade, hbrbot.UpgradeSpec{}) {
				t.Fatalf("%v command with a spec: %+v", cmd.Kind, cmd)
			}
			return
		case hbrbot.CommandUpgrade:
		default:
			t.Fatalf("kind %v", cmd.Kind)
		}
		spec := cmd.Upgrade
		if n := spec.Len(); n < 1 || n > effective {
			t.Fatalf("%d IDs, limit %d", n, effective)
		}
		seen := map[string]bool{}
		for _, id := range spec.InstanceIDs {
			if !pcIDShape.MatchString(id) || id[0] != 'i' || seen[id] {
				t.Fatalf("bad or repeated instance ID %q", id)
			}
			seen[id] = true
		}
		for _, id := range spec.ClientIDs {
			if !pcIDShape.MatchString(id) || id[0] != 'c' || seen[id] {
				t.Fatalf("bad or repeated client ID %q", id)
			}
			seen[id] = true
		}
		if spec.Region != "" && (!pcRegionShape.MatchString(spec.Region) || len(spec.Region) > hbrbot.MaxRegionBytes) {
			t.Fatalf("bad region %q", spec.Region)
		}
		if ca := spec.CrossAccount; ca != nil && (ca.UserID <= 0 || !pcRoleShape.MatchString(ca.RoleName)) {
			t.Fatalf("bad cross account %+v", ca)
		}
		// The canonical form of the command parses to the same command.
		again, err := hbrbot.ParseCommand(pcCanonical(spec), maxTargets)
		if err != nil || !reflect.DeepEqual(again, cmd) {
			t.Fatalf("canonical form %q parses to %+v, %v; want %+v", pcCanonical(spec), again, err, cmd)
		}
	})
}

func pcCanonical(s hbrbot.UpgradeSpec) string {
	words := s.All()
	if s.Region != "" {
		words = append(words, "--region", s.Region)
	}
	if ca := s.CrossAccount; ca != nil {
		// A role name may start with "-", so it goes after "=".
		words = append(words, "--cross-account-user-id", strconv.FormatInt(ca.UserID, 10), "--cross-account-role="+ca.RoleName)
	}
	if s.DryRun {
		words = append(words, "--dry-run")
	}
	if s.Force {
		words = append(words, "--force")
	}
	if s.Outdated {
		words = append(words, "--outdated", "--limit", strconv.Itoa(s.Limit))
	}
	return strings.Join(words, " ")
}

func BenchmarkParseCommand(b *testing.B) {
	text := strings.Join(pcGen("i-", 250), ", ") + " " + strings.Join(pcGen("c-", 250), " ") +
		" --region cn-hangzhou --cross-account-user-id 1234567890123456 --cross-account-role hbrcrossrole"
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		cmd, err := hbrbot.ParseCommand(text, 500)
		if err != nil || cmd.Upgrade.Len() != 500 {
			b.Fatal(cmd.Upgrade.Len(), err)
		}
	}
}

func BenchmarkParseCommandHugeInput(b *testing.B) {
	for name, text := range hugeInputs {
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				_, _ = hbrbot.ParseCommand(text, 500)
			}
		})
	}
}
