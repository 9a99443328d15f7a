package hbrbot_test

import (
	"strings"
	"testing"

	"github.com/hbrbot/hbrbot"
)

func TestValid(t *testing.T) {
	tests := []struct {
		check string
		valid func(string) bool
		yes   []string
		no    []string
	}{
		{"ValidRegion", hbrbot.ValidRegion,
			[]string{"cn-hangzhou", "ap-southeast-1", "cn-shanghai-finance-1", "us-east-1", "cn-" + strings.Repeat("a", 29)},
			[]string{"", "hangzhou", "CN-HANGZHOU", "cn--hangzhou", "cn-", "-cn", "1cn-a", "c-abc", "i-abc", "cn_hangzhou", "cn-hangzhou ", "cn-" + strings.Repeat("a", 30)}},
		{"ValidInstanceID", hbrbot.ValidInstanceID,
			[]string{"i-abc", "i-0", "i-bp1abcdefgh12345678", "i-" + strings.Repeat("a", 64)},
			[]string{"", "i-", "I-abc", "i-ABC", "i-ab.c", "i-abc-1", "c-abc", "i-" + strings.Repeat("a", 65)}},
		{"ValidClientID", hbrbot.ValidClientID,
			[]string{"c-000abc", "c-0", "c-" + strings.Repeat("z", 64)},
			[]string{"", "c-", "C-abc", "c-ab_c", "i-abc", "c-" + strings.Repeat("z", 65)}},
		{"ValidUserOrGroupID", hbrbot.ValidUserOrGroupID,
			[]string{"U012AB3CD", "W0ABC", "S0GROUP", "U0A"},
			[]string{"", "U0", "u012ab3cd", "C0123", "alice", "U0A ", "<@U012AB3CD>"}},
		{"ValidUserID", hbrbot.ValidUserID,
			[]string{"U012AB3CD", "W0ABC", "U0A"},
			[]string{"", "S0GROUP", "U0", "u012ab3cd", "C0123", "<@U012AB3CD>"}},
		{"ValidTeamID", hbrbot.ValidTeamID,
			[]string{"T0HOME", "E0ORG"},
			[]string{"", "T0", "U0HOME", "t0home"}},
		{"ValidChannelID", hbrbot.ValidChannelID,
			[]string{"C0123ABC", "G0PRIV", "D0DM", "C0A"},
			[]string{"", "C0", "c0123abc", "U0123", "#general", "C0-1"}},
	}
	for _, tt := range tests {
		for _, s := range tt.yes {
			if !tt.valid(s) {
				t.Errorf("%s(%q) = false, want true", tt.check, s)
			}
		}
		for _, s := range tt.no {
			if tt.valid(s) {
				t.Errorf("%s(%q) = true, want false", tt.check, s)
			}
		}
	}
}

func TestValidApprovals(t *testing.T) {
	for n, want := range map[int]bool{-1: false, 0: false, 1: true, 2: true, 10: true, 11: false} {
		if got := hbrbot.ValidApprovals(n); got != want {
			t.Errorf("ValidApprovals(%d) = %v, want %v", n, got, want)
		}
	}
}

func TestValidAccountID(t *testing.T) {
	for id, want := range map[int64]bool{-1: false, 0: false, 1: true, 1234567890123456: true} {
		if got := hbrbot.ValidAccountID(id); got != want {
			t.Errorf("ValidAccountID(%d) = %v, want %v", id, got, want)
		}
	}
}

func TestIsUserGroupID(t *testing.T) {
	for id, want := range map[string]bool{"S0OPS": true, "U0BOB": false, "W0BOB": false} {
		if got := hbrbot.IsUserGroupID(id); got != want {
			t.Errorf("IsUserGroupID(%q) = %v, want %v", id, got, want)
		}
	}
}
