package upgrade

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/hbrbot/hbrbot"
)

// progressStore is what the live progress reply reads and writes.
type progressStore interface {
	Request(ctx context.Context, id string) (hbrbot.Request, error)
	Progress(ctx context.Context, id string) (hbrbot.ReportState, time.Time, error)
	SetProgress(ctx context.Context, id string, state hbrbot.ReportState, ts string, at time.Time) error
	BatchStatuses(ctx context.Context, requestID string) ([]hbrbot.BatchStatus, error)
	Schedule(ctx context.Context, w hbrbot.Work, t time.Time) error
	Reschedule(ctx context.Context, l hbrbot.Lease, next hbrbot.Next) error
}

// ProgressReplies posts and redraws a request's live progress reply.
type ProgressReplies interface {
	PostProgress(ctx context.Context, r hbrbot.Request, batches []hbrbot.BatchStatus) (string, error)
	UpdateProgress(ctx context.Context, r hbrbot.Request, batches []hbrbot.BatchStatus) error
	replyFinder
}

// Budget spaces out calls that may be skipped or delayed (progress
// updates) under a rate all replicas share.
type Budget interface {
	Allow(ctx context.Context) (bool, time.Duration)
}

// Progress keeps each request's one progress reply in its card's thread
// up to date: at most once per Options.ProgressEvery, within the shared
// budget.
type Progress struct {
	store   progressStore
	replies ProgressReplies
	every   time.Duration
	budget  Budget
	log     *slog.Logger
	now     func() time.Time

	// asked remembers, per request, when this replica last asked for a
	// redraw after a poll: the hundred jobs of a request need not each ask
	// Redis on every poll.
	mu    sync.Mutex
	asked map[string]time.Time
}

func newProgress(store progressStore, replies ProgressReplies, o Options) *Progress {
	return &Progress{store: store, replies: replies, every: o.ProgressEvery, budget: o.ProgressBudget,
		log: o.Logger, now: o.Now, asked: map[string]time.Time{}}
}

// AfterPoll asks for a redraw one ProgressEvery on, unless this replica
// asked within the last one. A redraw that ran in between and found
// nothing new to ask for is asked for again by a poll at most
// ProgressEvery later.
func (p *Progress) AfterPoll(ctx context.Context, requestID string) {
	now := p.now()
	p.mu.Lock()
	if len(p.asked) > 10000 {
		for id, at := range p.asked {
			if now.Sub(at) >= p.every {
				delete(p.asked, id)
			}
		}
	}
	last, asked := p.asked[requestID]
	fresh := asked && now.Sub(last) < p.every
	if !fresh {
		p.asked[requestID] = now
	}
	p.mu.Unlock()
	if !fresh {
		p.schedule(ctx, requestID, now.Add(p.every))
	}
}

// Ended asks for the redraw that shows a job's end.
func (p *Progress) Ended(ctx context.Context, requestID string) { p.schedule(ctx, requestID, p.now()) }

func (p *Progress) schedule(ctx context.Context, requestID string, at time.Time) {
	if err := p.store.Schedule(ctx, hbrbot.Work{Kind: hbrbot.WorkProgress, ID: requestID}, at); err != nil {
		p.log.WarnContext(ctx, "schedule progress", "request", requestID, "err", err)
	}
}

// Show posts, or redraws, a request's progress reply. Progress is a
// courtesy: when the budget is spent the redraw waits, and a request whose
// jobs all ended before its first redraw gets none (its reports say it
// all).
func (p *Progress) Show(ctx, _ context.Context, l hbrbot.Lease) error {
	// The request and its batches are read only when needed: a request of
	// 100 jobs is 101 documents, and most passes here end in "not yet" or
	// "over budget".
	state, at, err := p.store.Progress(ctx, l.Work.ID)
	if errors.Is(err, hbrbot.ErrNotFound) {
		return p.store.Reschedule(ctx, l, hbrbot.End())
	}
	if err != nil {
		return err
	}
	now := p.now()
	if next := at.Add(p.every); now.Before(next) {
		return p.store.Reschedule(ctx, l, hbrbot.DueAt(next))
	}
	if state == "" {
		// No progress reply yet: none is needed once every job has ended
		// (the reports say it all), and that costs no budget.
		sts, err := p.store.BatchStatuses(ctx, l.Work.ID)
		if err != nil {
			return err
		}
		if allEnded(sts) {
			return p.store.Reschedule(ctx, l, hbrbot.End())
		}
	}
	if p.budget != nil {
		if ok, wait := p.budget.Allow(ctx); !ok {
			// Over budget: skip this redraw; a later one shows the same.
			// Spread out, so that many requests do not all come back to
			// an empty budget together.
			wait = max(wait, p.every)
			return p.store.Reschedule(ctx, l, hbrbot.DueAt(now.Add(wait+rand.N(2*wait))))
		}
	}
	r, err := p.store.Request(ctx, l.Work.ID)
	if errors.Is(err, hbrbot.ErrNotFound) {
		return p.store.Reschedule(ctx, l, hbrbot.End())
	}
	if err != nil {
		return err
	}
	if err := p.draw(ctx, r, now); err != nil {
		return err
	}
	return p.store.Reschedule(ctx, l, hbrbot.End())
}

// draw posts r's progress reply once (marked attempted before, looked for
// after a crash) and redraws it after.
func (p *Progress) draw(ctx context.Context, r hbrbot.Request, now time.Time) error {
	// Progress draws states and percentages: no IDs needed.
	batches, err := p.store.BatchStatuses(ctx, r.ID)
	if err != nil {
		return err
	}
	ts := r.ProgressTS
	switch r.ProgressState {
	case hbrbot.ReportPosted:
		err = p.replies.UpdateProgress(ctx, r, batches)
	case hbrbot.ReportAttempted:
		// A replica died around the post: find it before posting again.
		var found bool
		if ts, found, err = p.replies.FindReply(ctx, r.ChannelID, r.CardTS, r.ID, hbrbot.ReportProgress); err == nil && !found {
			ts, err = p.replies.PostProgress(ctx, r, batches)
		}
	default:
		if err = p.store.SetProgress(ctx, r.ID, hbrbot.ReportAttempted, "", r.ProgressAt); err != nil {
			return err
		}
		ts, err = p.replies.PostProgress(ctx, r, batches)
	}
	if err != nil {
		return fmt.Errorf("progress of %s: %w", r.ID, err)
	}
	return p.store.SetProgress(ctx, r.ID, hbrbot.ReportPosted, ts, now)
}

// allEnded reports whether every batch of a request has ended (or there
// are none).
func allEnded(batches []hbrbot.BatchStatus) bool {
	if len(batches) > 0 && len(batches) < batches[0].Of {
		return false
	}
	for _, b := range batches {
		if b.State != hbrbot.BatchFinished {
			return false
		}
	}
	return true
}
