package upgrade

import (
	"context"
	"errors"
	"fmt"

	"github.com/hbrbot/hbrbot"
)

// requestWork is the scheduled work of a request before its jobs: its
// expiry, its card's redraws, and a look-up that came after its card.
type requestWork struct {
	*Intake
	// lookups bounds the deferred look-ups running at once (nil: no
	// bound); see LookUp.
	lookups chan struct{}
}

// Expire runs a request's expiry: a request still pending at its deadline
// expires, and its card says so.
func (in requestWork) Expire(ctx, _ context.Context, l hbrbot.Lease) error {
	expiry := decision{want: hbrbot.RequestExpired, at: in.now()}
	_, changed, err := changeRequest(ctx, in.store, l.Work.ID, func(r hbrbot.Request) (hbrbot.RequestChange, bool) {
		return decide(r, expiry)
	})
	switch {
	case errors.Is(err, hbrbot.ErrNotFound):
		in.lostRequest(ctx, l)
	case err != nil:
		return err
	case changed:
		in.kick() // the card sync it scheduled; the change ended this item
		return nil
	}
	return in.store.Reschedule(ctx, l, hbrbot.End())
}

// SyncCard brings a request's card up to date: its approvals, its
// decision, and once every job has ended, their outcome.
func (in requestWork) SyncCard(ctx, _ context.Context, l hbrbot.Lease) error {
	r, err := in.store.Request(ctx, l.Work.ID)
	if errors.Is(err, hbrbot.ErrNotFound) {
		in.lostRequest(ctx, l)
		return in.store.Reschedule(ctx, l, hbrbot.End())
	}
	if err != nil {
		return err
	}
	if r.CardTS != "" { // pending too: the card shows the approvals so far
		var batches []hbrbot.Batch
		if r.State == hbrbot.RequestApproved {
			if batches, err = in.store.Batches(ctx, r.ID); err != nil {
				return err
			}
		}
		if err := in.cards.UpdateCard(ctx, r, batches); err != nil {
			return fmt.Errorf("update card of %s: %w", r.ID, err)
		}
	}
	return in.store.Reschedule(ctx, l, hbrbot.End())
}

// lostRequest reports a request missing from Redis while its work is
// scheduled: an error, a metric and an audit record, never a silent drop.
// Its batches, if any, report in their threads from the in-flight index.
func (in requestWork) lostRequest(ctx context.Context, l hbrbot.Lease) {
	in.obs.StateLost("request")
	in.log.ErrorContext(ctx, "request state lost from Redis while scheduled (evicted or deleted?)",
		"request", l.Work.ID, "work", l.Work.Kind)
	in.audit.record(ctx, hbrbot.AuditRecord{Event: hbrbot.AuditStateLost, RequestID: l.Work.ID, Actor: "hbrbot",
		Fields: map[string]string{"missing": "request", "work": string(l.Work.Kind)}})
}
