package upgrade

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hbrbot/hbrbot"
)

// retryLater is an error that says when to try again, as Slack's 429 does.
type retryLater time.Duration

func (r retryLater) Error() string             { return "rate limited" }
func (r retryLater) RetryAfter() time.Duration { return time.Duration(r) }

// startScheduler runs s until the test ends (or stop is called), and
// fails the test unless Run returns once its context ends.
func startScheduler(t *testing.T, s *Scheduler) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	stopped := false
	stop = func() {
		t.Helper()
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := waitFor(t, done, "Run to return"); err != nil {
			t.Errorf("Run: %v", err)
		}
	}
	t.Cleanup(stop)
	return stop
}

func TestSchedulerRunsEachKind(t *testing.T) {
	e := newEnv(t)
	s := NewScheduler(e.store, e.opts)
	ran := make(chan hbrbot.Work, 8)
	kinds := []hbrbot.WorkKind{hbrbot.WorkBatch, hbrbot.WorkExpiry, hbrbot.WorkCardSync, hbrbot.WorkProgress}
	for _, k := range kinds {
		s.Handle(k, func(ctx, _ context.Context, l hbrbot.Lease) error {
			if l.Work.Kind != k {
				t.Errorf("the %s handler ran %s", k, l.Work.Kind)
			}
			ran <- l.Work
			return e.store.Reschedule(ctx, l, hbrbot.End())
		})
	}
	var works []hbrbot.Work
	for _, k := range kinds {
		works = append(works, hbrbot.Work{Kind: k, ID: "x-" + string(k)})
	}
	e.schedule(works...)
	stop := startScheduler(t, s)
	seen := map[hbrbot.Work]bool{}
	for range works {
		seen[waitFor(t, ran, "a handler")] = true
	}
	stop()
	for _, w := range works {
		if !seen[w] {
			t.Errorf("%s %s did not run", w.Kind, w.ID)
		}
		e.wantUnscheduled(w)
	}
}

func TestSchedulerEndsUnknownKind(t *testing.T) {
	e := newEnv(t)
	s := NewScheduler(e.store, e.opts) // no handlers
	w := hbrbot.Work{Kind: hbrbot.WorkCardSync, ID: "r1"}
	e.schedule(w)
	startScheduler(t, s)
	if next := waitFor(t, e.store.rescheduled, "the item to be rescheduled"); next.Kind != hbrbot.NextEnd {
		t.Errorf("rescheduled %+v, want ended", next)
	}
	e.wantUnscheduled(w)
}

func TestSchedulerRetriesFailures(t *testing.T) {
	for _, tc := range []struct {
		name  string
		err   error
		after time.Duration // -1: left alone
	}{
		{"an error: one poll interval on", errors.New("slack down"), 10 * time.Second},
		{"an error that says when", fmt.Errorf("post: %w", retryLater(30*time.Second)), 30 * time.Second},
		{"lease lost: another replica has it", fmt.Errorf("save: %w", hbrbot.ErrLeaseLost), -1},
		{"no error", nil, -1},
		{"the handler spent its context", context.DeadlineExceeded, 10 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			s := NewScheduler(e.store, e.opts)
			s.Handle(hbrbot.WorkBatch, func(context.Context, context.Context, hbrbot.Lease) error { return tc.err })
			w := batchWork("r1.0")
			e.schedule(w)
			l := e.claim(w)
			ctx := e.ctx
			if errors.Is(tc.err, context.DeadlineExceeded) {
				var cancel context.CancelFunc
				ctx, cancel = context.WithCancel(e.ctx)
				cancel()
			}
			s.run(ctx, e.ctx, l)
			if tc.after < 0 {
				e.wantDue(w, l.Until) // still under its lease
			} else {
				e.wantDue(w, e.clock.Now().Add(tc.after))
			}
		})
	}
}

func TestSchedulerKick(t *testing.T) {
	e := newEnv(t)
	s := NewScheduler(e.store, e.opts)
	done := make(chan struct{})
	go func() {
		s.wait(e.ctx, time.Hour)
		close(done)
	}()
	s.Kick()
	s.Kick() // a kick pending already: never blocks
	waitFor(t, done, "the kick to wake the scheduler")
}

