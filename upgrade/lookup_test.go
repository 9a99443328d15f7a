package upgrade

import (
	"testing"

	"github.com/hbrbot/hbrbot"
)

// TestDeferredLookUp: a card posted before its look-up gets it later; at
// most a quarter of the workers run such look-ups, and one over that
// bound is handed back at once, asking HBR nothing, so that the slots
// stay free for polls and verifications.
func TestDeferredLookUp(t *testing.T) {
	e := newEnv(t)
	r := e.newRequest("i-look1", "i-look2")
	// As a command whose look-up did not fit its budget leaves it.
	if err := e.store.SetPreflight(e.ctx, r.ID, func(r *hbrbot.Request) {
		r.Preflight, r.PreflightFailure = nil, hbrbot.FailurePending
	}); err != nil {
		t.Fatal(err)
	}
	w := hbrbot.Work{Kind: hbrbot.WorkLookup, ID: r.ID}
	before := len(e.hbr.calls("DescribeBackupClients"))

	requests := requestWork{Intake: e.svc.Intake, lookups: make(chan struct{}, 1)}
	requests.lookups <- struct{}{} // the bound is reached
	e.schedule(w)
	if err := requests.LookUp(e.ctx, e.ctx, e.claim(w)); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, e, "DescribeBackupClients", before)
	e.wantDue(w, e.clock.Now().Add(lookupRetry))

	<-requests.lookups
	e.clock.Advance(lookupRetry)
	if err := requests.LookUp(e.ctx, e.ctx, e.claim(w)); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, e, "DescribeBackupClients", before+1)
	got := e.read(r.ID)
	if got.PreflightFailure != "" || len(got.Preflight) != 2 {
		t.Errorf("look-up %d clients, failure %q; want both, none", len(got.Preflight), got.PreflightFailure)
	}
	e.wantUnscheduled(w)
	e.wantDue(hbrbot.Work{Kind: hbrbot.WorkCardSync, ID: r.ID}, e.clock.Now())
	if len(requests.lookups) != 0 {
		t.Error("the look-up kept its slot")
	}
}
