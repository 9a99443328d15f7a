package upgrade

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/hbrbot/hbrbot"
	"github.com/hbrbot/hbrbot/hbr"
)

// wantReports fails unless the reports posted are kinds, in order.
func wantReports(t *testing.T, e *env, kinds ...hbrbot.ReportKind) {
	t.Helper()
	if got := e.chat.reports(); !slices.Equal(got, kinds) {
		t.Errorf("reports %v, want %v", got, kinds)
	}
}

// wantCalls fails unless HBR was called n times with method.
func wantCalls(t *testing.T, e *env, method string, n int) {
	t.Helper()
	if got := len(e.hbr.calls(method)); got != n {
		t.Errorf("%d %s calls, want %d", got, method, n)
	}
}

// running makes a seeded batch one HBR started at started, its start
// reported.
func running(started time.Time) func(*hbrbot.Batch) {
	return func(b *hbrbot.Batch) {
		b.State, b.TaskID, b.Started, b.Deadline = hbrbot.BatchRunning, "t-seeded", started, started.Add(10*time.Minute)
		b.Reported = map[hbrbot.ReportKind]hbrbot.ReportState{hbrbot.ReportStarted: hbrbot.ReportPosted}
	}
}

func TestJobLifecycle(t *testing.T) {
	e := newEnv(t)
	ids := instanceIDs("life", 45)
	r := e.approved(ids...)
	key := hbrbot.BatchKey(r.ID, 0)
	w := batchWork(key)
	result := fmt.Sprintf(`[{"instanceId":%q,"clientStatus":"ACTIVATED"},{"instanceId":%q,"errorCode":"Timeout"}]`, ids[0], ids[1])
	e.hbr.setTasks(task("created", 40, ""), task("completed", 100, result))
	e.hbr.setClients(func(t hbrbot.Targets) ([]hbrbot.ClientInfo, error) {
		return clientsAt("2.0.0", "2.0.0", t.All()...), nil
	})

	// pending → submitting → running, the start reported, the first poll
	// an interval on.
	start := e.clock.Now()
	e.settle()
	subs := e.hbr.calls("UpgradeBackupClients")
	if len(subs) != 1 || !slices.Equal(subs[0].Targets.All(), ids) || subs[0].Region != region {
		t.Fatalf("submissions %+v, want one of the batch", subs)
	}
	b := e.batch(key)
	if b.State != hbrbot.BatchRunning || b.TaskID == "" || !b.Started.Equal(start) || !b.Deadline.Equal(start.Add(10*time.Minute)) {
		t.Fatalf("batch %+v, want running since %v", b.BatchStatus, start)
	}
	wantReports(t, e, hbrbot.ReportStarted)
	e.wantDue(w, start.Add(10*time.Second))
	if recs := e.audit(hbrbot.AuditHBRCall); len(recs) != 1 || recs[0].Fields["task_id"] != b.TaskID {
		t.Errorf("audit %+v, want the submission", recs)
	}

	// The first poll: still running, due again when the policy says.
	now := e.clock.Advance(10 * time.Second)
	e.runDue()
	b = e.batch(key)
	if b.State != hbrbot.BatchRunning || b.Polls != 1 || b.Progress != 40 {
		t.Fatalf("batch %s after %d polls at %d%%", b.State, b.Polls, b.Progress)
	}
	e.wantDue(w, pollPolicyOf(e.opts).next(b.BatchStatus, now))
	e.wantDue(hbrbot.Work{Kind: hbrbot.WorkProgress, ID: r.ID}, now.Add(5*time.Second))
	wantReports(t, e, hbrbot.ReportStarted)

	// The poll that sees the end: verified, reported with its table, closed.
	now = e.clock.Advance(10 * time.Second)
	e.runDue()
	b = e.batch(key)
	if b.State != hbrbot.BatchFinished || b.Final != hbrbot.JobCompleted || b.Polls != 2 || !b.Ended.Equal(now) {
		t.Fatalf("batch %s %s after %d polls, ended %v", b.State, b.Final, b.Polls, b.Ended)
	}
	if len(b.Results) != 2 || len(b.After) != 45 || b.VerifyFailure != "" {
		t.Errorf("results %v, %d after, verify failure %q", b.Results, len(b.After), b.VerifyFailure)
	}
	verify := e.hbr.calls("DescribeBackupClients")
	if len(verify) != 2 || !slices.Equal(verify[1].Targets.All(), ids) {
		t.Errorf("look-ups %+v, want the preflight and the verification", verify)
	}
	wantReports(t, e, hbrbot.ReportStarted, hbrbot.ReportFinal)
	if tables := e.chat.calls("UploadTable"); len(tables) != 1 || tables[0].Key != key {
		t.Errorf("tables %+v, want one for 45 IDs", tables)
	}
	for _, k := range []hbrbot.ReportKind{hbrbot.ReportStarted, hbrbot.ReportFinal, hbrbot.ReportTable} {
		if b.Reported[k] != hbrbot.ReportPosted {
			t.Errorf("%s %q, want posted", k, b.Reported[k])
		}
	}
	e.wantUnscheduled(w)
	e.wantDue(hbrbot.Work{Kind: hbrbot.WorkCardSync, ID: r.ID}, now)
	e.wantDue(hbrbot.Work{Kind: hbrbot.WorkProgress, ID: r.ID}, now)
	recs := e.audit(hbrbot.AuditJobFinished)
	if len(recs) != 1 || recs[0].Fields["final"] != "completed" || recs[0].Fields["polls"] != "2" ||
		recs[0].Fields["upgraded"] != "45" || recs[0].Fields["failed"] != "" {
		t.Errorf("audit %+v", recs)
	}
	if !slices.Equal(e.obs.finished, []string{"completed"}) {
		t.Errorf("observed %v", e.obs.finished)
	}

	// The card shows the outcome.
	e.chat.reset()
	e.settle()
	cards := e.chat.calls("UpdateCard")
	if len(cards) != 1 || len(cards[0].Batches) != 1 || cards[0].Batches[0].State != hbrbot.BatchFinished {
		t.Errorf("card updates %+v, want one with the finished batch", cards)
	}
	wantCalls(t, e, "UpgradeBackupClients", 1)
}

