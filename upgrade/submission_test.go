package upgrade

import (
	"context"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/hbrbot/hbrbot"
	"github.com/hbrbot/hbrbot/redisstore"
)

// lookupOnlyHBR answers the look-up after a job; it fails the test on a
// submission.
type lookupOnlyHBR struct {
	t       *testing.T
	clients []hbrbot.ClientInfo
}

func (f lookupOnlyHBR) UpgradeBackupClients(context.Context, string, hbrbot.Targets, *hbrbot.CrossAccount) (hbrbot.Submission, error) {
	f.t.Error("UpgradeBackupClients called on a takeover")
	return hbrbot.Submission{}, hbrbot.ErrOutcomeUnknown
}
func (f lookupOnlyHBR) DescribeTask(context.Context, string, string) (hbrbot.Task, error) {
	return hbrbot.Task{}, nil
}
func (f lookupOnlyHBR) DescribeBackupClients(context.Context, string, hbrbot.Targets, *hbrbot.CrossAccount) ([]hbrbot.ClientInfo, error) {
	return f.clients, nil
}

// TestTakeOver: a batch found submitting by a holder that did not mark it
// adopts a kept answer, waits for the task timeout without one, then is
// verified per ID; never submitted again.
func TestTakeOver(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	const timeout = 20 * time.Minute
	for _, tc := range []struct {
		name     string
		answer   string // a kept TaskId
		at       time.Time
		state    hbrbot.BatchState
		taskID   string
		verified bool
	}{
		{name: "answer kept: adopted", answer: "t-kept", at: t0.Add(time.Minute), state: hbrbot.BatchRunning, taskID: "t-kept"},
		{name: "no answer, job may run: waits", at: t0.Add(time.Minute), state: hbrbot.BatchSubmitting},
		{name: "no answer, job must have ended: verified", at: t0.Add(timeout), state: hbrbot.BatchFinished, verified: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := miniredis.RunT(t)
			store := redisstore.New(redis.NewClient(&redis.Options{Addr: m.Addr()}))
			ctx := context.Background()
			b := hbrbot.Batch{BatchStatus: hbrbot.BatchStatus{RequestID: "r1", Of: 1, Region: "cn-hangzhou", ChannelID: "C1",
				ThreadTS: "1.2", State: hbrbot.BatchPending},
				BatchSpec: hbrbot.BatchSpec{Targets: hbrbot.Targets{InstanceIDs: []string{"i-aaa"}}}}
			r := hbrbot.Request{ID: "r1", ChannelID: "C1", State: hbrbot.RequestPending, CreatedAt: t0, ExpiresAt: t0.Add(time.Hour)}
			if err := store.CreateRequest(ctx, r); err != nil {
				t.Fatal(err)
			}
			b.State = hbrbot.BatchSubmitting
			b.SubmitAt = t0
			if err := store.ChangeRequest(ctx, "r1", hbrbot.RequestChange{Expect: hbrbot.RequestVersion{State: hbrbot.RequestPending},
				State: hbrbot.RequestApproved, Batches: []hbrbot.Batch{b},
				Schedule: []hbrbot.Due{{Work: hbrbot.Work{Kind: hbrbot.WorkBatch, ID: b.Key()}, At: t0}}}); err != nil {
				t.Fatal(err)
			}
			if tc.answer != "" {
				if err := store.SaveAnswer(ctx, b.Key(), hbrbot.Submission{TaskID: tc.answer}); err != nil {
					t.Fatal(err)
				}
			}
			o := Options{TaskTimeout: timeout, Now: func() time.Time { return tc.at }}.withDefaults()
			j := newJobs(store, lookupOnlyHBR{t: t, clients: []hbrbot.ClientInfo{{InstanceID: "i-aaa", Version: "2.5.1", MaxVersion: "2.5.1", Status: "ACTIVATED"}}},
				nil, nil, auditor{store: store, log: o.Logger, now: o.Now}, func() {}, o)
			run := &batchRun{lease: hbrbot.Lease{Work: hbrbot.Work{Kind: hbrbot.WorkBatch, ID: b.Key()}, Until: tc.at.Add(time.Minute)},
				status: b.BatchStatus, attempted: map[hbrbot.ReportKind]bool{}, log: o.Logger}
			next, err := j.submitting(ctx, run)
			if err != nil {
				t.Fatal(err)
			}
			st := run.status
			if st.State != tc.state || st.TaskID != tc.taskID || st.Verified() != tc.verified {
				t.Errorf("state %s task %q verified %v, want %s %q %v", st.State, st.TaskID, st.Verified(), tc.state, tc.taskID, tc.verified)
			}
			if tc.state == hbrbot.BatchSubmitting && (next.Kind != hbrbot.NextDue || !next.At.Equal(t0.Add(timeout))) {
				t.Errorf("next %+v, want due at the task timeout after the submission", next)
			}
			if tc.verified {
				full := hbrbot.Batch{BatchStatus: st, BatchSpec: b.BatchSpec}
				if o := full.Outcomes()[0]; o.Kind != hbrbot.OutcomeUpgraded || !o.AnswerLost {
					t.Errorf("outcome %+v, want upgraded, answer lost", o)
				}
			}
		})
	}
}
