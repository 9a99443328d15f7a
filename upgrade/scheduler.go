package upgrade

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/hbrbot/hbrbot"
)

// scheduleStore is the schedule all replicas share.
type scheduleStore interface {
	ClaimDue(ctx context.Context, now time.Time, n int, lease time.Duration) ([]hbrbot.Lease, error)
	NextDue(ctx context.Context) (time.Time, bool, error)
	Reschedule(ctx context.Context, l hbrbot.Lease, next hbrbot.Next) error
}

// Handler runs one leased work item. ctx lasts the lease; stop ends when
// the replica is shutting down, so that work not mid-call can be handed
// back. An error reschedules the item (at the error's RetryAfter, when it
// has one); ErrLeaseLost means another replica has it now.
type Handler func(ctx, stop context.Context, l hbrbot.Lease) error

// retryAfter is an error that says when to try again (Slack's 429).
type retryAfter interface{ RetryAfter() time.Duration }

// Scheduler claims due work and runs it through the handler of its kind,
// at most Options.Workers items at once.
type Scheduler struct {
	store    scheduleStore
	handlers map[hbrbot.WorkKind]Handler
	opts     Options
	log      *slog.Logger
	kick     chan struct{}
}

// NewScheduler builds a Scheduler with no handlers yet.
func NewScheduler(store scheduleStore, o Options) *Scheduler {
	o = o.withDefaults()
	return &Scheduler{store: store, handlers: map[hbrbot.WorkKind]Handler{}, opts: o, log: o.Logger,
		kick: make(chan struct{}, 1)}
}

// Handle runs work of kind with h. Call it before Run.
func (s *Scheduler) Handle(kind hbrbot.WorkKind, h Handler) { s.handlers[kind] = h }

// Kick wakes the scheduler: work was just scheduled.
func (s *Scheduler) Kick() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// maxIdle bounds how long the scheduler waits without looking at the
// schedule: other replicas add work it is not told about.
const maxIdle = time.Second

// claimCoalesce is how long the scheduler lets freed slots add up before
// it claims more work.
const claimCoalesce = 5 * time.Millisecond

// Run claims and runs due work until ctx ends, then finishes the work in
// hand (for at most Options.ShutdownGrace) and hands back what it has not
// started.
func (s *Scheduler) Run(ctx context.Context) error {
	var (
		wg      sync.WaitGroup
		slots   = make(chan struct{}, s.opts.Workers)
		backoff time.Duration
	)
	base, cancelBase := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelBase()
	stopAfterGrace := context.AfterFunc(ctx, func() { time.AfterFunc(s.opts.ShutdownGrace, cancelBase) })
	defer stopAfterGrace()
	defer wg.Wait()
	for ctx.Err() == nil {
		leases, err := s.claim(ctx, slots)
		if err != nil && ctx.Err() == nil {
			s.opts.Observer.RedisError()
			backoff = min(max(2*backoff, 100*time.Millisecond), 30*time.Second)
			s.log.ErrorContext(ctx, "claim due work; backing off", "err", err, "wait", backoff)
		} else {
			backoff = 0
		}
		for _, l := range leases {
			slots <- struct{}{}
			wg.Go(func() {
				defer func() { <-slots }()
				s.opts.Observer.WorkStarted()
				defer s.opts.Observer.WorkDone()
				// Work in hand is finished on shutdown, within the lease.
				wctx, cancel := context.WithDeadline(base, l.Until.Add(-time.Second))
				defer cancel()
				s.run(wctx, ctx, l)
				s.Kick() // it may have rescheduled sooner than the loop waits
			})
		}
		s.wait(ctx, s.idle(ctx, len(leases), backoff, len(slots) == cap(slots)))
	}
	return nil
}

// claim takes up to free due items. With most slots busy it first lets
// freed ones add up, to claim them with one script rather than one per
// freed slot; the delay is nothing next to a poll interval.
func (s *Scheduler) claim(ctx context.Context, slots chan struct{}) ([]hbrbot.Lease, error) {
	if free := cap(slots) - len(slots); free > 0 && free < cap(slots)/4 {
		t := time.NewTimer(claimCoalesce)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
	free := cap(slots) - len(slots)
	if free <= 0 || ctx.Err() != nil {
		return nil, nil
	}
	return s.store.ClaimDue(ctx, s.opts.Now(), free, s.opts.Lease)
}

// idle is how long to wait before the next claim.
func (s *Scheduler) idle(ctx context.Context, claimed int, backoff time.Duration, full bool) time.Duration {
	switch {
	case full:
		return maxIdle // all busy: wait for a slot or a kick
	case backoff > 0:
		return backoff
	case claimed > 0:
		return 0 // there may be more due
	}
	if next, ok, err := s.store.NextDue(ctx); err == nil && ok {
		return min(max(next.Sub(s.opts.Now()), 0), maxIdle)
	}
	return maxIdle
}

// wait sleeps d, or until a kick or ctx's end.
func (s *Scheduler) wait(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-s.kick:
	case <-t.C:
	}
}

// rescheduleTimeout bounds the rescheduling of failed work.
const rescheduleTimeout = 2 * time.Second

// run runs one leased item through its kind's handler, and reschedules it
// when the handler fails.
func (s *Scheduler) run(ctx, stop context.Context, l hbrbot.Lease) {
	log := s.log.With("work", l.Work.Kind, "id", l.Work.ID)
	h, ok := s.handlers[l.Work.Kind]
	if !ok {
		log.ErrorContext(ctx, "no handler for this kind of work; dropped")
		_ = s.store.Reschedule(ctx, l, hbrbot.End())
		return
	}
	err := h(ctx, stop, l)
	if err == nil || errors.Is(err, hbrbot.ErrLeaseLost) {
		return
	}
	retry := s.opts.Now().Add(s.opts.PollInterval)
	var ra retryAfter
	if errors.As(err, &ra) {
		retry = s.opts.Now().Add(ra.RetryAfter())
	}
	log.WarnContext(ctx, "work failed; will retry", "err", err, "at", retry)
	// On a context of its own: the handler may have failed because it
	// spent ctx's (the lease's) time waiting for HBR's budget or Redis.
	// The store refuses it once another replica holds the item.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rescheduleTimeout)
	defer cancel()
	if err := s.store.Reschedule(rctx, l, hbrbot.DueAt(retry)); err != nil && !errors.Is(err, hbrbot.ErrLeaseLost) {
		// The lease runs out and the work is claimed again then.
		log.ErrorContext(ctx, "reschedule", "err", err)
	}
}
