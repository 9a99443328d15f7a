package upgrade

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/hbrbot/hbrbot"
	"github.com/hbrbot/hbrbot/hbr"
)

// submit calls UpgradeBackupClients for b and returns b's status as it
// stands after. A dry run calls nothing and ends at once.
func (j *Jobs) submit(ctx context.Context, b hbrbot.Batch, log *slog.Logger) hbrbot.BatchStatus {
	st := b.BatchStatus
	if b.DryRun {
		st.State, st.Final = hbrbot.BatchFinished, hbrbot.JobDryRun
		j.audit.record(ctx, hbrbot.AuditRecord{Event: hbrbot.AuditHBRCall, RequestID: b.RequestID, Actor: "hbrbot", Channel: b.ChannelID,
			Fields: map[string]string{"action": "UpgradeBackupClients", "dry_run": "true", "batch": b.Key(), "ids": strings.Join(b.Targets.All(), ",")}})
		return st
	}
	sub, err := j.hbr.UpgradeBackupClients(ctx, b.Region, b.Targets, b.CrossAccount)
	now := j.now()
	if errors.Is(err, hbr.ErrNoBudget) {
		// Never sent (the shared budget had no room in time): pending
		// again, submitted by whichever replica claims it next.
		log.InfoContext(ctx, "no budget to submit in time; submitting later", "err", err)
		st.State = hbrbot.BatchPending
		return st
	}
	fields := map[string]string{"action": "UpgradeBackupClients", "batch": b.Key(), "ids": strings.Join(b.Targets.All(), ","),
		"region": b.Region, "hbr_request_id": sub.RequestID, "task_id": sub.TaskID, "error_code": hbrbot.ErrorCode(err)}
	if errors.Is(err, hbrbot.ErrOutcomeUnknown) {
		fields["error_code"] = "OutcomeUnknown"
	}
	var he *hbrbot.HBRError
	if errors.As(err, &he) {
		fields["hbr_request_id"] = he.RequestID
	}
	if len(sub.Invalid) > 0 {
		inv := make([]string, 0, len(sub.Invalid))
		for _, iv := range sub.Invalid {
			inv = append(inv, iv.ID+":"+iv.ErrorCode)
		}
		fields["invalid"] = strings.Join(inv, ",")
	}
	j.audit.record(ctx, hbrbot.AuditRecord{Event: hbrbot.AuditHBRCall, RequestID: b.RequestID, Actor: "hbrbot", Channel: b.ChannelID, Fields: fields})
	switch {
	case errors.Is(err, hbrbot.ErrOutcomeUnknown):
		log.ErrorContext(ctx, "upgrade outcome unknown; not resubmitting", "err", err)
		st.State, st.Final = hbrbot.BatchFinished, hbrbot.JobNotStarted
		st.Error = &hbrbot.SubmissionError{Unknown: true, Message: err.Error()}
	case err != nil:
		log.ErrorContext(ctx, "upgrade refused", "err", err, "code", hbrbot.ErrorCode(err))
		st.State, st.Final = hbrbot.BatchFinished, hbrbot.JobNotStarted
		msg := err.Error()
		if he != nil {
			msg = he.Message
		}
		st.Error = &hbrbot.SubmissionError{Code: cmp.Or(hbrbot.ErrorCode(err), "Error"), Message: msg}
	default:
		log.InfoContext(ctx, "upgrade submitted", "task", sub.TaskID, "hbr_request", sub.RequestID, "invalid", len(sub.Invalid))
		st.State, st.TaskID, st.Invalid = hbrbot.BatchRunning, sub.TaskID, sub.Invalid
		st.Started, st.Deadline = now, now.Add(j.opts.TaskTimeout)
		if len(sub.Invalid) == b.Targets.Len() {
			// Nothing valid to upgrade: nothing to wait for.
			st.State, st.Final = hbrbot.BatchFinished, hbrbot.JobCompleted
		}
	}
	return st
}

