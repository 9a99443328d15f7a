package upgrade

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/hbrbot/hbrbot"
)

// jobStore is what the batch lifecycle reads and writes.
type jobStore interface {
	auditStore
	BatchStatus(ctx context.Context, key string) (hbrbot.BatchStatus, error)
	BatchSpec(ctx context.Context, key string) (hbrbot.BatchSpec, error)
	SaveBatch(ctx context.Context, l hbrbot.Lease, b hbrbot.BatchStatus, next hbrbot.Next) (hbrbot.Lease, error)
	// SaveBatchDurable is SaveBatch made durable (a replica, the disk)
	// before it returns; hbrbot.ErrNotDurable when it could not be.
	SaveBatchDurable(ctx context.Context, l hbrbot.Lease, b hbrbot.BatchStatus, next hbrbot.Next) (hbrbot.Lease, error)
	Reschedule(ctx context.Context, l hbrbot.Lease, next hbrbot.Next) error
	Schedule(ctx context.Context, w hbrbot.Work, t time.Time) error
	lostStore
	SaveAnswer(ctx context.Context, batchKey string, sub hbrbot.Submission) error
	Answer(ctx context.Context, batchKey string) (hbrbot.Submission, bool, error)
}

// Reporter posts a batch's thread replies.
type Reporter interface {
	// PostReport posts one of b's thread replies, tagged so FindReply can
	// find it.
	PostReport(ctx context.Context, b hbrbot.Batch, kind hbrbot.ReportKind) error
	// UploadTable shares b's full report table (a large job's) as a file in
	// its thread.
	UploadTable(ctx context.Context, b hbrbot.Batch) error
	// NeedsTable says whether b's final report comes with a table file.
	NeedsTable(b hbrbot.Batch) bool
	LostReporter
	// FindTable looks for b's table file in its thread.
	FindTable(ctx context.Context, b hbrbot.Batch) (bool, error)
	replyFinder
}

// replyFinder looks for a reply the bot posted.
type replyFinder interface {
	// FindReply looks for the reply of that kind tagged with key (a batch
	// key, or a request ID for progress) in a thread, and returns its ts.
	FindReply(ctx context.Context, channel, threadTS, key string, kind hbrbot.ReportKind) (string, bool, error)
}

// progressNotes is told when a job moved, so the request's progress reply
// is redrawn.
type progressNotes interface {
	AfterPoll(ctx context.Context, requestID string)
	Ended(ctx context.Context, requestID string)
}

// Jobs moves approved batches through their states: pending, submitting,
// running, finished. Each state is one method that does its step and
// returns what comes next; Advance saves the batch after every step, in
// one place.
type Jobs struct {
	store    jobStore
	hbr      HBR
	reporter Reporter
	// lostReporter tells a thread its batch's state is gone.
	lostReporter LostReporter
	progress     progressNotes
	audit        auditor
	kick         func()
	poll         pollPolicy
	// verifyBackoff is the first wait between verification look-ups
	// (default 500ms).
	verifyBackoff time.Duration
	opts          Options
	log           *slog.Logger
	now           func() time.Time
}

func newJobs(store jobStore, h HBR, r Reporter, p progressNotes, aud auditor, kick func(), o Options) *Jobs {
	return &Jobs{store: store, hbr: h, reporter: r, lostReporter: r, progress: p, audit: aud, kick: kick,
		poll: pollPolicy{interval: o.PollInterval, adaptive: o.Adaptive, min: o.MinPollInterval, max: o.MaxPollInterval},
		opts: o, log: o.Logger, now: o.Now}
}

// batchRun is one holder's pass over a batch: what it holds, and what it
// did itself (so a reply it marked attempted is posted without looking for
// it first, and a submission it marked is its own to make).
type batchRun struct {
	lease     hbrbot.Lease
	status    hbrbot.BatchStatus
	spec      *hbrbot.BatchSpec // read when a step needs the IDs
	attempted map[hbrbot.ReportKind]bool
	submitter bool
	// answered: this holder has HBR's answer to its submission, whose
	// save is retried while the lease holds.
	answered bool
	// durable: the next save is the submitting mark, made durable before
	// UpgradeBackupClients may be called.
	durable bool
	log     *slog.Logger
}

// batch is the run's status with its spec, read once.
func (j *Jobs) batch(ctx context.Context, run *batchRun) (hbrbot.Batch, error) {
	if run.spec == nil {
		spec, err := j.store.BatchSpec(ctx, run.status.Key())
		if errors.Is(err, hbrbot.ErrNotFound) {
			// Written with the status and expiring with it: its absence is
			// damage to report, not a batch that ended.
			return hbrbot.Batch{}, fmt.Errorf("batch %s has a status but no spec: %w", run.status.Key(), errStateLost)
		}
		if err != nil {
			return hbrbot.Batch{}, err
		}
		run.spec = &spec
	}
	return hbrbot.Batch{BatchStatus: run.status, BatchSpec: *run.spec}, nil
}

// stepFunc is one state's step.
type stepFunc func(j *Jobs, ctx context.Context, run *batchRun) (hbrbot.Next, error)

