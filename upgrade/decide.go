package upgrade

import (
	"slices"
	"time"

	"github.com/hbrbot/hbrbot"
)

// decision is what a click, an expiry or a failed card asks of a pending
// request.
type decision struct {
	want   hbrbot.RequestState // approved, cancelled or expired
	by     string              // Slack user ID; empty for expiry
	cardTS string              // the card clicked
	at     time.Time
}

// decide works out what d does to request r: the change to store, and
// false when there is none (r is decided already, or d's approver has
// approved already). An approval short of the required number adds the
// approver; the last one approves r and creates its batches, each due at
// once. A pending request past its expiry is expired, whatever d asks.
// Every change schedules a card sync, so the card shows it.
func decide(r hbrbot.Request, d decision) (hbrbot.RequestChange, bool) {
	ch := hbrbot.RequestChange{Expect: hbrbot.RequestVersion{State: r.State, Approvals: r.Approvals},
		State: r.State, Approvals: r.Approvals}
	if r.State != hbrbot.RequestPending {
		return ch, false
	}
	if r.CardTS == "" {
		ch.CardTS = d.cardTS
	}
	cardSync := hbrbot.Due{Work: hbrbot.Work{Kind: hbrbot.WorkCardSync, ID: r.ID}, At: d.at}
	want, by := d.want, d.by
	if want != hbrbot.RequestExpired && !d.at.Before(r.ExpiresAt) {
		want, by = hbrbot.RequestExpired, ""
	}
	if want == hbrbot.RequestApproved {
		if slices.Contains(r.Approvals, by) {
			return ch, false
		}
		ch.Approvals = append(slices.Clip(r.Approvals), by)
		if len(ch.Approvals) < max(r.RequiredApprovals, 1) {
			ch.Schedule = []hbrbot.Due{cardSync} // the card shows the count
			return ch, true
		}
	}
	ch.State, ch.DecidedBy, ch.DecidedAt = want, by, d.at
	ch.Unschedule = []hbrbot.Work{{Kind: hbrbot.WorkExpiry, ID: r.ID}}
	ch.Schedule = []hbrbot.Due{cardSync}
	if want == hbrbot.RequestApproved {
		ch.Batches = batchesOf(r, d.cardTS)
		for _, b := range ch.Batches {
			ch.Schedule = append(ch.Schedule, hbrbot.Due{Work: hbrbot.Work{Kind: hbrbot.WorkBatch, ID: b.Key()}, At: d.at})
		}
	}
	return ch, true
}

// applied is r as it stands once ch is stored.
func applied(r hbrbot.Request, ch hbrbot.RequestChange) hbrbot.Request {
	r.State, r.Approvals = ch.State, ch.Approvals
	if ch.DecidedBy != "" || !ch.DecidedAt.IsZero() {
		r.DecidedBy, r.DecidedAt = ch.DecidedBy, ch.DecidedAt
	}
	if ch.CardTS != "" {
		r.CardTS = ch.CardTS
	}
	return r
}

// batchesOf cuts an approved request into its HBR jobs, each reporting in
// the card's thread.
func batchesOf(r hbrbot.Request, cardTS string) []hbrbot.Batch {
	if r.CardTS != "" {
		cardTS = r.CardTS
	}
	parts := r.BatchTargets()
	out := make([]hbrbot.Batch, len(parts))
	for i, t := range parts {
		out[i].BatchStatus = hbrbot.BatchStatus{RequestID: r.ID, Index: i, Of: len(parts), Region: r.Spec.Region,
			CrossAccount: r.Spec.CrossAccount, DryRun: r.DryRun, RequesterID: r.RequesterID, ChannelID: r.ChannelID,
			ThreadTS: cardTS, State: hbrbot.BatchPending}
		out[i].Targets = t
		for _, id := range t.All() {
			if c, ok := hbrbot.Lookup(r.Preflight, id); ok {
				out[i].Before = append(out[i].Before, c)
			}
		}
	}
	return out
}

// leaveOutLatest drops the IDs whose client already runs the latest
// version.
func leaveOutLatest(t hbrbot.Targets, clients []hbrbot.ClientInfo) (keep hbrbot.Targets, skipped []string) {
	latest := func(id string) bool {
		c, ok := hbrbot.Lookup(clients, id)
		return ok && c.Version != "" && c.MaxVersion != "" && !c.Outdated()
	}
	for _, id := range t.InstanceIDs {
		if latest(id) {
			skipped = append(skipped, id)
		} else {
			keep.InstanceIDs = append(keep.InstanceIDs, id)
		}
	}
	for _, id := range t.ClientIDs {
		if latest(id) {
			skipped = append(skipped, id)
		} else {
			keep.ClientIDs = append(keep.ClientIDs, id)
		}
	}
	return keep, skipped
}
