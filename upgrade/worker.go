package upgrade

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/hbrbot/hbrbot"
)

// maxIdle bounds how long the worker waits without looking at the
// schedule: other replicas add work it is not told about.
const maxIdle = time.Second

// Run claims and runs due work until ctx ends, then finishes the work in
// hand (for at most Options.ShutdownGrace) and hands back what it has not
// started.
func (s *Service) Run(ctx context.Context) error {
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
	for {
		if ctx.Err() != nil {
			return nil
		}
		free := cap(slots) - len(slots)
		if free > 0 && free < cap(slots)/4 {
			// Most slots busy: let freed ones add up, and claim them with
			// one script rather than one script per freed slot. The delay
			// is nothing next to a poll interval.
			t := time.NewTimer(claimCoalesce)
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
			free = cap(slots) - len(slots)
		}
		var leases []hbrbot.Lease
		var err error
		if free > 0 && ctx.Err() == nil {
			leases, err = s.store.ClaimDue(ctx, s.now(), free, s.opts.Lease)
		}
		if err != nil && ctx.Err() == nil {
			s.opts.Observer.RedisError()
			backoff = min(max(2*backoff, 100*time.Millisecond), 30*time.Second)
			s.log.ErrorContext(ctx, "claim due work; backing off", "err", err, "wait", backoff)
		} else {
			backoff = 0
		}
		for _, l := range leases {
			slots <- struct{}{}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() { <-slots }()
				s.opts.Observer.WorkStarted()
				defer s.opts.Observer.WorkDone()
				// Work in hand is finished on shutdown, within the lease.
				wctx, cancel := context.WithDeadline(base, l.Until.Add(-time.Second))
				defer cancel()
				s.runWork(wctx, ctx, l)
				s.Kick() // it may have rescheduled sooner than the loop waits
			}()
		}
		wait := maxIdle
		if backoff > 0 {
			wait = backoff
		} else if len(leases) == 0 {
			if next, ok, err := s.store.NextDue(ctx); err == nil && ok {
				wait = min(max(next.Sub(s.now()), 0), maxIdle)
			}
		} else {
			wait = 0 // there may be more due
		}
		if len(slots) == cap(slots) {
			wait = maxIdle // all busy: wait for a slot or a kick
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-s.kick:
		case <-t.C:
		}
		t.Stop()
	}
}

// claimCoalesce is how long the worker lets freed slots add up before it
// claims more work.
const claimCoalesce = 5 * time.Millisecond

// runWork runs one leased item. stop is the worker's context: once it ends,
// a batch that is not mid-call is handed back for another replica.
func (s *Service) runWork(ctx, stop context.Context, l hbrbot.Lease) {
	log := s.log.With("work", l.Work.Kind, "id", l.Work.ID)
	var err error
	switch l.Work.Kind {
	case hbrbot.WorkBatch:
		err = s.advanceBatch(ctx, stop, l, log)
	case hbrbot.WorkExpiry:
		err = s.expire(ctx, l)
	case hbrbot.WorkCardSync:
		err = s.syncCardNow(ctx, l)
	case hbrbot.WorkProgress:
		err = s.showProgress(ctx, l)
	}
	if err == nil || errors.Is(err, hbrbot.ErrLeaseLost) {
		return
	}
	retry := s.now().Add(s.opts.PollInterval)
	var ra retryAfter
	if errors.As(err, &ra) {
		retry = s.now().Add(ra.RetryAfter())
	}
	log.WarnContext(ctx, "work failed; will retry", "err", err, "at", retry)
	if err := s.store.Reschedule(ctx, l, retry); err != nil && !errors.Is(err, hbrbot.ErrLeaseLost) {
		// The lease runs out and the work is claimed again then.
		log.ErrorContext(ctx, "reschedule", "err", err)
	}
}

func (s *Service) expire(ctx context.Context, l hbrbot.Lease) error {
	_, _, err := s.store.Decide(ctx, l.Work.ID, hbrbot.Decision{State: hbrbot.RequestExpired, At: s.now()})
	if err != nil && !errors.Is(err, hbrbot.ErrNotFound) {
		return err
	}
	s.Kick() // the card sync it scheduled
	return s.store.Reschedule(ctx, l, time.Time{})
}

