package upgrade

import (
	"context"
	"errors"
	"fmt"

	"github.com/hbrbot/hbrbot"
)

// errStateLost marks a batch whose status or spec is gone from Redis while
// its work is scheduled.
var errStateLost = errors.New("state lost")

// lostStore is what the handling of lost state reads and writes.
type lostStore interface {
	Inflight(ctx context.Context, batchKey string) (hbrbot.BatchIndex, bool, error)
	ForgetInflight(ctx context.Context, batchKey string) error
}

// LostReporter tells a thread that a batch's state is gone.
type LostReporter interface {
	// PostLost says in the batch's thread that its state is gone, and
	// which IDs must be checked by hand.
	PostLost(ctx context.Context, idx hbrbot.BatchIndex) error
}

// lostBatch handles a batch whose status (or spec) is missing while its
// work is scheduled: an error in the log, a metric, an audit record, and,
// from the in-flight index, a reply in its thread naming the IDs to check
// by hand. Never a silent drop.
func (j *Jobs) lostBatch(ctx context.Context, l hbrbot.Lease, what string) error {
	key := l.Work.ID
	idx, found, err := j.store.Inflight(ctx, key)
	if err != nil {
		return err
	}
	j.opts.Observer.StateLost(what)
	j.log.ErrorContext(ctx, "batch state lost from Redis while scheduled (evicted or deleted?): its IDs must be checked by hand",
		"batch", key, "missing", what, "indexed", found, "ids", fmt.Sprint(idx.Targets.All()))
	rec := hbrbot.AuditRecord{Event: hbrbot.AuditStateLost, RequestID: idx.RequestID, Actor: "hbrbot", Channel: idx.ChannelID,
		Fields: map[string]string{"batch": key, "missing": what, "indexed": boolText(found)}}
	if found {
		if err := j.lostReporter.PostLost(ctx, idx); err != nil {
			return fmt.Errorf("report lost batch %s: %w", key, err)
		}
		if err := j.store.ForgetInflight(ctx, key); err != nil {
			j.log.WarnContext(ctx, "forget lost batch", "batch", key, "err", err)
		}
	}
	j.audit.record(ctx, rec)
	return j.store.Reschedule(ctx, l, hbrbot.End())
}
