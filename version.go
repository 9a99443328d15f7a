package hbrbot

import (
	"strconv"
	"strings"
)

// CompareVersions compares client versions numerically, part by part
// ("2.10.0" is after "2.9.3"); a missing or empty part counts as 0, and a part that
// is not a number compares as text after every number.
func CompareVersions(a, b string) int {
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	for i := range max(len(pa), len(pb)) {
		x, y := "0", "0"
		if i < len(pa) && pa[i] != "" {
			x = pa[i]
		}
		if i < len(pb) && pb[i] != "" {
			y = pb[i]
		}
		nx, ex := strconv.ParseUint(x, 10, 64)
		ny, ey := strconv.ParseUint(y, 10, 64)
		switch {
		case ex == nil && ey == nil:
			if nx != ny {
				if nx < ny {
					return -1
				}
				return 1
			}
		case ex == nil:
			return -1
		case ey == nil:
			return 1
		default:
			if c := strings.Compare(x, y); c != 0 {
				return c
			}
		}
	}
	return 0
}

// Outdated reports whether the client runs an older version than the
// latest HBR offers.
func (c ClientInfo) Outdated() bool {
	return c.Version != "" && c.MaxVersion != "" && CompareVersions(c.Version, c.MaxVersion) < 0
}
