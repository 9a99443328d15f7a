package hbrbot

import (
	"regexp"
	"strings"
)

// This file is the one grammar of the identifiers and numbers that hbrbot's
// inputs share: the slash command (ParseCommand), the environment (package
// config) and the policy file (package policy). Each check looks at a
// value's shape only; whether the region, channel or user exists is not
// asked.

const (
	// MinApprovals and MaxApprovals bound how many distinct approvers a
	// request may need (HBRBOT_REQUIRED_APPROVALS, required_approvals).
	MinApprovals = 1
	MaxApprovals = 10
	// MaxRegionBytes is the longest region ID accepted, with room to spare
	// (cn-shanghai-finance-1 is 21 bytes): one of ten thousand letters and
	// hyphens is a mistake, not a region.
	MaxRegionBytes = 32
	// MaxIDChars is the most characters an instance or client ID has after
	// its "i-" or "c-".
	MaxIDChars = 64
)

var (
	userOrGroupIDRE = regexp.MustCompile(`^[UWS][A-Z0-9]{2,}$`)
	channelIDRE     = regexp.MustCompile(`^[CGD][A-Z0-9]{2,}$`)
	teamIDRE        = regexp.MustCompile(`^[TE][A-Z0-9]{2,}$`)
)

// ValidApprovals says whether n approvals is a number a request may need.
func ValidApprovals(n int) bool {
	return MinApprovals <= n && n <= MaxApprovals
}

// ValidRegion says whether s is shaped like an Alibaba Cloud region ID: at
// most MaxRegionBytes bytes, two or more lowercase letters, then one or more
// parts of lowercase letters and digits, each after a hyphen (cn-hangzhou,
// ap-southeast-1, cn-shanghai-finance-1). No instance or client ID has this
// shape, so the parser can tell a region typed without --region.
func ValidRegion(s string) bool {
	if len(s) > MaxRegionBytes {
		return false
	}
	i := 0
	for i < len(s) && isLower(s[i]) {
		i++
	}
	if i < 2 || i == len(s) {
		return false
	}
	for i < len(s) {
		if s[i] != '-' {
			return false
		}
		i++
		start := i
		for i < len(s) && (isLower(s[i]) || isDigit(s[i])) {
			i++
		}
		if i == start {
			return false
		}
	}
	return true
}

// ValidInstanceID says whether s is shaped like an ECS instance ID: "i-"
// and 1 to MaxIDChars lowercase letters and digits.
func ValidInstanceID(s string) bool {
	rest, ok := strings.CutPrefix(s, "i-")
	return ok && validIDRest(rest)
}

// ValidClientID says whether s is shaped like an HBR client ID: "c-" and 1
// to MaxIDChars lowercase letters and digits.
func ValidClientID(s string) bool {
	rest, ok := strings.CutPrefix(s, "c-")
	return ok && validIDRest(rest)
}

// validIDRest checks what follows "i-" or "c-". It is written out rather
// than a regexp because the parser checks every ID of a command, up to
// HBRBOT_MAX_TARGETS of them.
func validIDRest(s string) bool {
	if s == "" || len(s) > MaxIDChars {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isLower(s[i]) && !isDigit(s[i]) {
			return false
		}
	}
	return true
}

// ValidAccountID says whether id can be an Alibaba Cloud account ID.
func ValidAccountID(id int64) bool { return id > 0 }

// ValidUserOrGroupID says whether s is shaped like a Slack user ID (U...,
// W...) or user-group ID (S...).
func ValidUserOrGroupID(s string) bool { return userOrGroupIDRE.MatchString(s) }

// ValidUserID reports whether s is a Slack user ID (U... or W...), not a
// user group.
func ValidUserID(s string) bool { return ValidUserOrGroupID(s) && !IsUserGroupID(s) }

// IsUserGroupID says whether a valid user or user-group ID names a group,
// whose members are looked up.
func IsUserGroupID(id string) bool { return strings.HasPrefix(id, "S") }

// ValidChannelID says whether s is shaped like a Slack channel ID: public
// (C...), private (G...) or a direct message (D...).
func ValidChannelID(s string) bool { return channelIDRE.MatchString(s) }

// ValidTeamID reports whether s is a Slack workspace ID (T...) or an
// Enterprise Grid organisation ID (E...).
func ValidTeamID(s string) bool { return teamIDRE.MatchString(s) }

func isLower(c byte) bool { return 'a' <= c && c <= 'z' }
func isDigit(c byte) bool { return '0' <= c && c <= '9' }
