package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hbrbot/hbrbot"
	"github.com/hbrbot/hbrbot/config"
	"github.com/hbrbot/hbrbot/hbrtest"
	"github.com/hbrbot/hbrbot/internal/botproc"
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

// TestCommandOfAReplicaKilledAtItsAck: two replicas of the real binary
// run as child processes. Redis stalls (SIGSTOP) for a second as a command
// arrives, so the replica it reaches stores it late, within the 2 s it
// waits, and acks that the card follows; that replica is killed with
// SIGKILL the instant the fake reads the ack. The other one finishes the
// command once the lease has run out: one card, approved, one
// UpgradeBackupClients call, one final report.
//
// Requesters and approvers are a user group, and the fake holds
// usergroups.users.list with every call that shows something until the
// kill is done: whenever the kill lands, the killed replica cannot get
// past the look-up its command starts with, and whatever shows comes from
// the other one.
func TestCommandOfAReplicaKilledAtItsAck(t *testing.T) {
	h := newHarness(t, map[string]string{"HBRBOT_LEASE": config.MinLease.String(),
		"HBRBOT_REQUESTERS": "S0OPS", "HBRBOT_APPROVERS": "S0OPS"})
	h.slack.SetUserGroup("S0OPS", requester, approver)
	h.redis = redistest.StartOwn(t)
	h.env["REDIS_URL"] = h.redis.URL()
	k := h.startChildren(2)

	killed := k.killAtAck("slash_commands")
	held := h.slack.Hold(append(shows, "usergroups.users.list")...)
	h.redis.Pause()
	env := h.command(requester, "i-aaa")
	time.Sleep(time.Second) // Redis slow: the stall itself, within the 2 s the bot waits for it
	h.redis.Resume()
	victim, ack := killed()
	checkSlowAck(t, ack)
	if text := ackText(ack); !strings.Contains(text, "the approval card follows") {
		t.Fatalf("%s acked %q, want the card promised", victim.name, text)
	}
	// What it left: the command, stored and scheduled; nothing shown.
	if _, err := h.redis.Client().ZScore(h.ctx(), redisstore.Prefix+"due", string(hbrbot.WorkCommand)+":"+env).Result(); err != nil {
		t.Fatalf("the acked command is not scheduled: %v", err)
	}
	k.checkShownNothing(held.Release(), victim)

	card := h.awaitCard(1)
	h.click(approver, card, "hbr_upgrade_approve")
	if final := text(h.awaitReports(card, "final", 1)[0]); !strings.Contains(final, "1 upgraded") {
		t.Errorf("final report:\n%s", final)
	}
	h.awaitUnscheduled()
	k.checkOnce(card)
}

// TestClickOfAReplicaKilledAtItsAck: as above, for an Approve click. Redis
// stalls as the click arrives; the replica it reaches stores it, acks it
// and is killed the instant the fake reads that ack, before it could
// decide (the approvers are a user group, and the look-up is held until
// the kill is done). The other replica decides once the lease has run
// out: the request is approved after the kill, and submitted and reported
// once.
func TestClickOfAReplicaKilledAtItsAck(t *testing.T) {
	h := newHarness(t, map[string]string{"HBRBOT_LEASE": config.MinLease.String(), "HBRBOT_APPROVERS": "S0OPS"})
	h.slack.SetUserGroup("S0OPS", approver)
	h.redis = redistest.StartOwn(t)
	h.env["REDIS_URL"] = h.redis.URL()
	k := h.startChildren(2)
	h.command(requester, "i-aaa")
	card := h.awaitCard(1)
	id := requestID(t, card)

	killed := k.killAtAck("interactive")
	held := h.slack.Hold(append(shows, "usergroups.users.list")...)
	h.redis.Pause()
	env := h.click(approver, card, "hbr_upgrade_approve")
	time.Sleep(time.Second) // Redis slow: the stall itself, within the 2 s the bot waits for it
	h.redis.Resume()
	victim, ack := killed()
	died := time.Now()
	checkSlowAck(t, ack)
	// What it left: the click, stored and scheduled; the request
	// undecided; nothing shown.
	rdb := h.redis.Client()
	if _, err := rdb.ZScore(h.ctx(), redisstore.Prefix+"due", string(hbrbot.WorkClick)+":"+env).Result(); err != nil {
		t.Fatalf("the acked click is not scheduled: %v", err)
	}
	store := redisstore.New(rdb)
	if r, err := store.Request(h.ctx(), id); err != nil || r.State != hbrbot.RequestPending {
		t.Fatalf("request after the kill: %s, %v; want it pending", r.State, err)
	}
	k.checkShownNothing(held.Release(), victim)

	if final := text(h.awaitReports(card, "final", 1)[0]); !strings.Contains(final, "1 upgraded") {
		t.Errorf("final report:\n%s", final)
	}
	h.awaitUnscheduled()
	r, err := store.Request(h.ctx(), id)
	if err != nil || r.State != hbrbot.RequestApproved || r.DecidedBy != approver || !r.DecidedAt.After(died) {
		t.Errorf("request %s by %s at %v (the kill: %v), %v; want approved by %s after the kill",
			r.State, r.DecidedBy, r.DecidedAt, died, err, approver)
	}
	if m, _ := h.slack.Message(channel, card.TS); !strings.Contains(m.Text, "Approved by") {
		t.Errorf("card after the decision: %q", m.Text)
	}
	k.checkOnce(card)
}

// shows are the Slack calls that show something to someone.
var shows = []string{"chat.postMessage", "chat.update", "chat.postEphemeral", "response_url",
	"files.getUploadURLExternal", "files.completeUploadExternal", "upload_url"}

// children are replicas of the built binary, run as child processes so
// that a test can kill one with SIGKILL, each known by its Slack socket.
type children struct {
	h      *harness
	bin    string
	env    []string
	byConn map[int]*child
}

