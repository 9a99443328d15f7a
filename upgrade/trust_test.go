package upgrade

import (
	"testing"

	"github.com/hbrbot/hbrbot"
	"github.com/hbrbot/hbrbot/policy"
)

// TestParseSharedChannelAndGuests: a channel shared with another
// organisation, and a guest, act only when listed by ID.
func TestParseSharedChannelAndGuests(t *testing.T) {
	open := func(p *Settings, _ *Options) { p.Rules.Default = &policy.Rules{RequiredApprovals: 1} }
	for _, tc := range []struct {
		name    string
		tweak   tweak
		channel string
		shared  bool
		guest   bool
		user    string
		want    policy.Rule // "" = accepted
	}{
		{"listed shared channel", nil, channel, true, false, requester, ""},
		{"unlisted shared channel", open, "CSHARED", true, false, requester, policy.RuleSharedChannel},
		{"unlisted channel not shared", open, "COTHER", false, false, requester, ""},
		{"guest not listed", nil, channel, false, true, requester, policy.RuleGuests},
		{"guest listed by ID", withRules(func(r *policy.Rules) { r.Requesters = []string{requester} }), channel, false, true, requester, ""},
		{"guest in a listed group is not listed by ID", withRules(func(r *policy.Rules) { r.Requesters = []string{"SOPS"} }), channel, false, true, requester, policy.RuleGuests},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var tweaks []tweak
			if tc.tweak != nil {
				tweaks = append(tweaks, tc.tweak)
			}
			e := newEnv(t, tweaks...)
			inv := e.invocation(tc.user, "i-aaa1")
			inv.ChannelID, inv.SharedChannel, inv.Guest = tc.channel, tc.shared, tc.guest
			_, err := e.svc.Parse(inv)
			var r *policy.Refusal
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("refused: %v", err)
			case tc.want != "" && (err == nil || !asRefusal(err, &r) || r.Rule != tc.want):
				t.Errorf("got %v, want a refusal by %s", err, tc.want)
			}
		})
	}
}

func asRefusal(err error, r **policy.Refusal) bool {
	var ok bool
	*r, ok = err.(*policy.Refusal)
	return ok
}

// TestClickBoundToItsCard: a click names its request, and must come from
// that request's card: its channel and its message.
func TestClickBoundToItsCard(t *testing.T) {
	e := newEnv(t)
	r := e.newRequest("i-bnd1")
	for _, c := range []Click{
		{ChannelID: "COTHER", MessageTS: r.CardTS},
		{ChannelID: channel, MessageTS: "1700000099.000001"},
	} {
		c.EnvelopeID, c.UserID, c.Action, c.RequestID = e.envelope(), approverA, ActApprove, r.ID
		wantRefusal(t, e.svc.Click(e.ctx, c), policy.RuleCard, false)
	}
	if got := e.read(r.ID); got.State != hbrbot.RequestPending || len(got.Approvals) != 0 {
		t.Errorf("a foreign click changed the request: %s %v", got.State, got.Approvals)
	}
	if n := e.click(approverA, ActApprove, r.ID); n.Kind != NoticeNone {
		t.Errorf("the card's own click: %+v", n)
	}
}

