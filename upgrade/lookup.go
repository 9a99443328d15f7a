package upgrade

import (
	"context"
	"errors"
	"time"

	"github.com/hbrbot/hbrbot"
	"github.com/hbrbot/hbrbot/hbr"
)

// preflightStore records a look-up that landed after the card.
type preflightStore interface {
	SetPreflight(ctx context.Context, id string, change func(*hbrbot.Request)) error
}

// preflightInline bounds the look-up a command waits for before its card:
// one that cannot run in its budget by then (HBR's quota is spent on other
// work) is made later, and the card, posted at once, says it is coming.
const preflightInline = time.Second

// lookupRetry is how soon a deferred look-up that did not land in its
// lease is tried again.
const lookupRetry = 2 * time.Second

// preflight looks the IDs up before the card; when that cannot be done in
// time and the store can take a later look-up, it says FailurePending.
func (in requestWork) preflight(ctx context.Context, spec hbrbot.UpgradeSpec) ([]hbrbot.ClientInfo, string) {
	if _, ok := in.store.(preflightStore); !ok {
		return in.fleet.preflight(ctx, spec)
	}
	ictx, cancel := context.WithTimeout(ctx, preflightInline)
	defer cancel()
	clients, failure := in.fleet.preflight(ictx, spec)
	if failure == hbrbot.FailureTimeout && ctx.Err() == nil {
		return nil, hbrbot.FailurePending
	}
	return clients, failure
}

// lookUpLater schedules the look-up of a request whose card went out
// without it.
func (in requestWork) lookUpLater(ctx context.Context, r hbrbot.Request) {
	if r.PreflightFailure != hbrbot.FailurePending {
		return
	}
	if err := in.store.Schedule(ctx, hbrbot.Work{Kind: hbrbot.WorkLookup, ID: r.ID}, in.now()); err != nil {
		in.log.WarnContext(ctx, "schedule the look-up; the card keeps the IDs as typed", "request", r.ID, "err", err)
		return
	}
	in.kick()
}

// LookUp runs a deferred pre-flight look-up (WorkLookup): it waits for
// the budget as long as its lease allows, ranked by the request's age so
// that older cards are drawn first, then stores the look-up (leaving out
// clients at the latest version while the request is pending) and redraws
// the card. A look-up that did not land is tried again; one HBR refused
// is shown as failed. At most a quarter of a replica's workers run
// look-ups: waiting for the budget, they would otherwise take the slots
// that polls and verifications need, and a job's end would be seen late.
func (in requestWork) LookUp(ctx, _ context.Context, l hbrbot.Lease) error {
	if in.lookups != nil {
		select {
		case in.lookups <- struct{}{}:
			defer func() { <-in.lookups }()
		default:
			return in.store.Reschedule(ctx, l, hbrbot.DueAt(in.now().Add(lookupRetry)))
		}
	}
	ps, ok := in.store.(preflightStore)
	r, err := in.store.Request(ctx, l.Work.ID)
	if errors.Is(err, hbrbot.ErrNotFound) || !ok {
		return in.store.Reschedule(ctx, l, hbrbot.End())
	}
	if err != nil {
		return err
	}
	if r.PreflightFailure != hbrbot.FailurePending || r.State == hbrbot.RequestExpired || r.State == hbrbot.RequestCancelled {
		return in.store.Reschedule(ctx, l, hbrbot.End())
	}
	lctx, cancel := context.WithDeadline(withPriority(ctx, hbr.Priority{Class: hbr.Informs, Rank: r.CreatedAt}), l.Until.Add(-saveRoom))
	defer cancel()
	clients, err := in.fleet.hbr.DescribeBackupClients(lctx, r.Spec.Region, r.Spec.Targets, r.Spec.CrossAccount)
	failure := ""
	if err != nil {
		failure = lookupFailure(err)
		if failure == hbrbot.FailureTimeout && in.now().Before(r.ExpiresAt) {
			return in.store.Reschedule(ctx, l, hbrbot.DueAt(in.now().Add(lookupRetry)))
		}
		in.log.WarnContext(ctx, "deferred look-up failed", "request", r.ID, "err", err)
	}
	err = ps.SetPreflight(ctx, r.ID, func(r *hbrbot.Request) {
		r.Preflight, r.PreflightFailure = clients, failure
		if failure != "" || r.State != hbrbot.RequestPending || r.Spec.Force {
			return
		}
		// As before the card: clients already at the latest version are
		// left out, unless that would leave nothing (the card then shows
		// them all as up to date, for the approvers to cancel).
		if targets, skipped := leaveOutLatest(r.Spec.Targets, clients); targets.Len() > 0 {
			r.Spec.Targets, r.Skipped = targets, skipped
		}
	})
	if err != nil {
		return err
	}
	in.scheduleCardSync(ctx, r.ID)
	return in.store.Reschedule(ctx, l, hbrbot.End())
}
