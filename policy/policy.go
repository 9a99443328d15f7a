// Package policy decides who may request and approve which upgrades where:
// per channel, the regions allowed, whether cross-account upgrades are
// allowed and from which source accounts, who may request, who may approve,
// how many approvals are needed, and how many IDs one command may name.
//
// Rules come from the environment (HBRBOT_APPROVERS, ...) and, optionally,
// a YAML file (HBRBOT_POLICY_FILE) with a "default" entry and one entry per
// channel; an entry's unset fields take the default's.
package policy

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/hbrbot/hbrbot"
)

// Rules are one channel's rules.
type Rules struct {
	// Regions allowed; empty = any.
	Regions []string
	// CrossAccount allows cross-account upgrades, from SourceAccounts
	// (empty = any).
	CrossAccount   bool
	SourceAccounts []int64
	// Requesters and Approvers: user IDs (U.../W...) and user-group IDs
	// (S...); empty = anyone.
	Requesters []string
	Approvers  []string
	// RequiredApprovals distinct approvers must approve (N of M).
	RequiredApprovals int
	AllowSelfApproval bool
	MaxTargets        int
}

// Set is the whole policy.
type Set struct {
	// Default applies to channels without an entry; nil refuses them.
	Default  *Rules
	Channels map[string]Rules
}

// For returns the rules of a channel; ok false when the channel is not
// allowed at all.
func (s Set) For(channel string) (Rules, bool) {
	if r, ok := s.Channels[channel]; ok {
		return r, true
	}
	if s.Default != nil {
		return *s.Default, true
	}
	return Rules{}, false
}

// Refusal is a request the policy refuses; its message names the rule.
type Refusal struct {
	Rule    string // e.g. "regions"
	Message string
}

func (r *Refusal) Error() string { return r.Message }

// Groups resolves Slack user groups.
type Groups interface {
	InGroup(ctx context.Context, group, user string) (bool, error)
}

// Member reports whether user is one of ids (user IDs and user groups).
// Empty ids means anyone. A group that cannot be resolved is an error:
// never guess who may act.
func Member(ctx context.Context, user string, ids []string, groups Groups) (bool, error) {
	if len(ids) == 0 || slices.Contains(ids, user) {
		return true, nil
	}
	for _, id := range ids {
		if !hbrbot.IsUserGroupID(id) {
			continue
		}
		in, err := groups.InGroup(ctx, id, user)
		if err != nil {
			return false, fmt.Errorf("members of user group %s: %w", id, err)
		}
		if in {
			return true, nil
		}
	}
	return false, nil
}

// CheckRequest checks what a command asks for against the channel's rules.
// The IDs' count is the parser's business (it knows MaxTargets).
func (r Rules) CheckRequest(spec hbrbot.UpgradeSpec) error {
	if len(r.Regions) > 0 && !slices.Contains(r.Regions, spec.Region) {
		return &Refusal{Rule: "regions", Message: fmt.Sprintf("Region `%s` is not allowed in this channel (allowed: %s).",
			spec.Region, strings.Join(r.Regions, ", "))}
	}
	if spec.CrossAccount != nil {
		if !r.CrossAccount {
			return &Refusal{Rule: "cross_account", Message: "Cross-account upgrades are not allowed in this channel."}
		}
		if len(r.SourceAccounts) > 0 && !slices.Contains(r.SourceAccounts, spec.CrossAccount.UserID) {
			return &Refusal{Rule: "source_accounts", Message: fmt.Sprintf("Source account `%d` is not allowed in this channel.", spec.CrossAccount.UserID)}
		}
	}
	return nil
}
