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
	"time"

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

// Listed reports whether channel has rules of its own (HBRBOT_ALLOWED_CHANNELS
// or an entry of the policy file), not only the default's.
func (s Set) Listed(channel string) bool {
	_, ok := s.Channels[channel]
	return ok
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

// Refusal is something the rules do not allow, with the facts that say
// why; package bot words it for the person refused.
type Refusal struct {
	Rule Rule
	// Region and Allowed: a region outside the channel's (RuleRegions).
	Region  string
	Allowed []string
	// Account: a source account not allowed (RuleSourceAccounts).
	Account int64
	// Team: the workspace of someone from another organisation
	// (RuleOrganisation).
	Team string
	// RetryAfter: when a flood limit lets the person try again.
	RetryAfter time.Duration
	// Limit: the flood limit reached (RuleUserCommands, RuleChannelCommands,
	// RulePending).
	Limit int
	// LookupFailed: whether the person may act could not be checked (a
	// Slack user-group look-up failed); nothing was decided.
	LookupFailed bool
}

// Rule names the rule behind a refusal; it is also what the audit trail
// records.
type Rule string

const (
	RuleChannels       Rule = "channels"
	RuleRegions        Rule = "regions"
	RuleCrossAccount   Rule = "cross_account"
	RuleSourceAccounts Rule = "source_accounts"
	RuleRequesters     Rule = "requesters"
	RuleApprovers      Rule = "approvers"
	RuleSelfApproval   Rule = "self_approval"
	RuleCancel         Rule = "cancel"
	// RuleOrganisation: only members of the bot's own organisation (and of
	// HBRBOT_ALLOWED_TEAMS) act.
	RuleOrganisation Rule = "organisation"
	// RuleSharedChannel: a channel shared with another organisation must be
	// listed by ID.
	RuleSharedChannel Rule = "shared_channel"
	// RuleGuests: guests act only when listed by ID.
	RuleGuests Rule = "guests"
	// RuleCard: a click must come from the card (or report) it names.
	RuleCard Rule = "card"
	// RuleRetry: only an ended job's failures can be retried.
	RuleRetry Rule = "retry"
	// Flood limits.
	RuleUserCommands    Rule = "user_commands"
	RuleChannelCommands Rule = "channel_commands"
	RulePending         Rule = "pending"
)

// Error is for logs and the audit trail, not for people.
func (r *Refusal) Error() string {
	switch {
	case r.LookupFailed:
		return string(r.Rule) + ": membership could not be checked"
	case r.Rule == RuleRegions:
		return fmt.Sprintf("regions: %s not in [%s]", r.Region, strings.Join(r.Allowed, " "))
	case r.Rule == RuleSourceAccounts:
		return fmt.Sprintf("source_accounts: %d not allowed", r.Account)
	case r.Rule == RuleOrganisation:
		return fmt.Sprintf("organisation: team %q is not the home organisation's", r.Team)
	case r.RetryAfter > 0:
		return fmt.Sprintf("%s: over %d, retry after %s", r.Rule, r.Limit, r.RetryAfter)
	}
	return string(r.Rule) + ": not allowed"
}

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
		return &Refusal{Rule: RuleRegions, Region: spec.Region, Allowed: r.Regions}
	}
	if spec.CrossAccount != nil {
		if !r.CrossAccount {
			return &Refusal{Rule: RuleCrossAccount}
		}
		if len(r.SourceAccounts) > 0 && !slices.Contains(r.SourceAccounts, spec.CrossAccount.UserID) {
			return &Refusal{Rule: RuleSourceAccounts, Account: spec.CrossAccount.UserID}
		}
	}
	return nil
}
