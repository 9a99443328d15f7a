package bot

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/hbrbot/hbrbot/policy"
	"github.com/hbrbot/hbrbot/slacktest"
)

func trustOn(t *testing.T, allowed ...string) (*Trust, *slacktest.Server) {
	t.Helper()
	srv := slacktest.NewServer(slacktest.WithTeamID("T0HOME"), slacktest.WithEnterpriseID("E0HOME"))
	t.Cleanup(srv.Close)
	srv.SetUser(slacktest.User{ID: "U0OTHER", TeamID: "T0OTHER", EnterpriseID: "E0OTHER"})
	srv.SetUser(slacktest.User{ID: "U0SISTER", TeamID: "T0SISTER", EnterpriseID: "E0HOME"})
	srv.SetUser(slacktest.User{ID: "U0PARTNER", TeamID: "T0PARTNER"})
	srv.SetUser(slacktest.User{ID: "U0GUEST", IsUltraRestricted: true})
	srv.SetChannel(slacktest.Channel{ID: "C0SHARED", IsExtShared: true})
	api := slack.New("xoxb-test", slack.OptionAPIURL(srv.APIURL()))
	tr := NewTrust(api, allowed)
	if _, err := tr.Identify(context.Background()); err != nil {
		t.Fatal(err)
	}
	return tr, srv
}

func TestTrust(t *testing.T) {
	tr, _ := trustOn(t, "T0PARTNER")
	for _, tc := range []struct {
		name  string
		actor Actor
		want  policy.Rule // "" = a member
		facts Facts
	}{
		{"home member", Actor{"U0ALICE", "C0OPS"}, "", Facts{}},
		{"another organisation", Actor{"U0OTHER", "C0OPS"}, policy.RuleOrganisation, Facts{}},
		{"same enterprise, other workspace", Actor{"U0SISTER", "C0OPS"}, "", Facts{}},
		{"an allowed team", Actor{"U0PARTNER", "C0OPS"}, "", Facts{}},
		{"a guest", Actor{"U0GUEST", "C0OPS"}, "", Facts{Guest: true}},
		{"a shared channel", Actor{"U0ALICE", "C0SHARED"}, "", Facts{SharedChannel: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			facts, r := tr.Check(context.Background(), tc.actor)
			switch {
			case tc.want == "" && r != nil:
				t.Errorf("refused: %v", r)
			case tc.want != "" && (r == nil || r.Rule != tc.want):
				t.Errorf("got %v, want a refusal by %s", r, tc.want)
			case facts != tc.facts:
				t.Errorf("facts %+v, want %+v", facts, tc.facts)
			}
		})
	}
}

// TestTrustNeverGuesses: when Slack cannot say who someone is, they are
// refused; Slack's answers are kept a while, its failures are not.
func TestTrustNeverGuesses(t *testing.T) {
	tr, srv := trustOn(t)
	srv.FailNext("users.info", 1, "internal_error")
	if _, r := tr.Check(context.Background(), Actor{"U0ALICE", "C0OPS"}); r == nil || r.Rule != policy.RuleOrganisation || !r.LookupFailed {
		t.Errorf("a failed users.info: %v, want a refusal that says so", r)
	}
	for range 3 {
		if _, r := tr.Check(context.Background(), Actor{"U0ALICE", "C0OPS"}); r != nil {
			t.Fatalf("refused once Slack answers: %v", r)
		}
	}
	if n := len(srv.Calls("users.info")); n != 2 {
		t.Errorf("%d users.info calls for 4 checks, want 2 (one failed, one kept)", n)
	}
	tr.now = func() time.Time { return time.Now().Add(trustTTL) }
	tr.Check(context.Background(), Actor{"U0ALICE", "C0OPS"})
	if n := len(srv.Calls("users.info")); n != 3 {
		t.Errorf("%d users.info calls after the cache's time, want 3", n)
	}

	unknown := NewTrust(slack.New("xoxb-test", slack.OptionAPIURL(srv.APIURL())), nil)
	if _, r := unknown.Check(context.Background(), Actor{"U0ALICE", "C0OPS"}); r == nil || !r.LookupFailed {
		t.Errorf("before Identify: %v, want a refusal", r)
	}
}

func TestIdentifyNamesTheRefusedToken(t *testing.T) {
	srv := slacktest.NewServer()
	t.Cleanup(srv.Close)
	srv.FailNext("auth.test", 1, "invalid_auth")
	tr := NewTrust(slack.New("xoxb-test", slack.OptionAPIURL(srv.APIURL())), nil)
	var refused *TokenRefusedError
	if _, err := tr.Identify(context.Background()); !errors.As(err, &refused) || refused.Answer != "invalid_auth" {
		t.Errorf("Identify = %v, want the token refused with invalid_auth", err)
	}
}

// TestFindReplyTrustsOnlyTheBot: a message with the bot's metadata posted
// by anyone else is not taken for the bot's reply.
func TestFindReplyTrustsOnlyTheBot(t *testing.T) {
	tr, srv := trustOn(t)
	api := slack.New("xoxb-test", slack.OptionAPIURL(srv.APIURL()))
	m := NewMessenger(api, nil, tr)
	ctx := context.Background()
	_, parent, err := api.PostMessageContext(ctx, "C0OPS", slack.MsgOptionText("card", false))
	if err != nil {
		t.Fatal(err)
	}
	md := slack.SlackMetadata{EventType: reportEventType, EventPayload: map[string]any{"batch": "r1.0", "kind": "final"}}
	srv.PostAs("U0MALLORY", "C0OPS", parent, "fake report", md)
	if _, found, err := m.FindReply(ctx, "C0OPS", parent, "r1.0", "final"); err != nil || found {
		t.Errorf("FindReply = %v, %v: a user's message was taken for the bot's", found, err)
	}
	if _, _, err := api.PostMessageContext(ctx, "C0OPS", slack.MsgOptionTS(parent), slack.MsgOptionText("report", false), slack.MsgOptionMetadata(md)); err != nil {
		t.Fatal(err)
	}
	if _, found, err := m.FindReply(ctx, "C0OPS", parent, "r1.0", "final"); err != nil || !found {
		t.Errorf("FindReply = %v, %v: the bot's own reply not found", found, err)
	}
}