func TestJobSubmission(t *testing.T) {
	ids := []string{"i-sub1", "c-sub2"}
	for _, tc := range []struct {
		name    string
		answer  submitAnswer
		final   hbrbot.FinalStatus
		error   *hbrbot.SubmissionError
		reports []hbrbot.ReportKind
	}{
		{"refused by HBR", submitAnswer{err: &hbrbot.HBRError{Action: "UpgradeBackupClients", Code: "InvalidParameter", Message: "bad ids", RequestID: "hbr-1"}},
			hbrbot.JobNotStarted, &hbrbot.SubmissionError{Code: "InvalidParameter", Message: "bad ids"}, []hbrbot.ReportKind{hbrbot.ReportFinal}},
		// An unknown outcome is resolved by looking the IDs up later:
		// TestTakeOver.
		{"another error", submitAnswer{err: errors.New("tls: handshake failure")},
			hbrbot.JobNotStarted, &hbrbot.SubmissionError{Code: "Error", Message: "tls: handshake failure"}, []hbrbot.ReportKind{hbrbot.ReportFinal}},
		{"every ID invalid: nothing to wait for", submitAnswer{sub: hbrbot.Submission{TaskID: "t-9", Invalid: []hbrbot.InvalidTarget{
			{ID: "i-sub1", ErrorCode: "NotFound"}, {ID: "c-sub2", ErrorCode: "NotFound"}}}},
			hbrbot.JobCompleted, nil, []hbrbot.ReportKind{hbrbot.ReportStarted, hbrbot.ReportFinal}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.hbr.submits = []submitAnswer{tc.answer}
			r := e.approved(ids...)
			e.settle()
			b := e.batch(hbrbot.BatchKey(r.ID, 0))
			if b.State != hbrbot.BatchFinished || b.Final != tc.final {
				t.Errorf("batch %s %s, want finished %s", b.State, b.Final, tc.final)
			}
			if (b.Error == nil) != (tc.error == nil) || b.Error != nil && *b.Error != *tc.error {
				t.Errorf("error %+v, want %+v", b.Error, tc.error)
			}
			wantReports(t, e, tc.reports...)
			wantCalls(t, e, "UpgradeBackupClients", 1)
			wantCalls(t, e, "DescribeTask", 0)
			e.wantUnscheduled(batchWork(b.Key()))
			if recs := e.audit(hbrbot.AuditJobFinished); len(recs) != 1 {
				t.Errorf("%d job_finished records", len(recs))
			}
		})
	}
}