// steps is the batch lifecycle: one step per state.
var steps = map[hbrbot.BatchState]stepFunc{
	hbrbot.BatchPending:    (*Jobs).pending,
	hbrbot.BatchSubmitting: (*Jobs).submitting,
	hbrbot.BatchRunning:    (*Jobs).running,
	hbrbot.BatchFinished:   (*Jobs).finished,
}

// Advance runs a batch's steps until one hands it back to the schedule
// (due again later, or done), saving the batch after each step under the
// lease. stop ends when the replica shuts down: then a batch not mid-call
// is handed back, due at once, for another replica.
//
// The windows a crash can hit, and how each ends:
//   - Between the approval and the submission: the batch is pending in the
//     schedule; whichever replica claims it next submits it.
//   - During UpgradeBackupClients: the batch was saved as submitting before
//     the call. A replica that finds it so once the lease ran out cannot
//     know whether HBR started a job; it reports "outcome unknown" and never
//     resubmits.
//   - Between HBR's answer and saving the TaskId: the same, submitting.
//   - Between posting a reply and recording it: the reply was marked
//     attempted before posting; the next holder looks for it in the thread
//     (each reply carries the batch key in its metadata) before posting.
func (j *Jobs) Advance(ctx, stop context.Context, l hbrbot.Lease) error {
	st, err := j.store.BatchStatus(ctx, l.Work.ID)
	if errors.Is(err, hbrbot.ErrNotFound) {
		return j.lostBatch(ctx, l, "batch")
	}
	if err != nil {
		return err
	}
	run := &batchRun{lease: l, status: st, attempted: map[hbrbot.ReportKind]bool{},
		log: j.log.With("work", l.Work.Kind, "id", l.Work.ID, "request", st.RequestID)}
	for {
		if stop.Err() != nil && run.status.State != hbrbot.BatchSubmitting {
			return j.store.Reschedule(ctx, run.lease, hbrbot.DueAt(j.now()))
		}
		step, ok := steps[run.status.State]
		if !ok {
			return fmt.Errorf("batch %s: unknown state %q", run.status.Key(), run.status.State)
		}
		next, err := step(j, ctx, run)
		if errors.Is(err, errStateLost) {
			return j.lostBatch(ctx, run.lease, "spec")
		}
		if err != nil {
			return err
		}
		// Saved whatever time the step left ctx: a submission's answer
		// must be kept.
		run.lease, err = submissions{j}.save(ctx, run, next)
		if errors.Is(err, hbrbot.ErrNotFound) {
			return j.lostBatch(ctx, run.lease, "batch")
		}
		if err != nil || next.Kind == hbrbot.NextDue || next.Kind == hbrbot.NextEnd {
			return err
		}
	}
}

// pending marks the batch submitting, with the lease stretched over the
// call: the call must end while the lease is ours, or another replica would
// (rightly) report its outcome unknown.
func (j *Jobs) pending(_ context.Context, run *batchRun) (hbrbot.Next, error) {
	run.status.State, run.submitter, run.durable = hbrbot.BatchSubmitting, true, true
	run.status.SubmitAt = j.now()
	until := j.now().Add(j.opts.SubmitTimeout + 2*time.Second)
	if until.Before(run.lease.Until) {
		return hbrbot.Hold(), nil
	}
	return hbrbot.HoldUntil(until), nil
}

// running reports the job's start, then polls it until it ends.
func (j *Jobs) running(ctx context.Context, run *batchRun) (hbrbot.Next, error) {
	if next, posted, err := j.reply(ctx, run, hbrbot.ReportStarted); !posted || err != nil {
		return next, err
	}
	b := &run.status
	if b.Polls == 0 && j.now().Sub(b.Started) < j.opts.PollInterval {
		// Just submitted: it cannot have ended; the first poll is an
		// interval on.
		return hbrbot.DueAt(j.poll.next(*b, j.now())), nil
	}
	next, err := j.pollOnce(ctx, run)
	if err != nil {
		return hbrbot.Next{}, err
	}
	j.progress.AfterPoll(ctx, b.RequestID)
	return next, nil
}

// finished verifies the clients of a job that ended, posts the final report (and the started one, if a crash left
// it), shares a large job's table, and closes the batch.
func (j *Jobs) finished(ctx context.Context, run *batchRun) (hbrbot.Next, error) {
	if run.status.VerifyDue {
		return j.verifyEnded(ctx, run)
	}
	if run.status.TaskID != "" {
		if next, posted, err := j.reply(ctx, run, hbrbot.ReportStarted); !posted || err != nil {
			return next, err
		}
	}
	if next, posted, err := j.reply(ctx, run, hbrbot.ReportFinal); !posted || err != nil {
		return next, err
	}
	b, err := j.batch(ctx, run)
	if err != nil {
		return hbrbot.Next{}, err
	}
	if j.reporter.NeedsTable(b) {
		if next, posted, err := j.uploadTable(ctx, run, b); !posted || err != nil {
			return next, err
		}
	}
	duration, lag := time.Duration(0), time.Duration(-1)
	if !b.Ended.IsZero() {
		duration, lag = b.Ended.Sub(b.Started), j.now().Sub(b.Ended)
	}
	j.opts.Observer.JobFinished(string(b.Final), duration, lag)
	run.log.InfoContext(ctx, "batch reported", "task", b.TaskID, "final", b.Final)
	j.audit.record(ctx, hbrbot.AuditRecord{Event: hbrbot.AuditJobFinished, RequestID: b.RequestID, Actor: "hbrbot",
		Channel: b.ChannelID, Fields: outcomeFields(b)})
	j.progress.Ended(ctx, b.RequestID) // its last redraw
	// The card's header shows the outcome once every job has ended.
	if err := j.store.Schedule(ctx, hbrbot.Work{Kind: hbrbot.WorkCardSync, ID: b.RequestID}, j.now()); err != nil {
		run.log.WarnContext(ctx, "schedule card update", "err", err)
	}
	return hbrbot.End(), nil
}

