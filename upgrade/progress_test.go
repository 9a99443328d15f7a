package upgrade

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/hbrbot/hbrbot"
)

// fakeBudget allows or refuses every call.
type fakeBudget struct {
	ok   bool
	wait time.Duration
}

func (b fakeBudget) Allow(context.Context) (bool, time.Duration) { return b.ok, b.wait }

func progressWork(id string) hbrbot.Work { return hbrbot.Work{Kind: hbrbot.WorkProgress, ID: id} }

// showProgress schedules a redraw of request id now and runs it.
func (e *env) showProgress(id string) error {
	e.t.Helper()
	return e.runNow(progressWork(id))
}

// wantProgress fails unless request id's progress reply stands at state,
// drawn at at.
func (e *env) wantProgress(id string, state hbrbot.ReportState, at time.Time) {
	e.t.Helper()
	got, gotAt, err := e.store.Progress(e.ctx, id)
	if err != nil {
		e.t.Fatal(err)
	}
	if got != state || !gotAt.Equal(at) {
		e.t.Errorf("progress %q drawn at %v, want %q at %v", got, gotAt, state, at)
	}
}

func TestProgressFirstPostThenRedraws(t *testing.T) {
	e := newEnv(t)
	r, _ := e.seed(instanceIDs("p", 150), running(e.clock.Now()))
	var during hbrbot.ReportState
	e.chat.during = func(c chatCall) {
		if c.Method == "PostProgress" {
			during, _, _ = e.store.Progress(e.ctx, r.ID)
		}
	}
	first := e.clock.Now()
	if err := e.showProgress(r.ID); err != nil {
		t.Fatal(err)
	}
	posts := e.chat.calls("PostProgress")
	if len(posts) != 1 || posts[0].Request.ID != r.ID || len(posts[0].Statuses) != 2 {
		t.Fatalf("posts %+v, want one with the request's two jobs", posts)
	}
	if during != hbrbot.ReportAttempted {
		t.Errorf("progress %q while posting, want attempted", during)
	}
	e.wantProgress(r.ID, hbrbot.ReportPosted, first)
	if got := e.read(r.ID); got.ProgressTS != "1700000001.000001" {
		t.Errorf("progress ts %q", got.ProgressTS)
	}
	e.wantUnscheduled(progressWork(r.ID))

	// Within ProgressEvery: deferred to its end.
	e.clock.Advance(2 * time.Second)
	if err := e.showProgress(r.ID); err != nil {
		t.Fatal(err)
	}
	e.wantDue(progressWork(r.ID), first.Add(5*time.Second))
	if n := len(e.chat.calls("UpdateProgress")); n != 0 {
		t.Errorf("%d redraws within ProgressEvery", n)
	}

	// Past it: redrawn in place.
	now := e.clock.Advance(3 * time.Second)
	e.runDue()
	if n := len(e.chat.calls("UpdateProgress")); n != 1 {
		t.Errorf("%d redraws, want 1", n)
	}
	if n := len(e.chat.calls("PostProgress")); n != 1 {
		t.Errorf("%d posts, want the first only", n)
	}
	e.wantProgress(r.ID, hbrbot.ReportPosted, now)
}

func TestProgressBudget(t *testing.T) {
	for _, tc := range []struct {
		name   string
		budget fakeBudget
		posted bool
	}{
		{"within budget", fakeBudget{ok: true}, true},
		{"over budget: deferred", fakeBudget{wait: time.Second}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, withOptions(func(o *Options) { o.ProgressBudget = tc.budget }))
			r, _ := e.seed([]string{"i-p1"}, running(e.clock.Now()))
			if err := e.showProgress(r.ID); err != nil {
				t.Fatal(err)
			}
			if posted := len(e.chat.calls("PostProgress")) == 1; posted != tc.posted {
				t.Fatalf("posted %v, want %v", posted, tc.posted)
			}
			if tc.posted {
				return
			}
			// The wait is at least ProgressEvery, spread over twice more.
			at, ok := e.due(progressWork(r.ID))
			now := e.clock.Now()
			if !ok || at.Before(now.Add(5*time.Second)) || !at.Before(now.Add(15*time.Second)) {
				t.Errorf("due at %v (%v), want within [5s, 15s) of now", at.Sub(now), ok)
			}
			e.wantProgress(r.ID, "", time.Time{})
		})
	}
}

func TestProgressNotNeeded(t *testing.T) {
	t.Run("every job ended before the first post", func(t *testing.T) {
		e := newEnv(t)
		r, _ := e.seed(instanceIDs("p", 150), finishedBatch(hbrbot.JobCompleted))
		if err := e.showProgress(r.ID); err != nil {
			t.Fatal(err)
		}
		if n := len(e.chat.calls("")); n != 0 {
			t.Errorf("%d Slack calls, want none", n)
		}
		e.wantUnscheduled(progressWork(r.ID))
	})
	t.Run("an unknown request", func(t *testing.T) {
		e := newEnv(t)
		if err := e.showProgress("rnothere"); err != nil {
			t.Fatal(err)
		}
		e.wantUnscheduled(progressWork("rnothere"))
	})
}