// On shutdown the work in hand is told to stop, and finished before Run
// returns; its own context lasts.
func TestSchedulerStop(t *testing.T) {
	e := newEnv(t)
	s := NewScheduler(e.store, e.opts)
	started, finished := make(chan struct{}), make(chan error, 1)
	var calls atomic.Int32
	s.Handle(hbrbot.WorkBatch, func(ctx, stop context.Context, l hbrbot.Lease) error {
		// A claim under way as the scheduler stops may hand the item,
		// handed back, to a second call: only the first reports.
		first := calls.Add(1) == 1
		if first {
			close(started)
		}
		<-stop.Done()
		if first {
			finished <- ctx.Err()
		}
		return e.store.Reschedule(ctx, l, hbrbot.DueAt(e.clock.Now()))
	})
	w := batchWork("r1.0")
	e.schedule(w)
	stop := startScheduler(t, s)
	waitFor(t, started, "the handler")
	stop()
	if err := waitFor(t, finished, "the handler to finish"); err != nil {
		t.Errorf("the work's context ended with the scheduler's: %v", err)
	}
	e.wantDue(w, e.clock.Now())
}

func TestSchedulerClaimFailure(t *testing.T) {
	e := newEnv(t)
	s := NewScheduler(e.store, e.opts)
	e.mini.Close()
	startScheduler(t, s)
	waitFor(t, e.obs.redis, "a Redis error to be observed")
}

func TestSchedulerIdle(t *testing.T) {
	e := newEnv(t)
	s := NewScheduler(e.store, e.opts)
	for _, tc := range []struct {
		name    string
		due     time.Duration // from now; 0: nothing scheduled
		claimed int
		backoff time.Duration
		full    bool
		want    time.Duration
	}{
		{name: "all slots busy", full: true, want: maxIdle},
		{name: "backing off", backoff: 400 * time.Millisecond, want: 400 * time.Millisecond},
		{name: "work claimed: there may be more", claimed: 3, want: 0},
		{name: "nothing scheduled", want: maxIdle},
		{name: "due soon", due: 300 * time.Millisecond, want: 300 * time.Millisecond},
		{name: "due long ago", due: -time.Hour, want: 0},
		{name: "due much later", due: time.Hour, want: maxIdle},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.mini.FlushAll()
			if tc.due != 0 {
				if err := e.store.Schedule(e.ctx, batchWork("r1.0"), e.clock.Now().Add(tc.due)); err != nil {
					t.Fatal(err)
				}
			}
			if got := s.idle(e.ctx, tc.claimed, tc.backoff, tc.full); got != tc.want {
				t.Errorf("idle %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSchedulerClaim(t *testing.T) {
	e := newEnv(t, withOptions(func(o *Options) { o.Workers = 8 }))
	s := NewScheduler(e.store, e.opts)
	for i := range 4 {
		e.schedule(batchWork(fmt.Sprintf("r1.%d", i)))
	}
	slots := make(chan struct{}, 8)
	for range 7 { // one slot free: freed ones are let add up first
		slots <- struct{}{}
	}
	if leases, err := s.claim(e.ctx, slots); err != nil || len(leases) != 1 {
		t.Errorf("claimed %d (%v), want the one free slot's", len(leases), err)
	}
	slots <- struct{}{}
	if leases, err := s.claim(e.ctx, slots); err != nil || len(leases) != 0 {
		t.Errorf("claimed %d (%v) with every slot busy", len(leases), err)
	}
}

// The whole flow through Scheduler.Run: approved, submitted, reported as
// started, polled once the interval passed, reported as finished.
func TestRunEndToEnd(t *testing.T) {
	e := newEnv(t)
	e.hbr.setTasks(task("completed", 100, ""))
	e.chat.during = func(c chatCall) {
		if c.Method == "PostReport" && c.Kind == hbrbot.ReportStarted {
			e.clock.Advance(10 * time.Second) // the first poll is due
		}
	}
	stop := startScheduler(t, e.svc.Scheduler)
	r := e.approved("i-e2e1", "i-e2e2")
	for {
		c := waitFor(t, e.chat.events, "the final report")
		if c.Method == "PostReport" && c.Kind == hbrbot.ReportFinal {
			break
		}
	}
	stop()
	b := e.batch(hbrbot.BatchKey(r.ID, 0))
	if b.State != hbrbot.BatchFinished || b.Final != hbrbot.JobCompleted || b.Polls != 1 {
		t.Errorf("batch %s %s after %d polls", b.State, b.Final, b.Polls)
	}
	wantCalls(t, e, "UpgradeBackupClients", 1)
	wantCalls(t, e, "DescribeTask", 1)
}