func (s *Service) syncCardNow(ctx context.Context, l hbrbot.Lease) error {
	r, err := s.store.Request(ctx, l.Work.ID)
	if errors.Is(err, hbrbot.ErrNotFound) {
		return s.store.Reschedule(ctx, l, time.Time{})
	}
	if err != nil {
		return err
	}
	if r.CardTS != "" { // pending too: the card shows the approvals so far
		var batches []hbrbot.Batch
		if r.State == hbrbot.RequestApproved {
			if batches, err = s.store.Batches(ctx, r); err != nil {
				return err
			}
		}
		if err := s.chat.UpdateCard(ctx, r, batches); err != nil {
			return fmt.Errorf("update card of %s: %w", r.ID, err)
		}
	}
	return s.store.Reschedule(ctx, l, time.Time{})
}

// advanceBatch moves a batch one step on: submit it, poll it, or report it.
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
func (s *Service) advanceBatch(ctx, stop context.Context, l hbrbot.Lease, log *slog.Logger) error {
	// Most steps are polls of a running job whose start was reported: they
	// need the batch's status, not the IDs it names (LoadSpec reads them
	// for the steps that need them).
	b, err := s.store.BatchStatus(ctx, l.Work.ID)
	if err == nil && (b.State != hbrbot.BatchRunning || b.Reported[hbrbot.ReportStarted] != hbrbot.ReportPosted) {
		err = s.store.LoadSpec(ctx, &b)
	}
	if errors.Is(err, hbrbot.ErrNotFound) {
		return s.store.Reschedule(ctx, l, time.Time{})
	}
	if err != nil {
		return err
	}
	log = log.With("request", b.RequestID)
	for {
		if stop.Err() != nil && b.State != hbrbot.BatchSubmitting {
			// Shutting down: hand the batch back, due at once.
			return s.store.Reschedule(ctx, l, s.now())
		}
		switch b.State {
		case hbrbot.BatchPending:
			// Saved as submitting, with the lease stretched over the call:
			// the call must end while the lease is ours, or another replica
			// would (rightly) report its outcome unknown.
			b.State = hbrbot.BatchSubmitting
			until := s.now().Add(s.opts.SubmitTimeout + 2*time.Second)
			if until.Before(l.Until) {
				until = l.Until
			}
			var err error
			if l, err = s.store.Renew(ctx, l, b, until); err != nil {
				return err
			}
			subCtx, cancel := context.WithDeadline(context.WithoutCancel(ctx), l.Until.Add(-time.Second))
			b = s.submit(subCtx, b, log)
			cancel()
			// Recorded whatever time the step had left; due at once, so the
			// reports go out under a fresh lease.
			saveCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
			defer cancel()
			if err := s.store.SaveBatch(saveCtx, l, b, s.now()); err != nil {
				return err
			}
			s.Kick()
			return nil
		case hbrbot.BatchSubmitting:
			// Only a replica that lost its lease mid-call leaves this.
			log.ErrorContext(ctx, "found a submission interrupted; its outcome is unknown")
			b.State, b.Final = hbrbot.BatchFinished, hbrbot.JobNotStarted
			b.Error = &hbrbot.SubmissionError{Unknown: true,
				Message: "hbrbot stopped while UpgradeBackupClients was in flight"}
			if err := s.store.SaveBatch(ctx, l, b, l.Until); err != nil {
				return err
			}
		case hbrbot.BatchRunning:
			if err := s.report(ctx, l, &b, hbrbot.ReportStarted); err != nil {
				return err
			}
			if b.Polls == 0 && s.now().Sub(b.Started) < s.opts.PollInterval {
				// Just submitted: it cannot have ended; the first poll is an
				// interval on.
				return s.store.SaveBatch(ctx, l, b, s.nextPoll(b, s.now()))
			}
			next, err := s.poll(ctx, &b, log)
			if err != nil {
				return err
			}
			s.progressAfterPoll(ctx, b.RequestID)
			if b.State == hbrbot.BatchRunning {
				return s.store.SaveBatch(ctx, l, b, next)
			}
			if err := s.store.SaveBatch(ctx, l, b, l.Until); err != nil {
				return err
			}
		case hbrbot.BatchFinished:
			if err := s.store.LoadSpec(ctx, &b); err != nil { // a poll may have ended it without
				return err
			}
			if b.TaskID != "" {
				if err := s.report(ctx, l, &b, hbrbot.ReportStarted); err != nil {
					return err
				}
			}
			if err := s.report(ctx, l, &b, hbrbot.ReportFinal); err != nil {
				return err
			}
			if s.chat.NeedsTable(b) {
				if err := s.uploadTable(ctx, l, &b); err != nil {
					return err
				}
			}
			duration, lag := time.Duration(0), time.Duration(-1)
			if !b.Ended.IsZero() {
				duration, lag = b.Ended.Sub(b.Started), s.now().Sub(b.Ended)
			}
			s.opts.Observer.JobFinished(string(b.Final), duration, lag)
			// Logged once the metrics count it: the line marks the job done.
			log.InfoContext(ctx, "batch reported", "task", b.TaskID, "final", b.Final)
			s.audit(ctx, hbrbot.AuditRecord{Event: hbrbot.AuditJobFinished, RequestID: b.RequestID, Actor: "hbrbot",
				Channel: b.ChannelID, Fields: outcomeFields(b)})
			s.scheduleProgress(ctx, b.RequestID, s.now()) // its last redraw
			// The card's header shows the outcome once every job has ended.
			if err := s.store.Schedule(ctx, hbrbot.Work{Kind: hbrbot.WorkCardSync, ID: b.RequestID}, s.now()); err != nil {
				log.WarnContext(ctx, "schedule card update", "err", err)
			}
			return s.store.SaveBatch(ctx, l, b, time.Time{})
		default:
			return fmt.Errorf("batch %s: unknown state %q", b.Key(), b.State)
		}
	}
}