// TestClickByGuestOrInSharedChannel: guests decide only when listed by ID
// as approvers (or cancel their own request); an unlisted shared channel's
// cards cannot be decided.
func TestClickByGuestOrInSharedChannel(t *testing.T) {
	e := newEnv(t)
	r := e.newRequest("i-gst1")
	c := Click{EnvelopeID: e.envelope(), ChannelID: channel, MessageTS: r.CardTS, UserID: "UGUEST", Action: ActApprove,
		RequestID: r.ID, Guest: true}
	wantRefusal(t, e.svc.Click(e.ctx, c), policy.RuleGuests, false)
	c.EnvelopeID, c.UserID = e.envelope(), approverA // listed by ID: a guest approver may
	if n := e.svc.Click(e.ctx, c); n.Kind != NoticeNone {
		t.Errorf("a guest listed by ID: %+v", n)
	}

	open := newEnv(t, func(p *Settings, _ *Options) {
		p.Rules.Default = &policy.Rules{Approvers: []string{approverA}, RequiredApprovals: 1}
	})
	inv := open.invocation(requester, "upgrade")
	inv.ChannelID = "COPEN"
	wantNotice(t, open.svc.Request(open.ctx, inv, hbrbot.UpgradeSpec{Targets: targetsOf("i-shr1"), Region: region}), NoticeNone)
	r = open.lastCardRequest()
	c = Click{EnvelopeID: open.envelope(), ChannelID: "COPEN", MessageTS: r.CardTS, UserID: approverA, Action: ActApprove,
		RequestID: r.ID, SharedChannel: true}
	wantRefusal(t, open.svc.Click(open.ctx, c), policy.RuleSharedChannel, false)
}

// TestRetryOnlyEndedAndFromItsReport: Retry is bound to the job's thread,
// and only once the job has ended and been reported.
func TestRetryOnlyEndedAndFromItsReport(t *testing.T) {
	e := newEnv(t)
	r := e.approved("i-rty1")
	key := hbrbot.BatchKey(r.ID, 0)
	wantRefusal(t, e.retry(approverB, key), policy.RuleRetry, false) // still pending
	c := Click{EnvelopeID: e.envelope(), ChannelID: channel, ThreadTS: "1700000099.000001", UserID: approverB, Action: ActRetry, BatchKey: key}
	wantRefusal(t, e.svc.Click(e.ctx, c), policy.RuleCard, false)
}

// TestFloodLimits: one user's commands a minute, and their requests
// awaiting approval, are bounded; another user is not held back by them.
func TestFloodLimits(t *testing.T) {
	e := newEnv(t, func(p *Settings, _ *Options) { p.UserCommands, p.ChannelCommands, p.UserPending = 3, 100, 2 })
	spec := hbrbot.UpgradeSpec{Targets: targetsOf("i-fld1"), Region: region}
	wantNotice(t, e.svc.Request(e.ctx, e.invocation(requester, "a"), spec), NoticeNone)
	wantNotice(t, e.svc.Request(e.ctx, e.invocation(requester, "b"), spec), NoticeNone)
	n := e.svc.Request(e.ctx, e.invocation(requester, "c"), spec)
	wantRefusal(t, n, policy.RulePending, false)
	n = e.svc.Request(e.ctx, e.invocation(requester, "d"), spec)
	wantRefusal(t, n, policy.RuleUserCommands, false)
	if n.Refusal.RetryAfter <= 0 {
		t.Errorf("a flood refusal without when to try again: %+v", n.Refusal)
	}
	wantNotice(t, e.svc.Request(e.ctx, e.invocation(approverB, "e"), spec), NoticeNone)
	if got := len(e.chat.calls("PostCard")); got != 3 {
		t.Errorf("%d cards, want 3 (2 of the flooder's, 1 of the other user's)", got)
	}
	if len(e.obs.refused) != 2 {
		t.Errorf("refusals counted %v, want 2", e.obs.refused)
	}
}

// TestRefusalRecordsAreSpacedOut: a flood of refused commands writes at
// most refusalsPerMinute audit records a minute; the next record says how
// many were not written.
func TestRefusalRecordsAreSpacedOut(t *testing.T) {
	var l refusalLog
	now := testBase()
	for i := range refusalsPerMinute {
		if _, ok := l.take(now); !ok {
			t.Fatalf("record %d refused", i)
		}
	}
	for range 5 {
		if _, ok := l.take(now); ok {
			t.Fatal("a record past the limit was let through")
		}
	}
	if dropped, ok := l.take(now.Add(61 * 1e9)); !ok || dropped != 5 {
		t.Errorf("next minute: %d dropped, %v; want 5, true", dropped, ok)
	}
}
