package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/hbrbot/hbrbot"
	"github.com/hbrbot/hbrbot/internal/botproc"
	"github.com/hbrbot/hbrbot/internal/redistest"
	"github.com/hbrbot/hbrbot/redisstore"
)

// TestReplicaAdoptsKeptTaskID: a replica (the built binary, a child
// process) submits a batch, HBR answers, the replica keeps the TaskId in
// its own key, and is SIGKILLed before the batch's save lands. A proxy
// between it and Redis makes that window exact: it forwards the command
// that writes the kept TaskId whole and holds everything after it. Another
// replica, started once the first is dead, finds the batch submitting,
// adopts the kept TaskId, follows the job and reports it once: one
// UpgradeBackupClients call, one started and one final reply, nothing
// reported unknown.
func TestReplicaAdoptsKeptTaskID(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and kills it")
	}
	h := newHarness(t, map[string]string{
		"HBRBOT_LEASE": "5s", // the shortest
		// Were the kept TaskId not adopted, the IDs would be verified this
		// long after the submission began, and reported "answer lost".
		"HBRBOT_TASK_TIMEOUT": "20s",
	})
	store := redisstore.New(h.redis.Client())
	proxy := redistest.StartProxy(t, h.redis)

	buildCtx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	bin, err := botproc.Build(buildCtx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ctx := h.ctx()
	var env []string
	for k, v := range h.env {
		if k != "HBRBOT_HTTP_ADDR" && k != "REDIS_URL" {
			env = append(env, k+"="+v)
		}
	}
	logs := &syncBuffer{}
	first, err := botproc.Start(botproc.Config{Bin: bin, Env: append(env, "REDIS_URL="+proxy.URL()), Dir: t.TempDir(), Stderr: logs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { first.Kill() })
	if err := first.AwaitReady(ctx); err != nil {
		t.Fatalf("first replica: %v", err)
	}

	h.command(requester, "i-aaa i-bbb")
	card := h.awaitCard(1)
	id := cardRequestID(card)
	batch := hbrbot.BatchKey(id, 0)
	// The key SaveAnswer writes the TaskId to (redisstore's keyAnswer).
	answerKey := redisstore.Prefix + "answer:" + batch
	proxy.HoldAfter(answerKey)
	h.click(approver, card, "hbr_upgrade_approve")
	select {
	case <-proxy.Held():
	case <-first.Exited():
		t.Fatalf("the first replica exited: %v\n%s", first.Err(), first.Tail(30))
	case <-ctx.Done():
		t.Fatalf("the first replica never wrote %s: %v\nits log:\n%s", answerKey, ctx.Err(), logs)
	}
	h.awaitKey(answerKey) // forwarded whole before the hold
	if err := first.Kill(); err != nil {
		t.Fatal(err)
	}

	// The window was hit: HBR answered, the TaskId is kept, the batch
	// still says submitting, with no task.
	jobs := h.hbr.Jobs()
	if len(jobs) != 1 {
		t.Fatalf("%d HBR jobs, want 1", len(jobs))
	}
	st, err := store.BatchStatus(ctx, batch)
	if err != nil || st.State != hbrbot.BatchSubmitting || st.TaskID != "" {
		t.Fatalf("batch after the kill: %s task %q (%v); want submitting, no task", st.State, st.TaskID, err)
	}
	kept, found, err := store.Answer(ctx, batch)
	if err != nil || !found || kept.TaskID != jobs[0].TaskID {
		t.Fatalf("kept answer %+v found %v (%v); want HBR's task %s", kept, found, err, jobs[0].TaskID)
	}

	// The second replica, straight on Redis, once the first one's lease
	// (stretched over the submission) has run out.
	h.start()
	final := text(h.awaitReports(card, "final", 1)[0])
	h.awaitAudit(hbrbot.AuditJobFinished, id)
	h.awaitUnscheduled()

	if n := len(h.hbr.Calls("UpgradeBackupClients")); n != 1 {
		t.Errorf("%d UpgradeBackupClients calls, want 1", n)
	}
	if n := len(h.reportsOf(card, "final")); n != 1 {
		t.Errorf("%d final reports, want 1", n)
	}
	if n := len(h.reportsOf(card, "started")); n != 1 {
		t.Errorf("%d started reports, want 1", n)
	}
	if !strings.Contains(final, "2 upgraded") || strings.Contains(final, "outcome unknown") || strings.Contains(final, "was lost") {
		t.Errorf("final report, want 2 upgraded and nothing unknown:\n%s", final)
	}
	var finished []hbrbot.AuditRecord
	for _, rec := range h.auditOf(id) {
		switch rec.Event {
		case hbrbot.AuditJobFinished:
			finished = append(finished, rec)
		case hbrbot.AuditUnknownResolved:
			t.Errorf("audited as unknown: %+v", rec)
		}
	}
	if len(finished) != 1 || finished[0].Fields["task_id"] != kept.TaskID {
		t.Errorf("job_finished records %+v, want one of task %s", finished, kept.TaskID)
	}
	if t.Failed() {
		t.Logf("first replica's log:\n%s\nsecond replica's log:\n%s", logs, h.logs)
	}
}

// awaitKey waits until key exists in Redis. There is no event for a
// write, so Redis is asked.
func (h *harness) awaitKey(key string) {
	h.t.Helper()
	rdb := h.redis.Client()
	ctx := h.ctx()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		n, err := rdb.Exists(ctx, key).Result()
		if err == nil && n == 1 {
			return
		}
		select {
		case <-ctx.Done():
			h.t.Fatalf("%s never written: %v", key, err)
		case <-tick.C:
		}
	}
}

// auditOf reads the audit trail's records of a request.
func (h *harness) auditOf(requestID string) []hbrbot.AuditRecord {
	h.t.Helper()
	msgs, err := h.redis.Client().XRange(h.ctx(), redisstore.Prefix+"audit", "-", "+").Result()
	if err != nil {
		h.t.Fatal(err)
	}
	var out []hbrbot.AuditRecord
	for _, m := range msgs {
		var rec hbrbot.AuditRecord
		raw, _ := m.Values["record"].(string)
		if json.Unmarshal([]byte(raw), &rec) == nil && rec.RequestID == requestID {
			out = append(out, rec)
		}
	}
	return out
}