// reply posts the batch's reply of this kind once: marked attempted (and
// saved) before the post, posted after; an attempted reply that another
// holder marked is looked for before posting again. posted false: the
// step saves what reply changed and comes back.
func (j *Jobs) reply(ctx context.Context, run *batchRun, kind hbrbot.ReportKind) (next hbrbot.Next, posted bool, err error) {
	b := &run.status
	switch b.Reported[kind] {
	case hbrbot.ReportPosted:
		return hbrbot.Next{}, true, nil
	case hbrbot.ReportAttempted:
		if !run.attempted[kind] {
			_, found, err := j.reporter.FindReply(ctx, b.ChannelID, b.ThreadTS, b.Key(), kind)
			if err != nil {
				return hbrbot.Next{}, false, fmt.Errorf("look for %s report of %s: %w", kind, b.Key(), err)
			}
			if found {
				b.Reported[kind] = hbrbot.ReportPosted
				return hbrbot.Hold(), false, nil
			}
		}
	default:
		if b.Reported == nil {
			b.Reported = map[hbrbot.ReportKind]hbrbot.ReportState{}
		}
		b.Reported[kind], run.attempted[kind] = hbrbot.ReportAttempted, true
		return hbrbot.Hold(), false, nil
	}
	full, err := j.batch(ctx, run)
	if err != nil {
		return hbrbot.Next{}, false, err
	}
	if err := j.reporter.PostReport(ctx, full, kind); err != nil {
		return hbrbot.Next{}, false, fmt.Errorf("post %s report of %s: %w", kind, b.Key(), err)
	}
	j.audit.record(ctx, hbrbot.AuditRecord{Event: hbrbot.AuditReportPosted, RequestID: b.RequestID, Actor: "hbrbot",
		Channel: b.ChannelID, Fields: map[string]string{"batch": b.Key(), "kind": string(kind), "task_id": b.TaskID}})
	b.Reported[kind] = hbrbot.ReportPosted
	return hbrbot.Hold(), false, nil
}

// uploadTable shares a large job's full table once it is reported:
// marked attempted before the upload, like a reply; a holder that finds
// it attempted by another looks for the file in the thread (its name
// names the batch) and uploads only when it is not there.
func (j *Jobs) uploadTable(ctx context.Context, run *batchRun, b hbrbot.Batch) (hbrbot.Next, bool, error) {
	switch run.status.Reported[hbrbot.ReportTable] {
	case hbrbot.ReportPosted:
		return hbrbot.Next{}, true, nil
	case "":
		run.status.Reported[hbrbot.ReportTable], run.attempted[hbrbot.ReportTable] = hbrbot.ReportAttempted, true
		return hbrbot.Hold(), false, nil
	}
	if !run.attempted[hbrbot.ReportTable] {
		found, err := j.reporter.FindTable(ctx, b)
		if err != nil {
			return hbrbot.Next{}, false, fmt.Errorf("look for table of %s: %w", b.Key(), err)
		}
		if found {
			run.status.Reported[hbrbot.ReportTable] = hbrbot.ReportPosted
			return hbrbot.Hold(), false, nil
		}
		run.attempted[hbrbot.ReportTable] = true
	}
	if err := j.reporter.UploadTable(ctx, b); err != nil {
		return hbrbot.Next{}, false, fmt.Errorf("upload table of %s: %w", b.Key(), err)
	}
	run.status.Reported[hbrbot.ReportTable] = hbrbot.ReportPosted
	return hbrbot.Hold(), false, nil
}

// outcomeFields summarises an ended batch for the audit trail.
func outcomeFields(b hbrbot.Batch) map[string]string {
	f := map[string]string{"batch": b.Key(), "task_id": b.TaskID, "final": string(b.Final), "polls": fmt.Sprint(b.Polls)}
	outcomes := b.Outcomes()
	per := make([]string, 0, len(outcomes))
	for _, o := range outcomes {
		entry := o.ID + ":" + string(o.Kind)
		if o.Code != "" {
			entry += ":" + o.Code
		}
		per = append(per, entry)
	}
	f["outcomes"] = strings.Join(per, ",")
	for k, n := range hbrbot.Tally(outcomes) {
		f[string(k)] = fmt.Sprint(n)
	}
	return f
}