func TestProgressAttemptedEarlier(t *testing.T) {
	for _, found := range []bool{true, false} {
		t.Run(map[bool]string{true: "found", false: "not found"}[found], func(t *testing.T) {
			e := newEnv(t)
			r, _ := e.seed([]string{"i-p1"}, running(e.clock.Now()))
			if err := e.store.SetProgress(e.ctx, r.ID, hbrbot.ReportAttempted, "", time.Time{}); err != nil {
				t.Fatal(err)
			}
			if found {
				e.chat.setFound(r.ID, hbrbot.ReportProgress, "1700000002.000001")
			}
			if err := e.showProgress(r.ID); err != nil {
				t.Fatal(err)
			}
			finds := e.chat.calls("FindReply")
			if len(finds) != 1 || finds[0].Key != r.ID || finds[0].ThreadTS != r.CardTS || finds[0].Kind != hbrbot.ReportProgress {
				t.Errorf("look-ups %+v, want one in the card's thread", finds)
			}
			posts, want := len(e.chat.calls("PostProgress")), 0
			wantTS := "1700000002.000001"
			if !found {
				want, wantTS = 1, "1700000001.000002"
			}
			if posts != want {
				t.Errorf("%d posts, want %d", posts, want)
			}
			e.wantProgress(r.ID, hbrbot.ReportPosted, e.clock.Now())
			if got := e.read(r.ID); got.ProgressTS != wantTS {
				t.Errorf("progress ts %q, want %q", got.ProgressTS, wantTS)
			}
		})
	}
}

func TestProgressFailures(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(e *env)
		state hbrbot.ReportState
	}{
		{"the post failed: left attempted", func(e *env) { e.chat.failOn("PostProgress", errors.New("ratelimited")) }, hbrbot.ReportAttempted},
		{"jobs unreadable", func(e *env) { e.store.failOn("BatchStatuses", errors.New("i/o timeout")) }, ""},
		{"request unreadable", func(e *env) { e.store.failOn("Request", errors.New("i/o timeout")) }, ""},
		{"store down", func(e *env) { e.mini.Close() }, "-"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			r, _ := e.seed([]string{"i-p1"}, running(e.clock.Now()))
			w := progressWork(r.ID)
			e.schedule(w)
			l := e.claim(w)
			tc.setup(e)
			if err := e.svc.Scheduler.handlers[w.Kind](e.ctx, e.ctx, l); err == nil {
				t.Fatal("no error")
			}
			if tc.state != "-" {
				e.wantProgress(r.ID, tc.state, time.Time{})
			}
		})
	}
}

func TestProgressAfterPoll(t *testing.T) {
	e := newEnv(t)
	p := newProgress(e.store, e.chat, e.opts.withDefaults())
	w := progressWork("r1")
	start := e.clock.Now()
	p.AfterPoll(e.ctx, "r1")
	e.wantDue(w, start.Add(5*time.Second))
	// The redraw ran; another poll within ProgressEvery asks for none.
	if err := e.store.Store.Reschedule(e.ctx, e.claimAt(w, start.Add(5*time.Second)), hbrbot.End()); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(4 * time.Second)
	p.AfterPoll(e.ctx, "r1")
	e.wantUnscheduled(w)
	// One ProgressEvery after the last ask, a poll asks again.
	now := e.clock.Advance(time.Second)
	p.AfterPoll(e.ctx, "r1")
	e.wantDue(w, now.Add(5*time.Second))
	// The end of a job asks for a redraw now.
	p.Ended(e.ctx, "r1")
	e.wantDue(w, now)
}

// The memory of asks is pruned of the stale once it grows large.
func TestProgressAfterPollForgets(t *testing.T) {
	e := newEnv(t)
	p := newProgress(e.store, e.chat, e.opts.withDefaults())
	old := e.clock.Now().Add(-time.Minute)
	for i := range 10001 {
		p.asked[fmt.Sprint("r", i)] = old
	}
	p.asked["recent"] = e.clock.Now()
	p.AfterPoll(e.ctx, "r1")
	if len(p.asked) != 2 {
		t.Errorf("%d asks remembered, want the recent one and r1's", len(p.asked))
	}
}

// claimAt claims w as due at at.
func (e *env) claimAt(w hbrbot.Work, at time.Time) hbrbot.Lease {
	e.t.Helper()
	leases, err := e.store.ClaimDue(e.ctx, at, 1000, time.Minute)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, l := range leases {
		if l.Work == w {
			return l
		}
	}
	e.t.Fatalf("%s %s not due at %v", w.Kind, w.ID, at)
	return hbrbot.Lease{}
}

func TestAllEnded(t *testing.T) {
	fin := hbrbot.BatchStatus{State: hbrbot.BatchFinished, Of: 2}
	run := hbrbot.BatchStatus{State: hbrbot.BatchRunning, Of: 2}
	for _, tc := range []struct {
		name    string
		batches []hbrbot.BatchStatus
		want    bool
	}{
		{"none", nil, true},
		{"all finished", []hbrbot.BatchStatus{fin, fin}, true},
		{"one running", []hbrbot.BatchStatus{fin, run}, false},
		{"one missing", []hbrbot.BatchStatus{fin}, false},
	} {
		if got := allEnded(tc.batches); got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
