package upgrade

import (
	"context"
	"errors"
	"time"

	"github.com/hbrbot/hbrbot"
)

// submissions is what a submission needs beyond its step: keeping HBR's
// answer, taking over one whose answer was lost, and saving the batch
// under its lease (Advance's one place of saving).
type submissions struct{ *Jobs }

// submitting calls UpgradeBackupClients, when this holder marked the batch
// submitting itself. HBR's answer is kept first in its own small key
// (SaveAnswer), then in the batch, each retried while the lease holds.
// Found submitting by anyone else, the holder before lost its lease
// mid-call or before saving: takeOver adopts the answer it kept, or
// verifies the IDs once the job must have ended. Never a second call.
func (j *Jobs) submitting(ctx context.Context, run *batchRun) (hbrbot.Next, error) {
	if !run.submitter {
		return submissions{j}.takeOver(ctx, run)
	}
	b, err := j.batch(ctx, run)
	if err != nil {
		return hbrbot.Next{}, err
	}
	// Bounded by SubmitTimeout, within the lease stretched over it.
	deadline := run.lease.Until.Add(-time.Second)
	if d := j.now().Add(j.opts.SubmitTimeout); d.Before(deadline) {
		deadline = d
	}
	subCtx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
	defer cancel()
	st := j.submit(subCtx, b, run.log)
	run.status, run.answered = st, true
	switch {
	case st.Error != nil && st.Error.Unknown:
		// Nobody knows whether HBR started a job: the IDs are looked up
		// once it must have ended, by whichever replica holds it then.
		run.status.State, run.status.Final = hbrbot.BatchSubmitting, ""
		return hbrbot.DueAt(submissions{j}.resolveAt(run.status)), nil
	case st.TaskID != "":
		submissions{j}.keepAnswer(ctx, run, hbrbot.Submission{TaskID: st.TaskID, Invalid: st.Invalid})
	}
	// Due at once, so the reports go out under a fresh lease.
	return hbrbot.DueAt(j.now()), nil
}

// unknownVerifyTries is how many times the look-up of a submission whose
// answer was lost is tried again later (backing off from the poll
// interval up to a minute) before its IDs are reported unknown.
const unknownVerifyTries = 8

// resolveAt is when a submission whose answer was lost is verified: the
// task timeout after it began (HBR's own jobs end within 15 minutes).
func (j submissions) resolveAt(st hbrbot.BatchStatus) time.Time {
	return st.SubmitAt.Add(j.opts.TaskTimeout)
}

// takeOver resolves a batch found submitting by a holder that did not
// mark it: it follows the job whose answer the holder before kept, or,
// with no answer kept, waits until the job must have ended and then
// verifies every ID with DescribeBackupClients.
func (j submissions) takeOver(ctx context.Context, run *batchRun) (hbrbot.Next, error) {
	st := &run.status
	sub, found, err := j.store.Answer(ctx, st.Key())
	if err != nil {
		return hbrbot.Next{}, err
	}
	now := j.now()
	if found && sub.TaskID != "" {
		run.log.WarnContext(ctx, "adopting a submission whose answer was kept but not saved in the batch", "task", sub.TaskID)
		st.State, st.TaskID, st.Invalid, st.Error = hbrbot.BatchRunning, sub.TaskID, sub.Invalid, nil
		st.Started = st.SubmitAt
		if st.Started.IsZero() {
			st.Started = now
		}
		st.Deadline = st.Started.Add(j.opts.TaskTimeout)
		if b, err := j.batch(ctx, run); err == nil && len(sub.Invalid) == b.Targets.Len() {
			st.State, st.Final = hbrbot.BatchFinished, hbrbot.JobCompleted
		}
		return hbrbot.Hold(), nil
	}
	if st.Error == nil {
		run.log.ErrorContext(ctx, "found a submission interrupted; its IDs are verified once the job must have ended",
			"at", j.resolveAt(*st))
		st.Error = &hbrbot.SubmissionError{Unknown: true, Interrupted: true}
	}
	if at := j.resolveAt(*st); now.Before(at) {
		return hbrbot.DueAt(at), nil
	}
	b, err := j.batch(ctx, run)
	if err != nil {
		return hbrbot.Next{}, err
	}
	if errors.Is(j.verify(ctx, st, run.lease, b.Targets, run.log), errNoLookup) {
		return hbrbot.DueAt(now.Add(j.poll.min)), nil
	}
	if !st.Verified() && st.Polls < unknownVerifyTries {
		// Nothing else can tell what became of these IDs: look again later
		// rather than report them unknown.
		st.Polls++
		st.VerifyFailure = ""
		return hbrbot.DueAt(now.Add(min(j.opts.PollInterval<<st.Polls, time.Minute))), nil
	}
	st.State, st.Final, st.Ended = hbrbot.BatchFinished, hbrbot.JobNotStarted, now
	j.audit.record(ctx, hbrbot.AuditRecord{Event: hbrbot.AuditUnknownResolved, RequestID: st.RequestID, Actor: "hbrbot",
		Channel: st.ChannelID, Fields: map[string]string{"batch": st.Key(), "verified": boolText(st.Verified())}})
	return hbrbot.Hold(), nil
}