func TestJobDryRun(t *testing.T) {
	e := newEnv(t, func(s *Settings, _ *Options) { s.DryRun = true })
	r := e.approved("i-dry1", "i-dry2")
	e.settle()
	b := e.batch(hbrbot.BatchKey(r.ID, 0))
	if b.State != hbrbot.BatchFinished || b.Final != hbrbot.JobDryRun || b.Error != nil {
		t.Errorf("batch %s %s (%+v)", b.State, b.Final, b.Error)
	}
	wantCalls(t, e, "UpgradeBackupClients", 0)
	wantCalls(t, e, "DescribeTask", 0)
	wantCalls(t, e, "DescribeBackupClients", 1) // the preflight only
	wantReports(t, e, hbrbot.ReportFinal)
	if recs := e.audit(hbrbot.AuditHBRCall); len(recs) != 1 || recs[0].Fields["dry_run"] != "true" {
		t.Errorf("audit %+v, want the dry run's", recs)
	}
}

func TestJobInterruptedSubmission(t *testing.T) {
	e := newEnv(t)
	// A holder before this one marked it submitting, then lost its lease.
	_, batches := e.seed([]string{"i-int1"}, func(b *hbrbot.Batch) { b.State = hbrbot.BatchSubmitting })
	e.settle()
	b := e.batch(batches[0].Key())
	want := hbrbot.SubmissionError{Unknown: true, Interrupted: true}
	if b.State != hbrbot.BatchFinished || b.Final != hbrbot.JobNotStarted || b.Error == nil || *b.Error != want {
		t.Errorf("batch %s %s (%+v), want finished not started, interrupted", b.State, b.Final, b.Error)
	}
	wantCalls(t, e, "UpgradeBackupClients", 0)
	wantReports(t, e, hbrbot.ReportFinal)
}

func TestJobReplyAttemptedEarlier(t *testing.T) {
	for _, found := range []bool{true, false} {
		t.Run(fmt.Sprintf("found %v", found), func(t *testing.T) {
			e := newEnv(t)
			start := e.clock.Now()
			_, batches := e.seed([]string{"i-rep1"}, running(start), func(b *hbrbot.Batch) {
				b.Reported[hbrbot.ReportStarted] = hbrbot.ReportAttempted
			})
			key := batches[0].Key()
			if found {
				e.chat.setFound(key, hbrbot.ReportStarted, "1700000000.555555")
			}
			e.settle()
			finds := e.chat.calls("FindReply")
			if len(finds) != 1 || finds[0].Key != key || finds[0].Kind != hbrbot.ReportStarted ||
				finds[0].Channel != channel || finds[0].ThreadTS != batches[0].ThreadTS {
				t.Errorf("look-ups %+v, want one for the started report in the card's thread", finds)
			}
			if found {
				wantReports(t, e)
			} else {
				wantReports(t, e, hbrbot.ReportStarted)
			}
			if b := e.batch(key); b.Reported[hbrbot.ReportStarted] != hbrbot.ReportPosted || b.State != hbrbot.BatchRunning {
				t.Errorf("batch %s, started %q", b.State, b.Reported[hbrbot.ReportStarted])
			}
			e.wantDue(batchWork(key), start.Add(10*time.Second))
		})
	}
}

