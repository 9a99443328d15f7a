package hbrbot_test

import (
	"testing"

	"github.com/hbrbot/hbrbot"
)

func TestCompareVersions(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"2.4.0", "2.4.0", 0},
		{"2.4.0", "2.5.1", -1},
		{"2.10.0", "2.9.3", 1}, // numerically, not as strings
		{"2.4", "2.4.0", 0},
		{"2.4.1", "2.4", 1},
		{"2.4.0-beta", "2.4.0", 1}, // text after numbers
		{"", "1.0", -1},
	} {
		if got := hbrbot.CompareVersions(tc.a, tc.b); got != tc.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}