// pollOnce asks HBR about the batch's job. It leaves the batch running,
// due again when the poll policy says, or finished (Hold: the finished
// step follows).
func (j *Jobs) pollOnce(ctx context.Context, run *batchRun) (hbrbot.Next, error) {
	b := &run.status
	prio := pollPriority(*b, j.now())
	pctx := ctx
	if prio.Class == hbr.Informs {
		var cancel context.CancelFunc
		pctx, cancel = context.WithTimeout(ctx, informsPollWait)
		defer cancel()
	}
	task, err := j.hbr.DescribeTask(withPriority(pctx, prio), b.Region, b.TaskID)
	b.Polls++
	now := j.now()
	finalStatus, final := task.Final()
	final = final && err == nil
	// The trail holds the first look, failed looks and the one that saw
	// the end; the looks in between say only "still running" (their count
	// is in job_finished). Recording each of them cost a Redis write and
	// about 300 bytes of stream per poll.
	if b.Polls == 1 || err != nil || final {
		fields := map[string]string{"action": "DescribeTask", "batch": b.Key(), "task_id": b.TaskID,
			"hbr_request_id": task.RequestID, "error_code": hbrbot.ErrorCode(err), "poll": fmt.Sprint(b.Polls)}
		if err == nil {
			fields["progress"], fields["description"] = fmt.Sprint(task.Progress), task.Description
		}
		j.audit.record(ctx, hbrbot.AuditRecord{Event: hbrbot.AuditHBRCall, RequestID: b.RequestID, Actor: "hbrbot", Channel: b.ChannelID, Fields: fields})
	}
	timedOut := !now.Before(b.Deadline)
	switch {
	case err != nil && timedOut:
		run.log.WarnContext(ctx, "job timed out; last poll failed", "task", b.TaskID, "err", err)
		b.State, b.Final, b.Ended = hbrbot.BatchFinished, hbrbot.JobTimedOut, now
		return hbrbot.Hold(), nil
	case errors.Is(err, hbr.ErrNoBudget) && prio.Class == hbr.Informs:
		// Never sent: DescribeTask's budget is short, and this look would
		// only have said the job runs on. Not a poll; skipped for the one
		// at the job's predicted end.
		b.Polls--
		return hbrbot.DueAt(j.poll.atPredictedEnd(*b, now)), nil
	case errors.Is(err, hbr.ErrNoBudget):
		// Never sent: DescribeTask's budget is spent on jobs more likely
		// to have ended. Not a poll; this one comes back soon.
		b.Polls--
		return hbrbot.DueAt(now.Add(j.poll.min)), nil
	case err != nil:
		run.log.WarnContext(ctx, "describe task failed; polling on", "task", b.TaskID, "err", err)
		return hbrbot.DueAt(j.poll.next(*b, now)), nil
	}
	b.Progress, b.ProgressAt = task.Progress, now
	if !final && !timedOut {
		return hbrbot.DueAt(j.poll.next(*b, now)), nil
	}
	// The job ended (or timed out): saved so, its clients to be looked
	// up by the finished step.
	b.State, b.Ended, b.VerifyDue = hbrbot.BatchFinished, now, !b.DryRun
	if final {
		b.Final = finalStatus
		results, err := hbrbot.ParseTaskResult(task.Result)
		if err != nil {
			run.log.WarnContext(ctx, "unreadable task result; the job's status decides", "err", err)
		}
		b.Results = results
	} else {
		b.Final = hbrbot.JobTimedOut // the clients may have moved regardless: verified too
	}
	return hbrbot.Hold(), nil
}

// verifyEnded looks the clients of a job that ended up (see verify). One
// that got no look-up in its lease (HBR's budget is spent on other work)
// comes back shortly, the job's end kept: it is never polled again.
func (j *Jobs) verifyEnded(ctx context.Context, run *batchRun) (hbrbot.Next, error) {
	b, err := j.batch(ctx, run)
	if err != nil {
		return hbrbot.Next{}, err
	}
	if errors.Is(j.verify(ctx, &run.status, run.lease, b.Targets, run.log), errNoLookup) {
		return hbrbot.DueAt(j.now().Add(j.poll.min)), nil
	}
	run.status.VerifyDue = false
	return hbrbot.Hold(), nil
}

// verifyAttempts is how often the look-up after a job is tried before
// the report falls back to HBR's word, marked unverified.
const verifyAttempts = 3