// submit calls UpgradeBackupClients for b and returns b as it stands after.
// A dry run calls nothing and ends at once.
func (s *Service) submit(ctx context.Context, b hbrbot.Batch, log *slog.Logger) hbrbot.Batch {
	if b.DryRun {
		b.State, b.Final = hbrbot.BatchFinished, hbrbot.JobDryRun
		s.audit(ctx, hbrbot.AuditRecord{Event: hbrbot.AuditHBRCall, RequestID: b.RequestID, Actor: "hbrbot", Channel: b.ChannelID,
			Fields: map[string]string{"action": "UpgradeBackupClients", "dry_run": "true", "batch": b.Key(), "ids": strings.Join(b.Targets.All(), ",")}})
		return b
	}
	sub, err := s.hbr.UpgradeBackupClients(ctx, b.Region, b.Targets, b.CrossAccount)
	now := s.now()
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
		var inv []string
		for _, iv := range sub.Invalid {
			inv = append(inv, iv.ID+":"+iv.ErrorCode)
		}
		fields["invalid"] = strings.Join(inv, ",")
	}
	s.audit(ctx, hbrbot.AuditRecord{Event: hbrbot.AuditHBRCall, RequestID: b.RequestID, Actor: "hbrbot", Channel: b.ChannelID, Fields: fields})
	switch {
	case errors.Is(err, hbrbot.ErrOutcomeUnknown):
		log.ErrorContext(ctx, "upgrade outcome unknown; not resubmitting", "err", err)
		b.State, b.Final = hbrbot.BatchFinished, hbrbot.JobNotStarted
		b.Error = &hbrbot.SubmissionError{Unknown: true, Message: err.Error()}
	case err != nil:
		log.ErrorContext(ctx, "upgrade refused", "err", err, "code", hbrbot.ErrorCode(err))
		b.State, b.Final = hbrbot.BatchFinished, hbrbot.JobNotStarted
		code := hbrbot.ErrorCode(err)
		var he *hbrbot.HBRError
		msg := err.Error()
		if errors.As(err, &he) {
			msg = he.Message
		}
		if code == "" {
			code = "Error"
		}
		b.Error = &hbrbot.SubmissionError{Code: code, Message: msg}
	default:
		log.InfoContext(ctx, "upgrade submitted", "task", sub.TaskID, "hbr_request", sub.RequestID, "invalid", len(sub.Invalid))
		b.State, b.TaskID, b.Invalid = hbrbot.BatchRunning, sub.TaskID, sub.Invalid
		b.Started, b.Deadline = now, now.Add(s.opts.TaskTimeout)
		if len(sub.Invalid) == b.Targets.Len() {
			// Nothing valid to upgrade: nothing to wait for.
			b.State, b.Final = hbrbot.BatchFinished, hbrbot.JobCompleted
		}
	}
	return b
}