// A post that failed is retried by the scheduler; the next pass looks for
// it first, since it may have reached Slack.
func TestJobReplyFailed(t *testing.T) {
	e := newEnv(t)
	r := e.approved("i-rep1")
	key := hbrbot.BatchKey(r.ID, 0)
	e.chat.failOn("PostReport", errors.New("slack: ratelimited"))
	e.settle()
	if b := e.batch(key); b.State != hbrbot.BatchRunning || b.Reported[hbrbot.ReportStarted] != hbrbot.ReportAttempted {
		t.Fatalf("batch %s, started %q; want running, attempted", b.State, b.Reported[hbrbot.ReportStarted])
	}
	e.wantDue(batchWork(key), e.clock.Now().Add(10*time.Second))
	if n := len(e.chat.calls("FindReply")); n != 0 {
		t.Errorf("%d look-ups by the holder that marked it", n)
	}

	e.chat.failOn("PostReport", nil)
	e.clock.Advance(10 * time.Second)
	e.runDue()
	if n := len(e.chat.calls("FindReply")); n != 1 {
		t.Errorf("%d look-ups, want 1", n)
	}
	wantReports(t, e, hbrbot.ReportStarted, hbrbot.ReportStarted) // the failed post, and the one after
	if b := e.batch(key); b.Reported[hbrbot.ReportStarted] != hbrbot.ReportPosted || b.Polls != 1 {
		t.Errorf("batch: started %q after %d polls", b.Reported[hbrbot.ReportStarted], b.Polls)
	}

	// A look-up that fails is retried too.
	_, batches := e.seed([]string{"i-rep2"}, running(e.clock.Now()), func(b *hbrbot.Batch) {
		b.Reported[hbrbot.ReportStarted] = hbrbot.ReportAttempted
	})
	e.chat.failOn("FindReply", errors.New("slack: ratelimited"))
	if err := e.handle(batchWork(batches[0].Key())); err == nil {
		t.Error("a failed look-up went unreported")
	}
}

func TestJobPoll(t *testing.T) {
	hbrErr := &hbrbot.HBRError{Action: "DescribeTask", Code: "ServiceUnavailable"}
	completed := task("completed", 100, `[{"instanceId":"i-poll1","clientStatus":"ACTIVATED"}]`)
	for _, tc := range []struct {
		name     string
		deadline time.Duration // from now
		answer   taskAnswer
		clients  func(hbrbot.Targets) ([]hbrbot.ClientInfo, error)
		state    hbrbot.BatchState
		final    hbrbot.FinalStatus
		progress int
		results  int
		after    int
		failure  string
		verified bool
	}{
		{name: "still running", deadline: time.Hour, answer: task("created", 30, ""), state: hbrbot.BatchRunning, progress: 30},
		{name: "describe failed: polled on", deadline: time.Hour, answer: taskAnswer{err: hbrErr}, state: hbrbot.BatchRunning},
		{name: "completed", deadline: time.Hour, answer: completed, state: hbrbot.BatchFinished, final: hbrbot.JobCompleted,
			progress: 100, results: 1, after: 2, verified: true},
		{name: "failed", deadline: time.Hour, answer: task("created", -1, ""), state: hbrbot.BatchFinished, final: hbrbot.JobFailed,
			progress: -1, after: 2, verified: true},
		{name: "expired", deadline: time.Hour, answer: task("expired", 20, ""), state: hbrbot.BatchFinished, final: hbrbot.JobExpired,
			progress: 20, after: 2, verified: true},
		{name: "cancelled", deadline: time.Hour, answer: task("cancelled", 20, ""), state: hbrbot.BatchFinished, final: hbrbot.JobCancelled,
			progress: 20, after: 2, verified: true},
		{name: "unreadable result: the job's status decides", deadline: time.Hour, answer: task("completed", 100, "<html>"),
			state: hbrbot.BatchFinished, final: hbrbot.JobCompleted, progress: 100, after: 2, verified: true},
		{name: "timed out after the deadline, verified", deadline: 0, answer: task("created", 60, ""), state: hbrbot.BatchFinished,
			final: hbrbot.JobTimedOut, progress: 60, after: 2, verified: true},
		{name: "timed out with the last poll failed", deadline: -time.Second, answer: taskAnswer{err: hbrErr}, state: hbrbot.BatchFinished,
			final: hbrbot.JobTimedOut},
		{name: "verification failed", deadline: time.Hour, answer: completed, state: hbrbot.BatchFinished, final: hbrbot.JobCompleted,
			progress: 100, results: 1, failure: "Throttling", verified: true,
			clients: func(hbrbot.Targets) ([]hbrbot.ClientInfo, error) { return nil, &hbrbot.HBRError{Code: "Throttling"} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			now := e.clock.Now()
			_, batches := e.seed([]string{"i-poll1", "i-poll2"}, running(now.Add(-10*time.Second)), func(b *hbrbot.Batch) {
				b.Deadline = now.Add(tc.deadline)
			})
			key := batches[0].Key()
			e.hbr.setTasks(tc.answer)
			e.hbr.setClients(tc.clients)
			if err := e.handle(batchWork(key)); err != nil {
				t.Fatal(err)
			}
			b := e.batch(key)
			if b.State != tc.state || b.Final != tc.final || b.Polls != 1 || b.Progress != tc.progress {
				t.Errorf("batch %s %q after %d polls at %d%%, want %s %q after 1 at %d%%",
					b.State, b.Final, b.Polls, b.Progress, tc.state, tc.final, tc.progress)
			}
			if len(b.Results) != tc.results || len(b.After) != tc.after || b.VerifyFailure != tc.failure {
				t.Errorf("%d results, %d after, verify failure %q; want %d, %d, %q",
					len(b.Results), len(b.After), b.VerifyFailure, tc.results, tc.after, tc.failure)
			}
			if calls := e.hbr.calls("DescribeTask"); len(calls) != 1 || calls[0].TaskID != "t-seeded" || calls[0].Region != region {
				t.Errorf("polls %+v", calls)
			}
			if got := len(e.hbr.calls("DescribeBackupClients")) >= 1; got != tc.verified {
				t.Errorf("verified %v, want %v", got, tc.verified)
			}
			if tc.state == hbrbot.BatchRunning {
				e.wantDue(batchWork(key), pollPolicyOf(e.opts).next(b.BatchStatus, now))
				wantReports(t, e)
			} else {
				if !b.Ended.Equal(now) {
					t.Errorf("ended %v, want %v", b.Ended, now)
				}
				e.wantUnscheduled(batchWork(key))
				wantReports(t, e, hbrbot.ReportFinal)
			}
			if recs := e.audit(hbrbot.AuditHBRCall); len(recs) != 1 || recs[0].Fields["action"] != "DescribeTask" {
				t.Errorf("audit %+v, want the first poll", recs)
			}
		})
	}
}