// startChildren starts n replicas, one after the other, each ready
// (connected to Slack and Redis) before the next.
func (h *harness) startChildren(n int) *children {
	h.t.Helper()
	k := &children{h: h, bin: botBinary(h.t), byConn: map[int]*child{}}
	for key, v := range h.env {
		if key != "HBRBOT_HTTP_ADDR" {
			k.env = append(k.env, key+"="+v)
		}
	}
	dir := h.t.TempDir()
	for i := range n {
		before := h.slack.ConnectionIDs()
		c := &child{name: fmt.Sprintf("replica-%d", i+1), logs: &syncBuffer{}}
		var err error
		c.Proc, err = botproc.Start(botproc.Config{Bin: k.bin, Env: k.env, Dir: dir,
			Stderr: io.MultiWriter(c.logs, &prefixed{prefix: c.name + ": ", w: h.logs})})
		if err != nil {
			h.t.Fatalf("%s: %v", c.name, err)
		}
		h.t.Cleanup(func() { c.Kill() })
		if err := c.AwaitReady(h.ctx()); err != nil {
			h.t.Fatalf("%s not ready: %v", c.name, err)
		}
		for _, id := range h.slack.ConnectionIDs() {
			if !slices.Contains(before, id) {
				k.byConn[id] = c
			}
		}
	}
	if len(k.byConn) != n {
		h.t.Fatalf("%d replicas hold %d Slack sockets", n, len(k.byConn))
	}
	return k
}

// killAtAck kills, with SIGKILL, the replica that acks the first envelope
// of type typ from now on, the instant the fake reads that ack (in its
// read loop: the replica gets no further). The function it returns waits
// until that replica is gone and says which one, and its ack.
func (k *children) killAtAck(typ string) func() (*child, slacktest.Ack) {
	type kill struct {
		c   *child
		ack slacktest.Ack
		err error
	}
	done := make(chan kill, 1)
	var once sync.Once
	remove := k.h.slack.OnAck(func(a slacktest.Ack) {
		if a.Type != typ {
			return
		}
		once.Do(func() {
			c := k.byConn[a.Connection]
			if c == nil {
				done <- kill{ack: a, err: fmt.Errorf("ack on socket %d, which no replica of the test holds", a.Connection)}
				return
			}
			done <- kill{c: c, ack: a, err: c.Kill()}
		})
	})
	return func() (*child, slacktest.Ack) {
		k.h.t.Helper()
		defer remove()
		select {
		case r := <-done:
			if r.err != nil {
				k.h.t.Fatalf("kill at the ack of %s: %v", r.ack.EnvelopeID, r.err)
			}
			k.h.t.Logf("%s killed at its ack of %s %s, %v after the envelope", r.c.name, typ, r.ack.EnvelopeID, r.ack.Latency.Round(time.Millisecond))
			return r.c, r.ack
		case <-k.h.ctx().Done():
			k.h.t.Fatalf("no %s envelope acked\nlogs:\n%s", typ, k.h.logs)
			return nil, slacktest.Ack{}
		}
	}
}

// checkShownNothing checks what the fake held between the envelope and
// the kill: nothing that shows (only the other replica was left, and it
// had nothing to do).
func (k *children) checkShownNothing(held map[string]int, victim *child) {
	k.h.t.Helper()
	for _, m := range shows {
		if held[m] > 0 {
			k.h.t.Errorf("%d %s calls between the envelope and the kill of %s", held[m], m, victim.name)
		}
	}
	k.h.t.Logf("held until the kill: %v", held)
}

// checkOnce checks that card is the only card, and its request was
// submitted once and reported started and final once.
func (k *children) checkOnce(card slacktest.Message) {
	h := k.h
	h.t.Helper()
	if n := len(cards(h.slack)); n != 1 {
		h.t.Errorf("%d cards, want 1", n)
	}
	if n := len(h.hbr.Calls("UpgradeBackupClients")); n != 1 {
		h.t.Errorf("%d UpgradeBackupClients calls, want 1", n)
	}
	for _, kind := range []string{"started", "final"} {
		if n := len(h.reportsOf(card, kind)); n != 1 {
			h.t.Errorf("%d %s reports, want 1", n, kind)
		}
	}
	for _, c := range k.byConn {
		for _, bad := range []string{"WARNING: DATA RACE", "panic:", "fatal error:"} {
			if l := c.logs.all(); strings.Contains(l, bad) {
				h.t.Errorf("%s: %s\n%s", c.name, bad, l)
			}
		}
	}
}

// checkSlowAck checks that an ack came late, for the Redis stall, but
// within Slack's 3 s.
func checkSlowAck(t *testing.T, a slacktest.Ack) {
	t.Helper()
	if a.Latency < 500*time.Millisecond || a.Latency >= 3*time.Second {
		t.Errorf("acked %v after the envelope, want over 0.5 s (Redis stalled 1 s) and under 3 s", a.Latency)
	}
}

// ackText is the text an ack's payload carries.
func ackText(a slacktest.Ack) string {
	var p struct {
		Text string `json:"text"`
	}
	json.Unmarshal(a.Payload, &p)
	return p.Text
}

// prefixed copies a process's log to w, each line after prefix.
type prefixed struct {
	prefix string
	w      io.Writer
	mu     sync.Mutex
	part   []byte // a line not yet ended
}

func (p *prefixed) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.part = append(p.part, b...)
	for {
		i := bytes.IndexByte(p.part, '\n')
		if i < 0 {
			return len(b), nil
		}
		if _, err := p.w.Write(append([]byte(p.prefix), p.part[:i+1]...)); err != nil {
			return 0, err
		}
		p.part = p.part[i+1:]
	}
}