// poll asks HBR about b's job. It leaves b running (and says when to ask
// next) or finished.
func (s *Service) poll(ctx context.Context, b *hbrbot.Batch, log *slog.Logger) (time.Time, error) {
	task, err := s.hbr.DescribeTask(ctx, b.Region, b.TaskID)
	b.Polls++
	now := s.now()
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
		s.audit(ctx, hbrbot.AuditRecord{Event: hbrbot.AuditHBRCall, RequestID: b.RequestID, Actor: "hbrbot", Channel: b.ChannelID, Fields: fields})
	}
	if err != nil {
		if !now.Before(b.Deadline) {
			log.WarnContext(ctx, "job timed out; last poll failed", "task", b.TaskID, "err", err)
			b.State, b.Final, b.Ended = hbrbot.BatchFinished, hbrbot.JobTimedOut, now
			return time.Time{}, nil
		}
		log.WarnContext(ctx, "describe task failed; polling on", "task", b.TaskID, "err", err)
		return s.nextPoll(*b, now), nil
	}
	b.Progress = task.Progress
	if final || !now.Before(b.Deadline) {
		// The job ended (or timed out): the rest needs the IDs.
		if err := s.store.LoadSpec(ctx, b); err != nil {
			return time.Time{}, err
		}
	}
	if final {
		b.State, b.Final, b.Ended = hbrbot.BatchFinished, finalStatus, now
		results, err := hbrbot.ParseTaskResult(task.Result)
		if err != nil {
			log.WarnContext(ctx, "unreadable task result; the job's status decides", "err", err)
		}
		b.Results = results
		s.verify(ctx, b, log)
		return time.Time{}, nil
	}
	if !now.Before(b.Deadline) {
		b.State, b.Final, b.Ended = hbrbot.BatchFinished, hbrbot.JobTimedOut, now
		s.verify(ctx, b, log) // the clients may have moved regardless
		return time.Time{}, nil
	}
	return s.nextPoll(*b, now), nil
}

// nextPoll says when to ask about b again: one interval on, or with the
// adaptive policy at the job's predicted end (progress so far, extrapolated
// at the rate it came), within [MinPollInterval, MaxPollInterval]; never past
// the deadline, so a timed-out job is reported within one interval of it.
func (s *Service) nextPoll(b hbrbot.Batch, now time.Time) time.Time {
	wait := s.opts.PollInterval
	switch {
	case !s.opts.Adaptive:
	case b.Progress > 0 && b.Progress < 100:
		elapsed := now.Sub(b.Started)
		remaining := time.Duration(float64(elapsed) * float64(100-b.Progress) / float64(b.Progress))
		wait = min(max(remaining, s.opts.MinPollInterval), s.opts.MaxPollInterval)
	case b.Progress == 0 && b.Polls > 0:
		wait = s.opts.MaxPollInterval // still nothing to extrapolate from
	}
	next := now.Add(wait)
	if next.After(b.Deadline) {
		next = b.Deadline
	}
	return next
}