func TestJobLeaseLost(t *testing.T) {
	e := newEnv(t)
	r := e.approved("i-lost1")
	w := batchWork(hbrbot.BatchKey(r.ID, 0))
	old := e.claim(w)
	e.clock.Advance(2 * time.Minute) // the lease ran out; another replica claims it
	mine := e.claim(w)
	err := e.svc.Scheduler.handlers[w.Kind](e.ctx, e.ctx, old)
	if !errors.Is(err, hbrbot.ErrLeaseLost) {
		t.Fatalf("error %v, want ErrLeaseLost", err)
	}
	if b := e.batch(w.ID); b.State != hbrbot.BatchPending {
		t.Errorf("the old holder wrote the batch: %s", b.State)
	}
	wantCalls(t, e, "UpgradeBackupClients", 0)
	// The scheduler leaves a lost item to its holder.
	e.svc.Scheduler.run(e.ctx, e.ctx, old)
	e.wantDue(w, mine.Until)
	if err := e.svc.Scheduler.handlers[w.Kind](e.ctx, e.ctx, mine); err != nil {
		t.Fatal(err)
	}
	wantCalls(t, e, "UpgradeBackupClients", 1)
}

func TestJobStopped(t *testing.T) {
	stopped, cancel := context.WithCancel(t.Context())
	cancel()
	t.Run("pending: handed back due now", func(t *testing.T) {
		e := newEnv(t)
		r := e.approved("i-stop1")
		w := batchWork(hbrbot.BatchKey(r.ID, 0))
		if err := e.svc.Scheduler.handlers[w.Kind](e.ctx, stopped, e.claim(w)); err != nil {
			t.Fatal(err)
		}
		if b := e.batch(w.ID); b.State != hbrbot.BatchPending {
			t.Errorf("batch %s, want pending", b.State)
		}
		e.wantDue(w, e.clock.Now())
		wantCalls(t, e, "UpgradeBackupClients", 0)
	})
	t.Run("submitting: settled before it is handed back", func(t *testing.T) {
		e := newEnv(t)
		_, batches := e.seed([]string{"i-stop2"}, func(b *hbrbot.Batch) { b.State = hbrbot.BatchSubmitting })
		w := batchWork(batches[0].Key())
		if err := e.svc.Scheduler.handlers[w.Kind](e.ctx, stopped, e.claim(w)); err != nil {
			t.Fatal(err)
		}
		if b := e.batch(w.ID); b.State != hbrbot.BatchFinished || b.Error == nil || !b.Error.Interrupted {
			t.Errorf("batch %s (%+v), want finished, interrupted", b.State, b.Error)
		}
		e.wantDue(w, e.clock.Now())
		wantReports(t, e)
	})
}

