package bot

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/slack-go/slack"

	"github.com/hbrbot/hbrbot/policy"
)

// Home is the organisation the bot belongs to, and who the bot is in it,
// as auth.test says.
type Home struct {
	TeamID       string
	EnterpriseID string // set for an Enterprise Grid (org-wide) install
	BotID        string
	BotUserID    string
}

// Trust tells members of the bot's own organisation (and of the teams
// HBRBOT_ALLOWED_TEAMS adds) from everyone else, by their IDs as Slack
// gives them, never by name. It also learns what the rules need to know of
// whoever acts: whether they are a guest, and whether the channel is shared
// with another organisation. Slack's answers are cached a few minutes.
type Trust struct {
	api     *slack.Client
	allowed []string
	home    atomic.Pointer[Home]
	now     func() time.Time

	mu       sync.Mutex
	users    map[string]cached[slack.User]
	channels map[string]cached[slack.Channel]
}

type cached[T any] struct {
	v  T
	at time.Time
}

// trustTTL is how long Slack's word on a user or a channel is kept: a user
// removed or made a guest loses their rights within it.
const trustTTL = 5 * time.Minute

// NewTrust builds a Trust; allowed are the T…/E… IDs of other teams whose
// members may act too.
func NewTrust(api *slack.Client, allowed []string) *Trust {
	return &Trust{api: api, allowed: allowed, now: time.Now,
		users: map[string]cached[slack.User]{}, channels: map[string]cached[slack.Channel]{}}
}

// TokenRefusedError is Slack refusing the bot token at auth.test; Answer
// is Slack's error (invalid_auth, token_revoked, ...).
type TokenRefusedError struct{ Answer string }

func (e *TokenRefusedError) Error() string {
	return "slack auth.test refused the bot token: " + e.Answer
}

// Identify asks Slack (auth.test) which organisation the bot belongs to.
func (t *Trust) Identify(ctx context.Context) (Home, error) {
	a, err := t.api.AuthTestContext(ctx)
	if err != nil {
		var se slack.SlackErrorResponse
		if errors.As(err, &se) && (se.Err == "invalid_auth" || se.Err == "not_authed" || se.Err == "token_revoked" || se.Err == "account_inactive") {
			return Home{}, &TokenRefusedError{Answer: se.Err}
		}
		return Home{}, fmt.Errorf("slack auth.test: %w", err)
	}
	h := Home{TeamID: a.TeamID, EnterpriseID: a.EnterpriseID, BotID: a.BotID, BotUserID: a.UserID}
	t.home.Store(&h)
	return h, nil
}

// Home is the bot's organisation once Identify has learned it.
func (t *Trust) Home() (Home, bool) {
	h := t.home.Load()
	if h == nil {
		return Home{}, false
	}
	return *h, true
}

// Actor is someone acting in a channel, as a payload names them.
type Actor struct {
	UserID, ChannelID string
}

// Facts are what the rules need to know of a member who acts.
type Facts struct {
	Guest         bool // a multi- or single-channel guest
	SharedChannel bool // the channel is shared with another organisation
}

// Check says whether a's user belongs to the home organisation (or an
// allowed team), and what the rules need to know of them; a refusal when
// they do not, or when Slack cannot say (never a guess).
func (t *Trust) Check(ctx context.Context, a Actor) (Facts, *policy.Refusal) {
	home, ok := t.Home()
	if !ok {
		return Facts{}, &policy.Refusal{Rule: policy.RuleOrganisation, LookupFailed: true}
	}
	u, err := t.user(ctx, a.UserID)
	if err != nil {
		return Facts{}, &policy.Refusal{Rule: policy.RuleOrganisation, LookupFailed: true}
	}
	team, enterprise := u.TeamID, u.Enterprise.EnterpriseID
	member := team == home.TeamID || (home.EnterpriseID != "" && enterprise == home.EnterpriseID) ||
		slices.Contains(t.allowed, team) || (enterprise != "" && slices.Contains(t.allowed, enterprise))
	if !member || u.Deleted || u.IsBot {
		return Facts{}, &policy.Refusal{Rule: policy.RuleOrganisation, Team: team}
	}
	c, err := t.channel(ctx, a.ChannelID)
	if err != nil {
		return Facts{}, &policy.Refusal{Rule: policy.RuleSharedChannel, LookupFailed: true}
	}
	return Facts{Guest: u.IsRestricted || u.IsUltraRestricted, SharedChannel: c.IsExtShared}, nil
}

func (t *Trust) user(ctx context.Context, id string) (slack.User, error) {
	return lookUp(t, t.users, id, func() (slack.User, error) {
		u, err := t.api.GetUserInfoContext(ctx, id)
		if err != nil {
			return slack.User{}, err
		}
		return *u, nil
	})
}

func (t *Trust) channel(ctx context.Context, id string) (slack.Channel, error) {
	return lookUp(t, t.channels, id, func() (slack.Channel, error) {
		c, err := t.api.GetConversationInfoContext(ctx, &slack.GetConversationInfoInput{ChannelID: id})
		if err != nil {
			return slack.Channel{}, err
		}
		return *c, nil
	})
}

// lookUp answers from the cache, or asks Slack and keeps the answer; a
// failed look-up is not kept.
func lookUp[T any](t *Trust, cache map[string]cached[T], id string, ask func() (T, error)) (T, error) {
	t.mu.Lock()
	e, ok := cache[id]
	t.mu.Unlock()
	if ok && t.now().Sub(e.at) < trustTTL {
		return e.v, nil
	}
	v, err := ask()
	if err != nil {
		return v, err
	}
	t.mu.Lock()
	if len(cache) > 10000 {
		clear(cache)
	}
	cache[id] = cached[T]{v: v, at: t.now()}
	t.mu.Unlock()
	return v, nil
}
