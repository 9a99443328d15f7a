package redisstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hbrbot/hbrbot"
)

// approveRetrying is how a caller resolves a conflict: it reads request
// id, builds by's approval from what it read (by joins the approvals; the
// one that reaches r.RequiredApprovals approves it and creates its
// batches, reporting in thread by) and stores it, and on ErrConflict does
// it all again. It reports whether its change approved the request (false
// when it was decided already, or by had approved already) and how many
// conflicts it met.
func approveRetrying(ctx context.Context, s *Store, id, by string, at time.Time) (approved bool, conflicts int, err error) {
	for {
		r, err := s.Request(ctx, id)
		if err != nil {
			return false, conflicts, err
		}
		if r.State != hbrbot.RequestPending || slices.Contains(r.Approvals, by) {
			return false, conflicts, nil
		}
		ch := approvalStep(r, by, at)
		if len(ch.Approvals) >= max(r.RequiredApprovals, 1) {
			ch = approval(r, by, at)
			for i := range ch.Batches {
				ch.Batches[i].ThreadTS = by
			}
		}
		err = s.ChangeRequest(ctx, id, ch)
		if errors.Is(err, hbrbot.ErrConflict) {
			conflicts++
			continue
		}
		return err == nil && ch.State == hbrbot.RequestApproved, conflicts, err
	}
}

// TestApprovalsRace: many approvers clicking at once on a 2-of-N request,
// each reading, building its change and retrying on a conflict: no
// approval is lost, and exactly one change approves the request and
// creates its batches.
func TestApprovalsRace(t *testing.T) {
	s, _ := newStore(t)
	ctx := testCtx(t)
	t0 := base()
	const approvers = 6
	total := 0
	for round := range 10 {
		r := newRequest(fmt.Sprintf("rrace%d", round), "C0OPS", t0, 1)
		r.RequiredApprovals = 2
		mustCreate(t, ctx, s, r)
		var (
			wg         sync.WaitGroup
			mu         sync.Mutex
			approvedBy []string
		)
		start := make(chan struct{})
		for i := range approvers {
			wg.Go(func() {
				by := fmt.Sprintf("U0APPROVER%d", i)
				<-start
				approved, conflicts, err := approveRetrying(ctx, s, r.ID, by, t0)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				defer mu.Unlock()
				total += conflicts
				if approved {
					approvedBy = append(approvedBy, by)
				}
			})
		}
		close(start)
		wg.Wait()

		final := mustRequest(t, ctx, s, r.ID)
		if final.State != hbrbot.RequestApproved || len(final.Approvals) != 2 || final.Approvals[0] == final.Approvals[1] {
			t.Errorf("round %d: state %s, approvals %v; want approved by two", round, final.State, final.Approvals)
		}
		if len(approvedBy) != 1 {
			t.Fatalf("round %d: %d changes approved the request (%v), want 1", round, len(approvedBy), approvedBy)
		}
		if final.DecidedBy != approvedBy[0] || final.Approvals[1] != approvedBy[0] {
			t.Errorf("round %d: decided by %s, approvals %v; want the last by %s, whose change approved it",
				round, final.DecidedBy, final.Approvals, approvedBy[0])
		}
		b := mustStatus(t, ctx, s, hbrbot.BatchKey(r.ID, 0))
		if b.ThreadTS != approvedBy[0] {
			t.Errorf("round %d: the batch was created by %s's change, not by the approving %s's", round, b.ThreadTS, approvedBy[0])
		}
	}
	t.Logf("conflicts met and retried over 10 rounds: %d", total)
}

// TestRenew: a lease extended by SaveBatch (HoldUntil) fences like the one
// it replaces, and the old one no longer writes; holding (Hold) keeps the
// lease as it is.
func TestRenew(t *testing.T) {
	s, _ := newStore(t)
	ctx := testCtx(t)
	t0 := base()
	ch := mustApprove(t, ctx, s, newRequest("rrenew", "C0OPS", t0, 1), t0)
	l := leaseOf(t, claim(t, ctx, s, t0, 10, 5*time.Second), batchWork("rrenew", 0))
	b := ch.Batches[0].BatchStatus
	for _, next := range []hbrbot.Next{ // kept, then extended twice
		hbrbot.Hold(), hbrbot.HoldUntil(t0.Add(20 * time.Second)), hbrbot.HoldUntil(t0.Add(40 * time.Second)),
	} {
		renewed, err := s.SaveBatch(ctx, l, b, next)
		if err != nil {
			t.Fatalf("SaveBatch(%+v): %v", next, err)
		}
		if _, err := s.SaveBatch(ctx, renewed, b, hbrbot.Hold()); err != nil {
			t.Errorf("the renewed lease (%+v) does not write: %v", next, err)
		}
		if next.Kind == hbrbot.NextHold {
			if renewed != l {
				t.Errorf("Hold returned the lease %+v, want the one held %+v", renewed, l)
			}
			continue
		}
		if !renewed.Until.Equal(next.At) {
			t.Errorf("renewed lease until %v, want %v", renewed.Until, next.At)
		}
		if _, err := s.SaveBatch(ctx, l, b, hbrbot.Hold()); !errors.Is(err, hbrbot.ErrLeaseLost) {
			t.Errorf("the old lease still writes after a renewal: %v", err)
		}
		for _, got := range claim(t, ctx, s, next.At.Add(-time.Millisecond), 10, time.Second) {
			if got.Work == l.Work {
				t.Errorf("claimed %v within its renewed lease", got.Work)
			}
		}
		l = renewed
	}
}