func boolText(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

// keepAnswer writes HBR's answer to its own key, retried with backoff
// while the lease holds: with Redis stalled as HBR answers, the answer
// is kept as soon as Redis is back.
func (j submissions) keepAnswer(ctx context.Context, run *batchRun, sub hbrbot.Submission) {
	err := j.whileLeased(ctx, run, func(ctx context.Context) error {
		return j.store.SaveAnswer(ctx, run.status.Key(), sub)
	})
	if err != nil {
		run.log.ErrorContext(ctx, "keep HBR's answer", "task", sub.TaskID, "err", err)
	}
}

// save writes the batch after a step; the save of a submission's answer
// is retried while the lease holds.
func (j submissions) save(ctx context.Context, run *batchRun, next hbrbot.Next) (hbrbot.Lease, error) {
	var after hbrbot.Lease
	saveOnce := func(ctx context.Context) error {
		var err error
		after, err = j.store.SaveBatch(ctx, run.lease, run.status, next)
		return err
	}
	if run.durable {
		return j.saveDurable(ctx, run, next)
	}
	if !run.answered {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
		defer cancel()
		err := saveOnce(sctx)
		return cmpLease(after, run.lease, err), err
	}
	run.answered = false
	err := j.whileLeased(ctx, run, saveOnce)
	return cmpLease(after, run.lease, err), err
}

// saveDurable saves the submitting mark and waits for it to be durable.
// When it cannot be, the batch is not submitted: it ends not started,
// saying why, and the finished step reports it.
func (j submissions) saveDurable(ctx context.Context, run *batchRun, next hbrbot.Next) (hbrbot.Lease, error) {
	run.durable = false
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*storeTimeout)
	defer cancel()
	after, err := j.store.SaveBatchDurable(sctx, run.lease, run.status, next)
	if !errors.Is(err, hbrbot.ErrNotDurable) {
		return cmpLease(after, run.lease, err), err
	}
	run.log.ErrorContext(ctx, "the submitting mark is not durable; not submitting", "err", err)
	run.lease, run.submitter = after, false
	run.status.State, run.status.Final = hbrbot.BatchFinished, hbrbot.JobNotStarted
	run.status.Error = &hbrbot.SubmissionError{Code: hbrbot.CodeNotDurable, Message: err.Error()}
	return j.store.SaveBatch(sctx, run.lease, run.status, hbrbot.Hold())
}

func cmpLease(after, before hbrbot.Lease, err error) hbrbot.Lease {
	if err != nil {
		return before
	}
	return after
}

// whileLeased runs f until it succeeds, backing off, while the lease
// holds (each try bounded by storeTimeout and the lease). A lost lease
// ends it at once.
func (j submissions) whileLeased(ctx context.Context, run *batchRun, f func(context.Context) error) error {
	wait := 50 * time.Millisecond
	for {
		end := run.lease.Until.Add(-250 * time.Millisecond)
		deadline := j.now().Add(storeTimeout)
		if end.Before(deadline) {
			deadline = end
		}
		actx, cancel := context.WithDeadline(context.WithoutCancel(ctx), deadline)
		err := f(actx)
		cancel()
		if err == nil || errors.Is(err, hbrbot.ErrLeaseLost) || errors.Is(err, hbrbot.ErrNotFound) || !j.now().Add(wait).Before(end) {
			return err
		}
		run.log.WarnContext(ctx, "save failed; retrying while the lease holds", "err", err, "wait", wait)
		time.Sleep(wait)
		wait = min(2*wait, time.Second)
	}
}
