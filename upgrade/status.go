package upgrade

import (
	"context"

	"github.com/hbrbot/hbrbot"
)

// statusLimit bounds how many of a channel's recent requests status reads.
const statusLimit = 50

// Status says what is in flight in the caller's channel: requests awaiting
// approval and jobs not yet reported.
func (in *Intake) Status(ctx context.Context, inv Invocation) Notice {
	if n, first := in.firstDelivery(ctx, inv.EnvelopeID); !first {
		return n
	}
	sctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	reqs, err := in.store.ChannelRequests(sctx, inv.ChannelID, statusLimit)
	if err != nil {
		in.log.ErrorContext(ctx, "status", "channel", inv.ChannelID, "err", err)
		return Notice{Kind: NoticeUnavailable}
	}
	now := in.now()
	n := Notice{Kind: NoticeStatus}
	for _, r := range reqs {
		line := StatusLine{Request: r, IDs: r.Spec.Len(), Age: now.Sub(r.CreatedAt)}
		switch r.State {
		case hbrbot.RequestPending:
			if !now.After(r.ExpiresAt) {
				n.Status = append(n.Status, line)
			}
		case hbrbot.RequestApproved:
			batches, err := in.store.BatchStatuses(sctx, r.ID)
			if err != nil {
				in.log.ErrorContext(ctx, "status", "channel", inv.ChannelID, "err", err)
				return Notice{Kind: NoticeUnavailable}
			}
			parts := r.BatchTargets()
			for _, b := range batches {
				if b.State == hbrbot.BatchFinished && b.Reported[hbrbot.ReportFinal] == hbrbot.ReportPosted {
					continue
				}
				job := line
				job.Batch = &b
				if b.Index < len(parts) {
					job.IDs = parts[b.Index].Len()
				}
				if !b.Started.IsZero() {
					job.Running = now.Sub(b.Started)
				}
				n.Status = append(n.Status, job)
			}
		}
	}
	return n
}