// report posts b's reply of this kind once: marked attempted before the
// post, posted after; an attempted reply is looked for before posting again.
func (s *Service) report(ctx context.Context, l hbrbot.Lease, b *hbrbot.Batch, kind hbrbot.ReportKind) error {
	switch b.Reported[kind] {
	case hbrbot.ReportPosted:
		return nil
	case hbrbot.ReportAttempted:
		_, found, err := s.chat.FindReply(ctx, b.ChannelID, b.ThreadTS, b.Key(), kind)
		if err != nil {
			return fmt.Errorf("look for %s report of %s: %w", kind, b.Key(), err)
		}
		if found {
			b.Reported[kind] = hbrbot.ReportPosted
			return s.store.SaveBatch(ctx, l, *b, l.Until)
		}
	}
	if b.Reported == nil {
		b.Reported = map[hbrbot.ReportKind]hbrbot.ReportState{}
	}
	b.Reported[kind] = hbrbot.ReportAttempted
	if err := s.store.SaveBatch(ctx, l, *b, l.Until); err != nil {
		return err
	}
	if err := s.chat.PostReport(ctx, *b, kind); err != nil {
		return fmt.Errorf("post %s report of %s: %w", kind, b.Key(), err)
	}
	s.audit(ctx, hbrbot.AuditRecord{Event: hbrbot.AuditReportPosted, RequestID: b.RequestID, Actor: "hbrbot",
		Channel: b.ChannelID, Fields: map[string]string{"batch": b.Key(), "kind": string(kind), "task_id": b.TaskID}})
	b.Reported[kind] = hbrbot.ReportPosted
	return s.store.SaveBatch(ctx, l, *b, l.Until)
}

// outcomeFields summarises an ended batch for the audit trail.
func outcomeFields(b hbrbot.Batch) map[string]string {
	f := map[string]string{"batch": b.Key(), "task_id": b.TaskID, "final": string(b.Final), "polls": fmt.Sprint(b.Polls)}
	var per []string
	for _, o := range b.Outcomes() {
		entry := o.ID + ":" + string(o.Kind)
		if o.Code != "" {
			entry += ":" + o.Code
		}
		per = append(per, entry)
	}
	f["outcomes"] = strings.Join(per, ",")
	for k, n := range hbrbot.Tally(b.Outcomes()) {
		f[string(k)] = fmt.Sprint(n)
	}
	return f
}

// progressAfterPoll asks for a redraw of the request's progress one
// ProgressEvery on, unless this replica asked within the last one. A redraw
// that ran in between and found nothing new to ask for is asked for again
// by a poll at most ProgressEvery later.
func (s *Service) progressAfterPoll(ctx context.Context, requestID string) {
	now := s.now()
	s.progressMu.Lock()
	if len(s.progressAsked) > 10000 {
		for id, at := range s.progressAsked {
			if now.Sub(at) >= s.opts.ProgressEvery {
				delete(s.progressAsked, id)
			}
		}
	}
	last, asked := s.progressAsked[requestID]
	fresh := asked && now.Sub(last) < s.opts.ProgressEvery
	if !fresh {
		s.progressAsked[requestID] = now
	}
	s.progressMu.Unlock()
	if !fresh {
		s.scheduleProgress(ctx, requestID, now.Add(s.opts.ProgressEvery))
	}
}

func (s *Service) scheduleProgress(ctx context.Context, requestID string, at time.Time) {
	if err := s.store.Schedule(ctx, hbrbot.Work{Kind: hbrbot.WorkProgress, ID: requestID}, at); err != nil {
		s.log.WarnContext(ctx, "schedule progress", "request", requestID, "err", err)
	}
}

