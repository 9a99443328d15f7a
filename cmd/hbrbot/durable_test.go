package main

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hbrbot/hbrbot"
	"github.com/hbrbot/hbrbot/hbrtest"
	"github.com/hbrbot/hbrbot/internal/redistest"
	"github.com/hbrbot/hbrbot/redisstore"
	"github.com/hbrbot/hbrbot/slacktest"
)

// TestRedisStalledAsHBRAnswers: Redis stops answering (SIGSTOP) while
// UpgradeBackupClients is in flight, so HBR's answer arrives with nowhere
// to go. The answer's save is retried while the lease holds; once Redis
// is back the job is followed and reported, from one call.
func TestRedisStalledAsHBRAnswers(t *testing.T) {
	h := newHarness(t, nil)
	h.redis = redistest.StartOwn(t)
	h.env["REDIS_URL"] = h.redis.URL()
	h.hbr.HangNext("UpgradeBackupClients", 1, 1500*time.Millisecond) // the job exists; the answer comes later
	h.start()
	h.command(requester, "i-aaa")
	card := h.awaitCard(1)
	h.click(approver, card, "hbr_upgrade_approve")
	if _, err := h.hbr.WaitJobs(h.ctx(), 1); err != nil {
		t.Fatal(err)
	}
	h.redis.Pause()
	time.Sleep(3 * time.Second) // the stall itself, not a wait for an event
	h.redis.Resume()
	final := text(h.awaitReports(card, "final", 1)[0])
	if !strings.Contains(final, "1 upgraded") {
		t.Errorf("final report:\n%s", final)
	}
	if n := len(h.reportsOf(card, "started")); n != 1 {
		t.Errorf("%d started reports, want 1", n)
	}
	if n := len(h.hbr.Calls("UpgradeBackupClients")); n != 1 {
		t.Errorf("%d UpgradeBackupClients calls, want 1", n)
	}
}

// TestEvictedBatchKey: a running batch's key disappears from Redis (as an
// eviction would do). The loss is an error in the audit trail and a reply
// in its thread naming the IDs to check by hand, never a silent drop.
func TestEvictedBatchKey(t *testing.T) {
	h := newHarness(t, nil)
	h.hbr.SetDefaultScript(hbrtest.Step{Progress: 10, Description: hbrtest.TaskCreated}) // never ends
	h.start()
	h.command(requester, "i-aaa i-bbb")
	card := h.awaitCard(1)
	h.click(approver, card, "hbr_upgrade_approve")
	h.awaitReports(card, "started", 1)
	id := cardRequestID(card)
	if err := h.redis.Client().Del(h.ctx(), redisstore.Prefix+"batch:"+hbrbot.BatchKey(id, 0)).Err(); err != nil {
		t.Fatal(err)
	}
	h.awaitAudit(hbrbot.AuditStateLost, id)
	c, err := h.slack.WaitCall(h.ctx(), "chat.postMessage", func(c slacktest.Call) bool {
		return strings.Contains(c.Form.Get("text"), "lost this job's state")
	})
	if err != nil {
		t.Fatal(err)
	}
	if b := c.Form.Get("blocks"); !strings.Contains(b, "i-aaa") || !strings.Contains(b, "i-bbb") || !strings.Contains(b, "by hand") {
		t.Errorf("lost report does not name the IDs to check by hand:\n%s", b)
	}
	h.awaitUnscheduledBatches()
	if n := len(h.hbr.Calls("UpgradeBackupClients")); n != 1 {
		t.Errorf("%d UpgradeBackupClients calls, want 1", n)
	}
}

// awaitUnscheduledBatches waits until no batch is in the schedule.
func (h *harness) awaitUnscheduledBatches() {
	h.t.Helper()
	rdb := h.redis.Client()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		items, err := rdb.ZRange(h.ctx(), redisstore.Prefix+"due", 0, -1).Result()
		if err == nil && !slices.ContainsFunc(items, func(m string) bool { return strings.HasPrefix(m, string(hbrbot.WorkBatch)+":") }) {
			return
		}
		select {
		case <-h.ctx().Done():
			h.t.Fatalf("batches still scheduled: %v %v", items, err)
		case <-tick.C:
		}
	}
}

// TestCommandOfAReplicaKilledAtItsAck: a replica stored a command and
// acked it, then died before doing anything else (its lease ran out). The
// state it leaves is exactly this stored item; another replica finishes
// it: the card comes, and the request runs.
func TestCommandOfAReplicaKilledAtItsAck(t *testing.T) {
	h := newHarness(t, nil)
	store := redisstore.New(h.redis.Client())
	doc := `{"invocation":{"EnvelopeID":"env-killed","ChannelID":"` + channel + `","UserID":"` + requester +
		`","Text":"i-aaa"},"spec":{"instance_ids":["i-aaa"],"region":"cn-hangzhou"}}`
	if _, first, err := store.StoreItem(h.ctx(), hbrbot.Work{Kind: hbrbot.WorkCommand, ID: "env-killed"}, []byte(doc), -time.Second); err != nil || !first {
		t.Fatalf("store item: first %v, %v", first, err)
	}
	h.start()
	card := h.awaitCard(1)
	h.click(approver, card, "hbr_upgrade_approve")
	if final := text(h.awaitReports(card, "final", 1)[0]); !strings.Contains(final, "1 upgraded") {
		t.Errorf("final report:\n%s", final)
	}
	h.awaitUnscheduled()
}

// TestCommandNotStoredSaysSo: with Redis not answering, a valid command's
// ack says that nothing was done, and why.
func TestCommandNotStoredSaysSo(t *testing.T) {
	h := newHarness(t, nil)
	h.redis = redistest.StartOwn(t)
	h.env["REDIS_URL"] = h.redis.URL()
	h.start()
	h.redis.Pause()
	env := h.command(requester, "i-aaa")
	ack := h.ackPayload(env)
	h.redis.Resume()
	if !strings.Contains(ack, "Nothing was done") || !strings.Contains(ack, "did not answer within 2 s") {
		t.Errorf("ack %s, want it to say nothing was done and why", ack)
	}
	h.awaitUnscheduled()
	if n := len(cards(h.slack)); n != 0 {
		t.Errorf("%d cards, want none", n)
	}
}
