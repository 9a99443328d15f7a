package policy

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/hbrbot/hbrbot"
)

type fakeGroups map[string][]string

func (g fakeGroups) InGroup(_ context.Context, group, user string) (bool, error) {
	members, ok := g[group]
	if !ok {
		return false, errors.New("no such group")
	}
	for _, m := range members {
		if m == user {
			return true, nil
		}
	}
	return false, nil
}

func TestMember(t *testing.T) {
	groups := fakeGroups{"S0OPS": {"U0BOB"}}
	for _, tc := range []struct {
		name    string
		user    string
		ids     []string
		want    bool
		wantErr bool
	}{
		{"anyone when empty", "U0X", nil, true, false},
		{"listed user", "U0BOB", []string{"U0BOB"}, true, false},
		{"unlisted user", "U0MALLORY", []string{"U0BOB"}, false, false},
		{"group member", "U0BOB", []string{"U0ALICE", "S0OPS"}, true, false},
		{"not in group", "U0MALLORY", []string{"S0OPS"}, false, false},
		{"group lookup fails: refuse, never guess", "U0BOB", []string{"S0GONE"}, false, true},
		{"listed user skips the lookup", "U0BOB", []string{"U0BOB", "S0GONE"}, true, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Member(context.Background(), tc.user, tc.ids, groups)
			if got != tc.want || (err != nil) != tc.wantErr {
				t.Errorf("Member = %v, %v; want %v, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestCheckRequest(t *testing.T) {
	prod := Rules{Regions: []string{"cn-hangzhou"}, CrossAccount: true, SourceAccounts: []int64{111}}
	closed := Rules{}
	cross := func(id int64) *hbrbot.CrossAccount { return &hbrbot.CrossAccount{UserID: id, RoleName: "r"} }
	for _, tc := range []struct {
		name     string
		rules    Rules
		spec     hbrbot.UpgradeSpec
		wantRule Rule
	}{
		{"allowed region", prod, hbrbot.UpgradeSpec{Region: "cn-hangzhou"}, ""},
		{"refused region", prod, hbrbot.UpgradeSpec{Region: "cn-beijing"}, RuleRegions},
		{"any region", closed, hbrbot.UpgradeSpec{Region: "us-east-1"}, ""},
		{"allowed source account", prod, hbrbot.UpgradeSpec{Region: "cn-hangzhou", CrossAccount: cross(111)}, ""},
		{"refused source account", prod, hbrbot.UpgradeSpec{Region: "cn-hangzhou", CrossAccount: cross(222)}, RuleSourceAccounts},
		{"cross-account off", closed, hbrbot.UpgradeSpec{Region: "cn-hangzhou", CrossAccount: cross(111)}, RuleCrossAccount},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.rules.CheckRequest(tc.spec)
			var r *Refusal
			switch {
			case tc.wantRule == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.wantRule != "" && (!errors.As(err, &r) || r.Rule != tc.wantRule):
				t.Errorf("got %v, want a refusal by rule %s", err, tc.wantRule)
			}
		})
	}
}

func TestParseFile(t *testing.T) {
	base := Rules{RequiredApprovals: 1, MaxTargets: 500, CrossAccount: true}
	set, err := Parse([]byte(`
default:
  regions: [cn-hangzhou]
  approvers: [S0OPS]
channels:
  C0PROD:
    required_approvals: 2
    approvers: [U0A, U0B, U0C]
    cross_account: false
`), "p.yaml", base, 500)
	if err != nil {
		t.Fatal(err)
	}
	prod, ok := set.For("C0PROD")
	if !ok || prod.RequiredApprovals != 2 || prod.CrossAccount || len(prod.Regions) != 1 || prod.MaxTargets != 500 {
		t.Errorf("C0PROD rules %+v: want its own fields and the default's regions", prod)
	}
	other, ok := set.For("C0OTHER")
	if !ok || other.Approvers[0] != "S0OPS" || other.RequiredApprovals != 1 {
		t.Errorf("unlisted channel rules %+v, want the default's", other)
	}

	noDefault, err := Parse([]byte("channels:\n  C0ONLY: {}\n"), "p.yaml", base, 500)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := noDefault.For("C0OTHER"); ok {
		t.Error("without a default, an unlisted channel is allowed")
	}

	for _, tc := range []struct{ name, doc, want string }{
		{"unknown key", "default:\n  regoins: [cn-hangzhou]\n", "line 2: field regoins not found"},
		{"bad region", "default:\n  regions: [Hangzhou]\n", `p.yaml:2: "Hangzhou" is not a region ID`},
		{"region longer than the command accepts", "default:\n  regions: [cn-" + strings.Repeat("a", 30) + "]\n", `aaa" is not a region ID`},
		{"required approvals range", "default:\n  required_approvals: 11\n", "p.yaml:2: required_approvals 11 is not between 1 and 10"},
		{"bad approver", "channels:\n  C0X:\n    approvers: [alice]\n", `p.yaml:3: "alice" is not a Slack user`},
		{"bad channel", "channels:\n  ops:\n    approvers: [U0A]\n", `p.yaml:2: "ops" is not a Slack channel ID`},
		{"too many approvals", "channels:\n  C0X:\n    approvers: [U0A]\n    required_approvals: 2\n", "p.yaml:4: required_approvals 2 exceeds the 1 approvers"},
		{"max targets", "default:\n  max_targets: 9999\n", "p.yaml:2: max_targets 9999 is not between 1 and 500"},
		{"empty", "# nothing\n", "no default and no channels"},
		{"not yaml", "default: [\n", "p.yaml"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.doc), "p.yaml", base, 500)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}

// TestExampleFile: the example in the repo stays valid.
func TestExampleFile(t *testing.T) {
	set, err := LoadFile("../policy.example.yaml", Rules{RequiredApprovals: 1, MaxTargets: 500}, 500)
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := set.For("C0PRODOPS"); r.RequiredApprovals != 2 {
		t.Errorf("C0PRODOPS rules %+v", r)
	}
}