// A lease too short for the submission is stretched over it first.
func TestJobSubmissionHoldsTheLease(t *testing.T) {
	e := newEnv(t, withOptions(func(o *Options) { o.SubmitTimeout = 2 * time.Minute }))
	r := e.approved("i-hold1")
	w := batchWork(hbrbot.BatchKey(r.ID, 0))
	until := e.clock.Now().Add(2*time.Minute + 2*time.Second)
	var held time.Time
	var scheduled bool
	var deadline time.Time
	e.hbr.onSubmit = func(ctx context.Context) {
		held, scheduled = e.due(w)
		deadline, _ = ctx.Deadline()
	}
	if err := e.handle(w); err != nil {
		t.Fatal(err)
	}
	if !scheduled || !held.Equal(until) {
		t.Errorf("lease held until %v during the call, want %v", held, until)
	}
	if !deadline.Equal(until.Add(-2 * time.Second)) {
		t.Errorf("call deadline %v, want SubmitTimeout on, within the lease", deadline)
	}
	if b := e.batch(w.ID); b.State != hbrbot.BatchRunning {
		t.Errorf("batch %s, want running", b.State)
	}
}

// SubmitTimeout is documented as the most one UpgradeBackupClients call
// may take, rate-limit wait included.
func TestJobSubmitBoundedBySubmitTimeout(t *testing.T) {
	e := newEnv(t)
	r := e.approved("i-sub1")
	var deadline time.Time
	e.hbr.onSubmit = func(ctx context.Context) { deadline, _ = ctx.Deadline() }
	if err := e.handle(batchWork(hbrbot.BatchKey(r.ID, 0))); err != nil {
		t.Fatal(err)
	}
	if limit := e.clock.Now().Add(10 * time.Second); deadline.After(limit) {
		t.Errorf("call deadline %v after now, want at most the 10s SubmitTimeout", deadline.Sub(e.clock.Now()))
	}
}

func TestJobOddities(t *testing.T) {
	t.Run("a batch gone is ended", func(t *testing.T) {
		e := newEnv(t)
		w := batchWork("rnothere.0")
		if err := e.runNow(w); err != nil {
			t.Fatal(err)
		}
		e.wantUnscheduled(w)
	})
	t.Run("an unknown state is an error", func(t *testing.T) {
		e := newEnv(t)
		_, batches := e.seed([]string{"i-odd1"}, func(b *hbrbot.Batch) { b.State = "paused" })
		if err := e.handle(batchWork(batches[0].Key())); err == nil {
			t.Error("no error")
		}
	})
	t.Run("a table attempted before is uploaded again", func(t *testing.T) {
		e := newEnv(t)
		_, batches := e.seed(instanceIDs("tab", 41), finishedBatch(hbrbot.JobCompleted), func(b *hbrbot.Batch) {
			b.Reported[hbrbot.ReportTable] = hbrbot.ReportAttempted
		})
		if err := e.handle(batchWork(batches[0].Key())); err != nil {
			t.Fatal(err)
		}
		wantReports(t, e)
		if n := len(e.chat.calls("UploadTable")); n != 1 {
			t.Errorf("%d uploads, want 1", n)
		}
	})
	t.Run("a failed upload is retried", func(t *testing.T) {
		e := newEnv(t)
		_, batches := e.seed(instanceIDs("tab", 41), finishedBatch(hbrbot.JobCompleted))
		e.chat.failOn("UploadTable", errors.New("slack: file too large"))
		if err := e.handle(batchWork(batches[0].Key())); err == nil {
			t.Error("no error")
		}
		if b := e.batch(batches[0].Key()); b.Reported[hbrbot.ReportTable] != hbrbot.ReportAttempted {
			t.Errorf("table %q, want attempted", b.Reported[hbrbot.ReportTable])
		}
	})
}