// saveRoom is the part of its lease a step waiting for HBR's budget
// leaves for saving what came of the wait.
const saveRoom = 3 * time.Second

// errNoLookup: the verification asked HBR nothing, or had no answer
// before its lease ran short (it waited for HBR's budget): nothing is
// known, and the look-up is to be made again rather than the versions
// reported unverified.
var errNoLookup = errors.New("no verification look-up in this lease")

// verify looks the batch's clients up again once the job ended: their
// state decides every ID's outcome (Batch.Outcomes). A failed look-up is
// tried again, with backoff, up to verifyAttempts times; one that got no
// HBR budget within the lease is errNoLookup.
func (j *Jobs) verify(ctx context.Context, b *hbrbot.BatchStatus, l hbrbot.Lease, targets hbrbot.Targets, log *slog.Logger) error {
	if b.DryRun {
		return nil
	}
	vctx, cancel := context.WithDeadline(ctx, l.Until.Add(-saveRoom))
	defer cancel()
	wait := j.verifyBackoff
	if wait <= 0 {
		wait = 500 * time.Millisecond
	}
	var err error
	for attempt := 1; ; attempt++ {
		var after []hbrbot.ClientInfo
		after, err = j.hbr.DescribeBackupClients(withPriority(vctx, hbr.Priority{Class: hbr.Moves, Rank: b.Ended}), b.Region, targets, b.CrossAccount)
		if errors.Is(err, hbr.ErrNoBudget) || err != nil && vctx.Err() != nil {
			return errNoLookup
		}
		if err == nil {
			b.After, b.VerifyFailure, b.VerifiedAt = after, "", j.now()
			return nil
		}
		if attempt == verifyAttempts || !sleepCtx(vctx, wait) {
			break
		}
		log.WarnContext(ctx, "verification look-up failed; trying again", "err", err, "attempt", attempt)
		wait *= 2
	}
	log.WarnContext(ctx, "verification look-up failed; the report says so per ID", "err", err)
	b.VerifyFailure = lookupFailure(err)
	return nil
}

// sleepCtx waits d, false when ctx ends first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// informsPollWait bounds how long a poll of a job predicted to run on
// waits for DescribeTask's budget: when it is that short, the budget goes
// to the polls that can end a job.
const informsPollWait = time.Second

// pollPolicy says when to ask about a job again.
type pollPolicy struct {
	interval, min, max time.Duration
	adaptive           bool
}

// trustedProgress is the least progress, at a job's first look, whose
// rate the adaptive policy follows to the predicted end, however far:
// from there it extrapolates at most nine times what it saw. Below it, one client of a hundred done
// early could say a long job is barely begun, so the next look is at
// most the longest interval on.
const trustedProgress = 10

// next is one interval on, or with the adaptive policy at the job's
// predicted end (progress so far, extrapolated at the rate it came), no
// sooner than min, and no later than max unless the job showed
// trustedProgress at its first look (a failed poll counts as a look);
// never past the deadline, so a timed-out job is
// reported within one interval of it.
func (p pollPolicy) next(b hbrbot.BatchStatus, now time.Time) time.Time {
	wait := p.interval
	switch {
	case !p.adaptive:
	case b.Progress > 0 && b.Progress < 100:
		wait = max(predictedEnd(b, now).Sub(now), p.min)
		if b.Progress < trustedProgress || b.Polls > 1 {
			// Past the max only once, from the first look: a job not done
			// at its predicted end does not follow its rate, and following
			// it again would stretch each wait by the last.
			wait = min(wait, p.max)
		}
	case b.Progress == 0 && b.Polls > 0:
		wait = p.max // still nothing to extrapolate from
	}
	next := now.Add(wait)
	if next.After(b.Deadline) {
		next = b.Deadline
	}
	return next
}

// atPredictedEnd is when b's job should end at the rate its progress came,
// within [now+min, deadline]: the poll that skips the looks in between.
func (p pollPolicy) atPredictedEnd(b hbrbot.BatchStatus, now time.Time) time.Time {
	at := predictedEnd(b, now)
	if soonest := now.Add(p.min); at.Before(soonest) {
		at = soonest
	}
	if at.After(b.Deadline) {
		at = b.Deadline
	}
	return at
}