// showProgress posts, or redraws, a request's one progress reply: at most
// once per ProgressEvery, within the shared budget. Progress is a courtesy:
// when the budget is spent the redraw waits, and a request whose jobs all
// ended before its first redraw gets none (its reports say it all).
func (s *Service) showProgress(ctx context.Context, l hbrbot.Lease) error {
	// The request and its batches are read only when needed: a request of
	// 100 jobs is 101 documents, and most passes here end in "not yet" or
	// "over budget".
	state, at, err := s.store.Progress(ctx, l.Work.ID)
	if errors.Is(err, hbrbot.ErrNotFound) {
		return s.store.Reschedule(ctx, l, time.Time{})
	}
	if err != nil {
		return err
	}
	now := s.now()
	if next := at.Add(s.opts.ProgressEvery); now.Before(next) {
		return s.store.Reschedule(ctx, l, next)
	}
	if state == "" {
		// No progress reply yet: none is needed once every job has ended
		// (the reports say it all), and that costs no budget. The
		// statuses say so without the request (10,000 IDs to decode).
		sts, err := s.store.BatchStatuses(ctx, l.Work.ID)
		if err != nil {
			return err
		}
		if _, done := hbrbot.Overall(sts); done || len(sts) == 0 {
			return s.store.Reschedule(ctx, l, time.Time{})
		}
	}
	if b := s.opts.ProgressBudget; b != nil {
		if ok, wait := b.Allow(ctx); !ok {
			// Over budget: skip this redraw; a later one shows the same.
			// Spread out, so that many requests do not all come back to
			// an empty budget together.
			wait = max(wait, s.opts.ProgressEvery)
			return s.store.Reschedule(ctx, l, now.Add(wait+rand.N(2*wait)))
		}
	}
	r, err := s.store.Request(ctx, l.Work.ID)
	if errors.Is(err, hbrbot.ErrNotFound) {
		return s.store.Reschedule(ctx, l, time.Time{})
	}
	if err != nil {
		return err
	}
	// Progress draws states and percentages: no IDs needed.
	batches, err := s.store.BatchStatuses(ctx, r.ID)
	if err != nil {
		return err
	}
	ts := r.ProgressTS
	switch r.ProgressState {
	case hbrbot.ReportPosted:
		err = s.chat.UpdateProgress(ctx, r, batches)
	case hbrbot.ReportAttempted:
		// A replica died around the post: find it before posting again.
		var found bool
		if ts, found, err = s.chat.FindReply(ctx, r.ChannelID, r.CardTS, r.ID, hbrbot.ReportProgress); err == nil && !found {
			ts, err = s.chat.PostProgress(ctx, r, batches)
		}
	default:
		if err = s.store.SetProgress(ctx, r.ID, hbrbot.ReportAttempted, "", r.ProgressAt); err != nil {
			return err
		}
		ts, err = s.chat.PostProgress(ctx, r, batches)
	}
	if err != nil {
		return fmt.Errorf("progress of %s: %w", r.ID, err)
	}
	if err := s.store.SetProgress(ctx, r.ID, hbrbot.ReportPosted, ts, now); err != nil {
		return err
	}
	return s.store.Reschedule(ctx, l, time.Time{})
}

// verify looks the batch's clients up again once the job ended, so the
// report can say which now run the latest version (and flag any the job
// called done that do not).
func (s *Service) verify(ctx context.Context, b *hbrbot.Batch, log *slog.Logger) {
	if b.DryRun {
		return
	}
	after, err := s.hbr.DescribeBackupClients(ctx, b.Region, b.Targets, b.CrossAccount)
	if err != nil {
		log.WarnContext(ctx, "verification look-up failed", "err", err)
		b.VerifyError = "could not look the clients up after the job"
		if code := hbrbot.ErrorCode(err); code != "" {
			b.VerifyError += " (" + code + ")"
		}
		return
	}
	b.After = after
}

// uploadTable shares a large job's full table once it is reported. Files
// carry no metadata to look for, so a replica that died between the upload
// and marking it may upload it again: at least once, unlike the reports.
func (s *Service) uploadTable(ctx context.Context, l hbrbot.Lease, b *hbrbot.Batch) error {
	if b.Reported[hbrbot.ReportTable] == hbrbot.ReportPosted {
		return nil
	}
	b.Reported[hbrbot.ReportTable] = hbrbot.ReportAttempted
	if err := s.store.SaveBatch(ctx, l, *b, l.Until); err != nil {
		return err
	}
	if err := s.chat.UploadTable(ctx, *b); err != nil {
		return fmt.Errorf("upload table of %s: %w", b.Key(), err)
	}
	b.Reported[hbrbot.ReportTable] = hbrbot.ReportPosted
	return s.store.SaveBatch(ctx, l, *b, l.Until)
}