// TestJobNotSubmittedWithoutDurableMark: when the submitting mark cannot
// be made durable, UpgradeBackupClients is not called; the batch ends not
// started, and its report says why.
func TestJobNotSubmittedWithoutDurableMark(t *testing.T) {
	e := newEnv(t)
	e.store.failOn("SaveBatchDurable", fmt.Errorf("no replica acknowledged it: %w", hbrbot.ErrNotDurable))
	r := e.approved("i-dur1")
	e.settle()
	b := e.batch(hbrbot.BatchKey(r.ID, 0))
	if b.State != hbrbot.BatchFinished || b.Final != hbrbot.JobNotStarted || b.Error == nil || b.Error.Code != hbrbot.CodeNotDurable {
		t.Errorf("batch %s %s (%+v), want finished not started, NotDurable", b.State, b.Final, b.Error)
	}
	wantCalls(t, e, "UpgradeBackupClients", 0)
	wantReports(t, e, hbrbot.ReportFinal)
}

// TestJobVerificationWaitsForBudget: a job's end is saved at once; a
// verification that gets no HBR budget comes back at the minimum interval
// without polling the job again, and the report waits for it rather than
// saying the versions are unverified.
func TestJobVerificationWaitsForBudget(t *testing.T) {
	e := newEnv(t)
	now := e.clock.Now()
	_, batches := e.seed([]string{"i-wait1", "i-wait2"}, running(now.Add(-10*time.Second)))
	key := batches[0].Key()
	w := batchWork(key)
	e.hbr.setTasks(task("completed", 100, ""))
	e.hbr.setClients(func(hbrbot.Targets) ([]hbrbot.ClientInfo, error) { return nil, hbr.ErrNoBudget })
	if err := e.handle(w); err != nil {
		t.Fatal(err)
	}
	b := e.batch(key)
	if b.State != hbrbot.BatchFinished || b.Final != hbrbot.JobCompleted || !b.VerifyDue || !b.Ended.Equal(now) || b.VerifyFailure != "" {
		t.Fatalf("batch %s %q, verify due %v, ended %v, failure %q: want the end kept and the look-up due",
			b.State, b.Final, b.VerifyDue, b.Ended, b.VerifyFailure)
	}
	e.wantDue(w, now.Add(pollPolicyOf(e.opts).min))
	wantReports(t, e)

	e.hbr.setClients(func(t hbrbot.Targets) ([]hbrbot.ClientInfo, error) {
		return clientsAt("2.0.0", "2.0.0", t.All()...), nil
	})
	e.clock.Advance(pollPolicyOf(e.opts).min)
	if err := e.handle(w); err != nil {
		t.Fatal(err)
	}
	b = e.batch(key)
	if b.VerifyDue || len(b.After) != 2 || !b.Verified() {
		t.Errorf("verify due %v, %d after, verified %v; want verified", b.VerifyDue, len(b.After), b.Verified())
	}
	wantCalls(t, e, "DescribeTask", 1)
	wantCalls(t, e, "DescribeBackupClients", 2)
	wantReports(t, e, hbrbot.ReportFinal)
	e.wantUnscheduled(w)
}

// TestJobPollWithoutBudget: a poll that gets no DescribeTask budget was
// never made: one of a job predicted to run on is skipped for the poll at
// its predicted end; one that could end a job comes back at the minimum
// interval.
func TestJobPollWithoutBudget(t *testing.T) {
	for _, tc := range []struct {
		name     string
		progress int
		due      func(now time.Time, min time.Duration) time.Time
	}{
		// Started 10 s ago, 20% seen 5 s in: predicted to end 15 s from now.
		{"predicted to run on", 20, func(now time.Time, _ time.Duration) time.Time { return now.Add(15 * time.Second) }},
		{"no progress to go by", 0, func(now time.Time, min time.Duration) time.Time { return now.Add(min) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			now := e.clock.Now()
			_, batches := e.seed([]string{"i-nb1"}, running(now.Add(-10*time.Second)), func(b *hbrbot.Batch) {
				b.Progress, b.ProgressAt, b.Polls = tc.progress, now.Add(-5*time.Second), 1
			})
			key := batches[0].Key()
			e.hbr.setTasks(taskAnswer{err: hbr.ErrNoBudget})
			if err := e.handle(batchWork(key)); err != nil {
				t.Fatal(err)
			}
			b := e.batch(key)
			if b.State != hbrbot.BatchRunning || b.Polls != 1 {
				t.Errorf("batch %s after %d polls, want running after 1", b.State, b.Polls)
			}
			e.wantDue(batchWork(key), tc.due(now, pollPolicyOf(e.opts).min))
		})
	}
}
