package redisstore

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hbrbot/hbrbot"
)

// TestTwoOfThreeApprovals: each approver counts once; the second distinct
// approval approves and creates the batches.
func TestTwoOfThreeApprovals(t *testing.T) {
	s, _ := newStore(t)
	ctx := testCtx(t)
	t0 := base()
	r := newRequest("rnofm", "C0OPS", t0, 3)
	r.RequiredApprovals = 2
	mustCreate(t, ctx, s, r)

	steps := []struct {
		by        string
		wantState hbrbot.RequestState
		wantWon   bool
		wantList  []string
	}{
		{"U0BOB", hbrbot.RequestPending, true, []string{"U0BOB"}},
		{"U0BOB", hbrbot.RequestPending, false, []string{"U0BOB"}},
		{"U0CAROL", hbrbot.RequestApproved, true, []string{"U0BOB", "U0CAROL"}},
		{"U0DAVE", hbrbot.RequestApproved, false, []string{"U0BOB", "U0CAROL"}},
	}
	for i, st := range steps {
		got, won, err := s.Decide(ctx, r.ID, approve(r, st.by, t0))
		if err != nil {
			t.Fatal(err)
		}
		if got.State != st.wantState || won != st.wantWon || !slices.Equal(got.Approvals, st.wantList) {
			t.Errorf("step %d (%s): state %s won %v approvals %v; want %s %v %v", i, st.by, got.State, won, got.Approvals, st.wantState, st.wantWon, st.wantList)
		}
		if _, err := s.Batch(ctx, hbrbot.BatchKey(r.ID, 0)); (err == nil) != (st.wantState == hbrbot.RequestApproved) {
			t.Errorf("step %d: batch exists = %v with the request %s", i, err == nil, st.wantState)
		}
	}
}

// TestApprovalsRace: many approvers clicking at once on a 2-of-N request
// approve it exactly once.
func TestApprovalsRace(t *testing.T) {
	s, _ := newStore(t)
	ctx := testCtx(t)
	t0 := base()
	for round := range 10 {
		r := newRequest(fmt.Sprintf("rrace%d", round), "C0OPS", t0, 1)
		r.RequiredApprovals = 2
		mustCreate(t, ctx, s, r)
		var wg sync.WaitGroup
		var mu sync.Mutex
		approvedBy := 0
		for i := range 6 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				got, won, err := s.Decide(ctx, r.ID, approve(r, fmt.Sprintf("U0APPROVER%d", i), t0))
				if err != nil {
					t.Error(err)
					return
				}
				if won && got.State == hbrbot.RequestApproved {
					mu.Lock()
					approvedBy++
					mu.Unlock()
				}
			}()
		}
		wg.Wait()
		final, err := s.Request(ctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		if final.State != hbrbot.RequestApproved || len(final.Approvals) != 2 {
			t.Errorf("round %d: state %s, approvals %v", round, final.State, final.Approvals)
		}
		if approvedBy != 1 {
			t.Errorf("round %d: %d calls approved the request, want 1", round, approvedBy)
		}
	}
}

// TestRenew: a renewed lease fences like the one it replaces, and the old
// one no longer writes.
func TestRenew(t *testing.T) {
	s, _ := newStore(t)
	ctx := testCtx(t)
	t0 := base()
	r := newRequest("rrenew", "C0OPS", t0, 1)
	mustCreate(t, ctx, s, r)
	if _, _, err := s.Decide(ctx, r.ID, approve(r, "U0BOB", t0)); err != nil {
		t.Fatal(err)
	}
	var l hbrbot.Lease
	for _, c := range claim(t, ctx, s, t0, 10, 5*time.Second) {
		if c.Work.Kind == hbrbot.WorkBatch {
			l = c
		}
	}
	b := mustBatch(t, ctx, s, l.Work.ID)
	for _, until := range []time.Time{l.Until, t0.Add(20 * time.Second)} { // kept, then extended
		renewed, err := s.Renew(ctx, l, b, until)
		if err != nil {
			t.Fatalf("Renew to %v: %v", until, err)
		}
		if err := s.SaveBatch(ctx, renewed, b, renewed.Until); err != nil {
			t.Errorf("the renewed lease (to %v) does not write: %v", until, err)
		}
		if !until.Equal(l.Until) {
			if err := s.SaveBatch(ctx, l, b, l.Until); !errors.Is(err, hbrbot.ErrLeaseLost) {
				t.Errorf("the old lease still writes after a renewal: %v", err)
			}
			for _, got := range claim(t, ctx, s, t0.Add(10*time.Second), 10, time.Second) {
				if got.Work == l.Work {
					t.Errorf("claimed %v within its renewed lease", got.Work)
				}
			}
		}
		l = renewed
	}
}
