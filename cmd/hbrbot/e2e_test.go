package main

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hbrbot/hbrbot"
	"github.com/hbrbot/hbrbot/hbrtest"
	"github.com/hbrbot/hbrbot/internal/botproc"
	"github.com/hbrbot/hbrbot/internal/redistest"
	"github.com/hbrbot/hbrbot/redisstore"
	"github.com/hbrbot/hbrbot/slacktest"
)

// TestHappyPathWithInvalidInstance: command, card, approval, one
// UpgradeBackupClients, the invalid instance reported at once, one final
// report naming every ID.
func TestHappyPathWithInvalidInstance(t *testing.T) {
	h := newHarness(t, nil)
	h.hbr.SetInstance("i-bad", hbrtest.Instance{Invalid: hbrtest.InstanceNotRunning})
	h.start()

	env := h.command(requester, "i-good1 i-bad, c-good2 --region cn-shanghai")
	if got := h.ackPayload(env); !strings.Contains(got, "the approval card follows") {
		t.Errorf("valid command acked with %q, want word that the card follows", got)
	}
	card := h.awaitCard(1)
	for _, want := range []string{"<@" + requester + ">", "i-good1", "i-bad", "c-good2", "cn-shanghai", "this account", "hbr_upgrade_approve", "hbr_upgrade_cancel"} {
		if !strings.Contains(text(card), want) {
			t.Errorf("card lacks %q:\n%s", want, text(card))
		}
	}
	if n := len(h.hbr.Calls("UpgradeBackupClients")); n != 0 {
		t.Fatalf("UpgradeBackupClients called %d times before approval", n)
	}

	h.click(approver, card, "hbr_upgrade_approve")
	started := h.awaitReports(card, "started", 1)
	final := h.awaitReports(card, "final", 1)

	calls := h.hbr.Calls("UpgradeBackupClients")
	if len(calls) != 1 {
		t.Fatalf("UpgradeBackupClients called %d times, want 1", len(calls))
	}
	p := calls[0].Params
	if got := p.Get("InstanceIds"); got != `["i-good1","i-bad"]` {
		t.Errorf("InstanceIds = %s", got)
	}
	if got := p.Get("ClientIds"); got != `["c-good2"]` {
		t.Errorf("ClientIds = %s", got)
	}
	if got := p.Get("RegionId"); got != "cn-shanghai" {
		t.Errorf("RegionId = %s, want the command's region", got)
	}
	if !calls[0].SignatureOK {
		t.Error("signature not verified")
	}
	task := h.hbr.Jobs()[0].TaskID
	if s := text(started[0]); !strings.Contains(s, task) || !strings.Contains(s, "i-bad") || !strings.Contains(s, "InstanceNotRunning") {
		t.Errorf("started reply lacks the task or the invalid instance:\n%s", s)
	}
	f := text(final[0])
	for _, want := range []string{task, "i-good1", "c-good2", "i-bad", "InstanceNotRunning", "2 upgraded · 1 refused"} {
		if !strings.Contains(f, want) {
			t.Errorf("final report lacks %q:\n%s", want, f)
		}
	}
	// The card ends up led by the outcome, approved, without buttons.
	if _, err := h.slack.WaitCall(h.ctx(), "chat.update", func(c slacktest.Call) bool {
		return strings.Contains(c.Form.Get("blocks"), "Partly failed")
	}); err != nil {
		t.Errorf("card header never showed the outcome: %v", err)
	}
	updated, _ := h.slack.Message(channel, card.TS)
	if !strings.Contains(text(updated), "Approved by \u003c@"+approver+"\u003e") || strings.Contains(string(updated.Blocks), "hbr_upgrade_approve") {
		t.Errorf("card not updated to approved without buttons:\n%s", text(updated))
	}
	if testing.Verbose() {
		logTranscript(t, h, card)
	}
}

// logTranscript prints what users see: the Slack calls the fake recorded.
func logTranscript(t *testing.T, h *harness, card slacktest.Message) {
	for _, m := range []string{"chat.postMessage", "chat.update", "chat.postEphemeral", "response_url"} {
		for _, c := range h.slack.Calls(m) {
			form := c.Form
			if form != nil {
				form = map[string][]string{"channel": form["channel"], "thread_ts": form["thread_ts"], "ts": form["ts"], "text": form["text"], "blocks": form["blocks"], "metadata": form["metadata"]}
			}
			b, _ := json.MarshalIndent(map[string]any{"method": m, "form": form, "json": c.JSON}, "", "  ")
			t.Logf("%s", b)
		}
	}
}

// TestCancel: the requester cancels; no HBR call; a later approve is told
// why nothing happens.
func TestCancel(t *testing.T) {
	h := newHarness(t, nil)
	h.start()
	h.command(requester, "i-aaa")
	card := h.awaitCard(1)
	h.click(requester, card, "hbr_upgrade_cancel")
	if _, err := h.slack.WaitCall(h.ctx(), "chat.update", nil); err != nil {
		t.Fatalf("card not updated: %v", err)
	}
	updated, _ := h.slack.Message(channel, card.TS)
	if !strings.Contains(text(updated), "Cancelled by <@"+requester+">") || strings.Contains(string(updated.Blocks), "hbr_upgrade_approve") {
		t.Errorf("card not cancelled without buttons:\n%s", text(updated))
	}
	// A stale client still shows the buttons.
	h.slack.SendBlockAction(slacktest.BlockAction{ChannelID: channel, MessageTS: card.TS, UserID: approver,
		ActionID: "hbr_upgrade_approve", Value: requestID(t, card)})
	h.awaitTold(approver, "cancelled by <@"+requester+">")
	if n := len(h.hbr.Calls("UpgradeBackupClients")) + len(h.hbr.Calls("DescribeTask")); n != 0 {
		t.Errorf("%d job calls to HBR after a cancel, want 0 (only the read-only look-up)", n)
	}
}

// requestID reads the request ID from a card's Approve button.
func requestID(t *testing.T, card slacktest.Message) string {
	t.Helper()
	id := cardRequestID(card)
	if id == "" {
		t.Fatalf("card has no Approve button:\n%s", text(card))
	}
	return id
}

// TestBatchesOf100: 250 IDs become three HBR jobs of 100, 100 and 50, each
// with its own final report.
func TestBatchesOf100(t *testing.T) {
	h := newHarness(t, nil)
	h.start()
	var ids []string
	for i := range 250 {
		ids = append(ids, fmt.Sprintf("i-%04d", i))
	}
	h.command(requester, strings.Join(ids, ","))
	card := h.awaitCard(1)
	h.click(approver, card, "hbr_upgrade_approve")
	finals := h.awaitReports(card, "final", 3)

	calls := h.hbr.Calls("UpgradeBackupClients")
	if len(calls) != 3 {
		t.Fatalf("UpgradeBackupClients called %d times, want 3", len(calls))
	}
	seen := map[string]int{}
	var sizes []int
	for _, c := range calls {
		var batch []string
		if err := json.Unmarshal([]byte(c.Params.Get("InstanceIds")), &batch); err != nil {
			t.Fatal(err)
		}
		sizes = append(sizes, len(batch))
		for _, id := range batch {
			seen[id]++
		}
	}
	slices.Sort(sizes)
	if !slices.Equal(sizes, []int{50, 100, 100}) {
		t.Errorf("batch sizes %v, want 100, 100, 50", sizes)
	}
	if len(seen) != 250 {
		t.Errorf("%d distinct IDs submitted, want 250", len(seen))
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("%s submitted %d times", id, n)
		}
	}
	h.awaitUnscheduled() // the CSV tables go up after the reports
	for _, id := range unreported(h.slack, finals, ids) {
		t.Errorf("no final report or its table names %s", id)
	}
	if got := len(h.reportsOf(card, "final")); got != 3 {
		t.Errorf("%d final reports, want 3", got)
	}
}

// TestJobEndings: each way a job ends is reported once, with every ID.
func TestJobEndings(t *testing.T) {
	for _, tc := range []struct {
		name   string
		script []hbrtest.Step
		want   []string
	}{
		{"failed", []hbrtest.Step{{Progress: 10, Description: "created"}, {Progress: -1, Description: "created"}}, []string{"failed:", "2 failed", "UPGRADE_FAILED"}},
		{"expired", []hbrtest.Step{{Progress: 10, Description: "created"}, {Progress: 10, Description: "expired", EmptyResult: true}}, []string{"expired:", "2 expired"}},
		{"cancelled", []hbrtest.Step{{Progress: 30, Description: "cancelled", ObjectResult: true}}, []string{"was cancelled:", "2 cancelled"}},
		{"completed with empty result", []hbrtest.Step{{Progress: 100, Description: "completed", ObjectResult: true}}, []string{"completed:", "2 upgraded"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil)
			h.hbr.QueueJob(tc.script...)
			h.start()
			h.command(requester, "i-one i-two")
			card := h.awaitCard(1)
			h.click(approver, card, "hbr_upgrade_approve")
			final := text(h.awaitReports(card, "final", 1)[0])
			for _, want := range append(tc.want, "i-one", "i-two") {
				if !strings.Contains(final, want) {
					t.Errorf("final report lacks %q:\n%s", want, final)
				}
			}
			h.awaitUnscheduled()
		})
	}
}

// awaitUnscheduled waits until no work is scheduled: every job reported
// and its polling stopped.
func (h *harness) awaitUnscheduled() {
	h.t.Helper()
	rdb := h.redis.Client()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	ctx := h.ctx()
	for {
		n, err := rdb.ZCard(ctx, redisstore.Prefix+"due").Result()
		if err == nil && n == 0 {
			return
		}
		select {
		case <-ctx.Done():
			h.t.Fatalf("work still scheduled (%d items): %v", n, err)
		case <-tick.C:
		}
	}
}

// TestTimeout: a job that never ends is reported as timed out within a
// poll interval of HBRBOT_TASK_TIMEOUT, and polling stops.
func TestTimeout(t *testing.T) {
	h := newHarness(t, map[string]string{"HBRBOT_TASK_TIMEOUT": "1s"})
	h.hbr.QueueJob(hbrtest.Step{Progress: 40, Description: "created"})
	h.start()
	h.command(requester, "i-slow")
	card := h.awaitCard(1)
	h.click(approver, card, "hbr_upgrade_approve")
	final := text(h.awaitReports(card, "final", 1)[0])
	if !strings.Contains(final, "timed out") || !strings.Contains(final, "i-slow") {
		t.Errorf("final report:\n%s", final)
	}
	h.awaitUnscheduled()
	polls := len(h.hbr.Calls("DescribeTask"))
	// 1s at 100ms: about ten polls, and never many more.
	if polls < 2 || polls > 15 {
		t.Errorf("%d DescribeTask calls for a 1s timeout at a 100ms interval", polls)
	}
}

// TestDoubleClick: two approvals (two users, two envelopes) submit once;
// the second clicker hears it was already approved.
func TestDoubleClick(t *testing.T) {
	h := newHarness(t, nil)
	h.start()
	h.command(requester, "i-aaa")
	card := h.awaitCard(1)
	h.click(approver, card, "hbr_upgrade_approve")
	h.click("U0CAROL", card, "hbr_upgrade_approve")
	h.awaitReports(card, "final", 1)
	h.awaitTold("U0CAROL", "already approved by <@")
	if n := len(h.hbr.Calls("UpgradeBackupClients")); n != 1 {
		t.Errorf("UpgradeBackupClients called %d times, want 1", n)
	}
}

// TestRedeliveredEnvelope: the same click envelope delivered twice is
// acted on once: the second delivery is acked and does nothing, not even
// tell the clicker the request was already approved.
func TestRedeliveredEnvelope(t *testing.T) {
	h := newHarness(t, nil)
	b := h.start()
	h.command(requester, "i-aaa")
	card := h.awaitCard(1)
	env := h.click(approver, card, "hbr_upgrade_approve")
	h.awaitReports(card, "final", 1)
	h.awaitUnscheduled()
	told := len(h.slack.Calls("response_url")) + len(h.slack.Calls("chat.postEphemeral"))
	h.slack.Redeliver(env)
	if _, err := h.slack.WaitAcks(h.ctx(), env, 2); err != nil {
		t.Fatal(err)
	}
	// Once run has returned, the bot has acted on every envelope it acked.
	b.stop(t)
	if n := len(h.hbr.Calls("UpgradeBackupClients")); n != 1 {
		t.Errorf("UpgradeBackupClients called %d times, want 1", n)
	}
	if n := len(h.slack.Calls("response_url")) + len(h.slack.Calls("chat.postEphemeral")) - told; n != 0 {
		t.Errorf("the redelivered click told someone something (%d messages): it was acted on again", n)
	}
}

// TestRestartMidJob: the bot stops while a job runs; a new run on the same
// Redis posts the final report, exactly once.
func TestRestartMidJob(t *testing.T) {
	h := newHarness(t, nil)
	// Long enough that the first bot stops mid-job.
	script := []hbrtest.Step{{Progress: 0, Description: "created"}}
	for p := 5; p < 100; p += 5 {
		script = append(script, hbrtest.Step{Progress: p, Description: "created"})
	}
	h.hbr.QueueJob(append(script, hbrtest.Step{Progress: 100, Description: "completed"})...)
	first := h.start()
	h.command(requester, "i-aaa c-bbb")
	card := h.awaitCard(1)
	h.click(approver, card, "hbr_upgrade_approve")
	h.awaitReports(card, "started", 1)
	if _, err := h.hbr.WaitCalls(h.ctx(), "DescribeTask", 2); err != nil {
		t.Fatal(err)
	}
	first.stop(t)
	if n := len(h.reportsOf(card, "final")); n != 0 {
		t.Fatalf("final report posted before the restart (%d); the job should still run", n)
	}
	// A stopped replica holds no lease: the job is due within a poll
	// interval, not a lease (1m) away.
	zs, err := h.redis.Client().ZRangeWithScores(h.ctx(), redisstore.Prefix+"due", 0, -1).Result()
	if err != nil || len(zs) == 0 {
		t.Fatalf("schedule after stop: %v %v", zs, err)
	}
	for _, z := range zs {
		if due := time.UnixMilli(int64(z.Score)); time.Until(due) > 10*time.Second {
			t.Errorf("%s due %v from now after a clean stop: its lease was not handed back", z.Member, time.Until(due))
		}
	}

	h.start()
	final := h.awaitReports(card, "final", 1)
	h.awaitUnscheduled()
	if n := len(h.reportsOf(card, "final")); n != 1 {
		t.Errorf("%d final reports, want 1", n)
	}
	if n := len(h.reportsOf(card, "started")); n != 1 {
		t.Errorf("%d started replies, want 1", n)
	}
	if n := len(h.hbr.Calls("UpgradeBackupClients")); n != 1 {
		t.Errorf("UpgradeBackupClients called %d times, want 1", n)
	}
	if s := text(final[0]); !strings.Contains(s, "2 upgraded") {
		t.Errorf("final report:\n%s", s)
	}
}

// TestBadInput: every refusal reaches only the caller (in the ack), names
// the problem, and leaves nothing behind.
func TestBadInput(t *testing.T) {
	h := newHarness(t, map[string]string{"HBRBOT_MAX_TARGETS": "3", "HBRBOT_ALLOWED_CHANNELS": channel + ",C0OTHER"})
	h.start()
	for _, tc := range []struct{ text, channel, want string }{
		{"i-aaa --regoin cn-hangzhou", channel, "--regoin"},
		{"i-aaa banana", channel, "banana"},
		{"--region cn-hangzhou", channel, "no"},
		{"i-a i-b i-c i-d", channel, "3"},
		{"i-aaa --cross-account-user-id 123", channel, "--cross-account-role"},
		{"i-aaa", "C0NOTALLOWED", "not enabled in this channel"},
	} {
		env := h.slack.SendSlashCommand(slacktest.SlashCommand{ChannelID: tc.channel, UserID: requester, Text: tc.text})
		got := h.ackPayload(env)
		if !strings.Contains(strings.ToLower(got), strings.ToLower(tc.want)) {
			t.Errorf("%q: ack %q, want it to mention %q", tc.text, got, tc.want)
		}
	}
	if n := len(h.slack.Calls("chat.postMessage")); n != 0 {
		t.Errorf("%d messages posted for bad input", n)
	}
	keys, err := h.redis.Client().Keys(h.ctx(), redisstore.Prefix+"req:*").Result()
	if err != nil || len(keys) != 0 {
		t.Errorf("requests stored for bad input: %v %v", keys, err)
	}
}

// TestHelp: help and an empty command show the usage, privately.
func TestHelp(t *testing.T) {
	h := newHarness(t, nil)
	h.start()
	for _, text := range []string{"", "help", "  "} {
		if got := h.ackPayload(h.command(requester, text)); !strings.Contains(got, "--region") || !strings.Contains(got, "status") {
			t.Errorf("%q: usage not shown: %q", text, got)
		}
	}
}

// TestApprovalRules: self-approval and non-approvers are refused, and the
// request stays pending until an allowed approver (here a user group
// member) approves.
func TestApprovalRules(t *testing.T) {
	h := newHarness(t, map[string]string{"HBRBOT_APPROVERS": "U0BOSS,S0OPS"})
	h.slack.SetUserGroup("S0OPS", approver, requester)
	h.start()
	h.command(requester, "i-aaa")
	card := h.awaitCard(1)
	h.click(requester, card, "hbr_upgrade_approve")
	h.awaitTold(requester, "cannot approve your own request")
	h.click("U0MALLORY", card, "hbr_upgrade_approve")
	h.awaitTold("U0MALLORY", "not an allowed approver")
	h.click("U0MALLORY", card, "hbr_upgrade_cancel")
	h.awaitTold("U0MALLORY", "Only the requester or an approver can cancel")
	if n := len(h.hbr.Calls("UpgradeBackupClients")); n != 0 {
		t.Fatalf("UpgradeBackupClients called %d times by refused clicks", n)
	}
	h.click(approver, card, "hbr_upgrade_approve")
	h.awaitReports(card, "final", 1)
	if n := len(h.hbr.Calls("UpgradeBackupClients")); n != 1 {
		t.Errorf("UpgradeBackupClients called %d times, want 1", n)
	}
}

// TestStatus: status lists the channel's pending requests, privately.
func TestStatus(t *testing.T) {
	h := newHarness(t, nil)
	h.start()
	h.command(requester, "i-aaa i-bbb")
	card := h.awaitCard(1)
	h.awaitAudit(hbrbot.AuditRequestPosted, requestID(t, card)) // the card's ts is recorded
	h.command(approver, "status")
	h.awaitTold(approver, "awaiting approval (0 of 1): 2 IDs in cn-hangzhou")
	h.awaitTold(approver, "/archives/"+channel+"/p")
}

// TestRedisDown: with Redis unreachable a command is still acked, and the
// ack itself says that nothing was done and why (it could not be stored);
// when Redis is back the bot works again by itself.
func TestRedisDown(t *testing.T) {
	h := newHarness(t, nil)
	h.redis = redistest.StartOwn(t) // stopped and restarted below
	h.env["REDIS_URL"] = h.redis.URL()
	h.start()
	h.redis.Stop()
	env := h.command(requester, "i-aaa")
	if ack := h.ackPayload(env); !strings.Contains(ack, "Nothing was done") {
		t.Errorf("ack %s, want it to say nothing was done", ack)
	}
	if n := len(h.slack.Calls("chat.postMessage")); n != 0 {
		t.Errorf("%d messages posted while Redis was down", n)
	}
	h.redis.Restart()
	h.command(requester, "i-aaa")
	card := h.awaitCard(1)
	h.click(approver, card, "hbr_upgrade_approve")
	h.awaitReports(card, "final", 1)
}

// TestRequestExpires: an unapproved request expires after
// HBRBOT_REQUEST_TTL; its card says so and a late click is told why.
func TestRequestExpires(t *testing.T) {
	h := newHarness(t, map[string]string{"HBRBOT_REQUEST_TTL": "1s"})
	h.start()
	h.command(requester, "i-aaa")
	card := h.awaitCard(1)
	if _, err := h.slack.WaitCall(h.ctx(), "chat.update", nil); err != nil {
		t.Fatalf("card never updated: %v", err)
	}
	updated, _ := h.slack.Message(channel, card.TS)
	if !strings.Contains(text(updated), "Expired unapproved") || strings.Contains(string(updated.Blocks), "hbr_upgrade_approve") {
		t.Errorf("card not expired without buttons:\n%s", text(updated))
	}
	h.slack.SendBlockAction(slacktest.BlockAction{ChannelID: channel, MessageTS: card.TS, UserID: approver,
		ActionID: "hbr_upgrade_approve", Value: requestID(t, card)})
	h.awaitTold(approver, "expired at")
	if n := len(h.hbr.Calls("UpgradeBackupClients")) + len(h.hbr.Calls("DescribeTask")); n != 0 {
		t.Errorf("%d job calls to HBR for an expired request", n)
	}
}

// TestOnRedisCluster: the whole flow with REDIS_MODE=cluster against a
// real three-node Redis Cluster, two replicas.
func TestOnRedisCluster(t *testing.T) {
	cluster := redistest.StartCluster(t)
	h := newHarness(t, map[string]string{"REDIS_MODE": "cluster", "REDIS_URL": cluster.URL()})
	h.start()
	h.startReplica()
	var ids []string
	for i := range 150 {
		ids = append(ids, fmt.Sprintf("i-%03d", i))
	}
	h.command(requester, strings.Join(ids, " "))
	card := h.awaitCard(1)
	h.click(approver, card, "hbr_upgrade_approve")
	h.awaitReports(card, "final", 2)
	if n := len(h.hbr.Calls("UpgradeBackupClients")); n != 2 {
		t.Errorf("UpgradeBackupClients called %d times, want 2", n)
	}
}

// TestOnRedisClusterDurable: HBRBOT_REDIS_DURABILITY=replica on a Redis
// Cluster whose master of hbrbot's slot has a replica. The submitting mark
// is waited for on that master: with the replica stalled it is not
// acknowledged, so the batch is not submitted and its thread says why;
// with the replica back, the next batch is submitted and runs.
func TestOnRedisClusterDurable(t *testing.T) {
	cluster := redistest.StartCluster(t)
	replica := cluster.AddReplica(t, cluster.MasterOf(t, redisstore.Prefix))
	h := newHarness(t, map[string]string{"REDIS_MODE": "cluster", "REDIS_URL": cluster.URL(), "HBRBOT_REDIS_DURABILITY": "replica"})
	h.start()

	replica.Pause()
	h.command(requester, "i-aaa")
	card := h.awaitCard(1)
	h.click(approver, card, "hbr_upgrade_approve")
	final := text(h.awaitReports(card, "final", 1)[0])
	replica.Resume()
	if !strings.Contains(final, "Not submitted") || !strings.Contains(final, "durable") {
		t.Errorf("final report with the replica stalled, want not submitted:\n%s", final)
	}
	if n := len(h.hbr.Calls("UpgradeBackupClients")); n != 0 {
		t.Fatalf("UpgradeBackupClients called %d times with the mark not durable, want 0", n)
	}

	h.command(requester, "i-bbb")
	card = h.awaitCard(2)
	h.click(approver, card, "hbr_upgrade_approve")
	if final := text(h.awaitReports(card, "final", 1)[0]); !strings.Contains(final, "1 upgraded") {
		t.Errorf("final report with the replica back:\n%s", final)
	}
	if n := len(h.hbr.Calls("UpgradeBackupClients")); n != 1 {
		t.Errorf("UpgradeBackupClients called %d times, want 1", n)
	}
}

// TestSlackRateLimitOnReport: a 429 on the final report delays it by
// Retry-After; it is posted once, never dropped.
func TestSlackRateLimitOnReport(t *testing.T) {
	h := newHarness(t, nil)
	h.hbr.QueueJob(hbrtest.Step{Progress: 10, Description: "created"}, hbrtest.Step{Progress: 60, Description: "created"},
		hbrtest.Step{Progress: 100, Description: "completed"})
	h.start()
	h.command(requester, "i-aaa")
	card := h.awaitCard(1)
	h.click(approver, card, "hbr_upgrade_approve")
	h.awaitReports(card, "started", 1)
	h.slack.RateLimit("chat.postMessage", 2, time.Second)
	h.awaitReports(card, "final", 1)
	h.awaitUnscheduled()
	limited := 0
	for _, c := range h.slack.Calls("chat.postMessage") {
		if c.Status == 429 {
			limited++
		}
	}
	if limited != 2 {
		t.Errorf("%d rate-limited posts, want 2", limited)
	}
	if n := len(h.reportsOf(card, "final")); n != 1 {
		t.Errorf("%d final reports, want 1", n)
	}
}

// TestHBRThrottling: throttling and unavailability on every call type are
// retried; the upgrade still runs once.
func TestHBRThrottling(t *testing.T) {
	h := newHarness(t, nil)
	h.hbr.FailNext("UpgradeBackupClients", 2, 400, "Throttling.User")
	h.hbr.FailNext("DescribeTask", 2, 503, "ServiceUnavailable")
	h.start()
	h.command(requester, "i-aaa i-bbb")
	card := h.awaitCard(1)
	h.click(approver, card, "hbr_upgrade_approve")
	final := text(h.awaitReports(card, "final", 1)[0])
	if !strings.Contains(final, "2 upgraded") {
		t.Errorf("final report:\n%s", final)
	}
	if n := len(h.hbr.Jobs()); n != 1 {
		t.Errorf("%d HBR jobs, want 1", n)
	}
	if n := len(h.hbr.Calls("UpgradeBackupClients")); n != 3 {
		t.Errorf("%d UpgradeBackupClients calls, want 3 (two throttled)", n)
	}
}

// TestUpgradeOutcomeUnknown: an UpgradeBackupClients call that times out
// after HBR received it is never resubmitted: once HBRBOT_TASK_TIMEOUT has
// passed, its IDs are verified and reported, saying HBR's answer was lost.
func TestUpgradeOutcomeUnknown(t *testing.T) {
	h := newHarness(t, map[string]string{"HBRBOT_TASK_TIMEOUT": "2s"})
	h.hbr.HangNext("UpgradeBackupClients", 1, 20*time.Second)
	h.start()
	h.command(requester, "i-aaa")
	card := h.awaitCard(1)
	h.click(approver, card, "hbr_upgrade_approve")
	final := text(h.awaitReports(card, "final", 1)[0])
	if !strings.Contains(final, "answer to UpgradeBackupClients was lost") || !strings.Contains(final, "never resubmitted") ||
		!strings.Contains(final, "1 not upgraded") {
		t.Errorf("final report:\n%s", final)
	}
	h.awaitUnscheduled()
	if n := len(h.hbr.Calls("UpgradeBackupClients")); n != 1 {
		t.Errorf("%d UpgradeBackupClients calls, want 1", n)
	}
}

// TestUpgradeRefused: an error that proves HBR refused the batch is
// reported with its code, not retried.
func TestUpgradeRefused(t *testing.T) {
	h := newHarness(t, nil)
	h.hbr.FailNext("UpgradeBackupClients", 1, 403, "Forbidden.RAM")
	h.start()
	h.command(requester, "i-aaa")
	card := h.awaitCard(1)
	h.click(approver, card, "hbr_upgrade_approve")
	final := text(h.awaitReports(card, "final", 1)[0])
	if !strings.Contains(final, "Forbidden.RAM") || !strings.Contains(final, "1 not started") {
		t.Errorf("final report:\n%s", final)
	}
	if n := len(h.hbr.Calls("UpgradeBackupClients")); n != 1 {
		t.Errorf("%d UpgradeBackupClients calls, want 1", n)
	}
}

// TestReadinessFollowsSlack: /readyz fails while the Socket Mode
// connection is down and recovers with it.
func TestReadinessFollowsSlack(t *testing.T) {
	h := newHarness(t, nil)
	b := h.start()
	h.slack.SetConnectionsOpenError("internal_error")
	h.slack.Disconnect("refresh_requested")
	h.awaitReadyz(b, http.StatusServiceUnavailable)
	h.slack.SetConnectionsOpenError("")
	h.awaitReadyz(b, http.StatusOK)
}

// TestMetrics: /metrics counts what happened, no more.
func TestMetrics(t *testing.T) {
	h := newHarness(t, nil)
	b := h.start()
	h.command(requester, "i-aaa")
	h.command(requester, "bogus")
	card := h.awaitCard(1)
	h.click(approver, card, "hbr_upgrade_approve")
	h.awaitReports(card, "final", 1)
	want := botproc.Metrics{
		`hbrbot_commands_total{outcome="accepted"}`:                       1,
		`hbrbot_commands_total{outcome="refused"}`:                        1,
		`hbrbot_clicks_total{result="approved"}`:                          1,
		`hbrbot_hbr_calls_total{action="UpgradeBackupClients",code=""}`:   1,
		`hbrbot_jobs_finished_total{final="completed"}`:                   1,
		`hbrbot_socket_mode_connected`:                                    1,
		`hbrbot_slack_calls_total{method="chat.postMessage",result="ok"}`: 3,
		`hbrbot_report_lag_seconds_count`:                                 1,
	}
	// The counts come after the report they count: wait for them, then,
	// with nothing left to do, check that none went past.
	h.awaitMetrics(b, want)
	h.awaitUnscheduled()
	m, err := botproc.ReadMetrics(h.ctx(), b.addr)
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range m.Mismatches(want) {
		t.Errorf("/metrics once idle: %s", bad)
	}
	if n := m.Sum("hbrbot_jobs_finished_total"); n != 1 {
		t.Errorf("%v jobs finished, want 1", n)
	}
}

// TestLiveProgress: one progress reply per request, redrawn as the jobs
// move, never more than once every 5 s.
func TestLiveProgress(t *testing.T) {
	h := newHarness(t, nil)
	var script []hbrtest.Step
	for p := range 60 { // about 6 s at 100 ms
		script = append(script, hbrtest.Step{Progress: p * 100 / 60, Description: "created"})
	}
	script = append(script, hbrtest.Step{Progress: 100, Description: "completed"})
	h.hbr.SetDefaultScript(script...)
	h.start()
	ids := make([]string, 150)
	for i := range ids {
		ids[i] = fmt.Sprintf("i-%03d", i)
	}
	h.command(requester, strings.Join(ids, " "))
	card := h.awaitCard(1)
	h.click(approver, card, "hbr_upgrade_approve")
	h.awaitReports(card, "final", 2)
	progress := h.awaitReports(card, "progress", 1)
	if len(progress) != 1 {
		t.Fatalf("%d progress replies, want 1", len(progress))
	}
	// The last redraw shows both jobs ended.
	last, err := h.slack.WaitCall(h.ctx(), "chat.update", func(c slacktest.Call) bool {
		return c.Form.Get("ts") == progress[0].TS && strings.Contains(c.Form.Get("text"), "2 of 2 jobs ended")
	})
	if err != nil {
		t.Fatalf("progress never showed both jobs ended: %v", err)
	}
	// Post and redraws at least 5 s apart.
	times := []time.Time{}
	for _, c := range h.slack.Calls("chat.postMessage") {
		if strings.Contains(c.Form.Get("metadata"), `"kind":"progress"`) {
			times = append(times, c.At)
		}
	}
	for _, c := range h.slack.Calls("chat.update") {
		if c.Form.Get("ts") == progress[0].TS {
			times = append(times, c.At)
		}
	}
	for i := 1; i < len(times); i++ {
		if gap := times[i].Sub(times[i-1]); gap < 4900*time.Millisecond {
			t.Errorf("progress redrawn %v after the previous one; at most once every 5 s", gap)
		}
	}
	if !strings.Contains(last.Form.Get("blocks"), "▓▓▓▓▓▓▓▓▓▓") {
		t.Errorf("last redraw has no full bars:\n%s", last.Form.Get("blocks"))
	}
}

// TestPreflightAndVerify: the card shows each client's version and what
// the upgrade will do; clients already at the latest are left out; the
// final report verifies the versions and flags a client HBR called done
// that still runs the old one.
func TestPreflightAndVerify(t *testing.T) {
	h := newHarness(t, nil)
	old := hbrtest.Instance{Name: "web-1", Version: "2.4.0", MaxVersion: "2.5.1", Status: "ACTIVATED"}
	h.hbr.SetInstance("i-old1", old)
	latest := old
	latest.Name, latest.Version = "web-2", "2.5.1"
	h.hbr.SetInstance("i-latest", latest)
	down := old
	down.Name, down.Status = "web-3", "UNKNOWN"
	h.hbr.SetInstance("i-down", down)
	stale := old
	stale.Name, stale.StaysOld = "web-4", true
	h.hbr.SetInstance("i-stale", stale)
	h.start()

	h.command(requester, "i-old1 i-latest i-down i-ghost i-stale")
	card := h.awaitCard(1)
	for _, want := range []string{"Will upgrade (2)", "web-1 · 2.4.0 → 2.5.1", "Not ACTIVATED", "`UNKNOWN`",
		"Not found in HBR", "i-ghost", "Already at the latest version, left out", "i-latest"} {
		if !strings.Contains(text(card), want) {
			t.Errorf("card lacks %q:\n%s", want, text(card))
		}
	}
	h.click(approver, card, "hbr_upgrade_approve")
	final := text(h.awaitReports(card, "final", 1)[0])
	if got := h.hbr.Calls("UpgradeBackupClients")[0].Params.Get("InstanceIds"); strings.Contains(got, "i-latest") {
		t.Errorf("a client at the latest version was submitted: %s", got)
	}
	for _, want := range []string{"still old", "i-stale` 2.4.0 → 2.4.0, latest 2.5.1", "StillOld"} {
		if !strings.Contains(final, want) {
			t.Errorf("final report lacks %q:\n%s", want, final)
		}
	}
}

// TestPreflightFailure: when the look-up fails the card says so in one
// line, and the IDs as typed can still be approved.
func TestPreflightFailure(t *testing.T) {
	h := newHarness(t, nil)
	h.hbr.FailNext("DescribeBackupClients", 1, 403, "Forbidden.RAM")
	h.start()
	h.command(requester, "i-aaa i-bbb")
	card := h.awaitCard(1)
	if !strings.Contains(text(card), "Could not look the clients up in HBR (the look-up failed (Forbidden.RAM))") {
		t.Errorf("card:\n%s", text(card))
	}
	h.click(approver, card, "hbr_upgrade_approve")
	h.awaitReports(card, "final", 1)
	if got := h.hbr.Calls("UpgradeBackupClients")[0].Params.Get("InstanceIds"); got != `["i-aaa","i-bbb"]` {
		t.Errorf("submitted %s", got)
	}
}

// TestNothingToUpgrade: every client already at the latest: no card.
func TestNothingToUpgrade(t *testing.T) {
	h := newHarness(t, nil)
	h.hbr.SetInstance("i-latest", hbrtest.Instance{Version: "2.5.1", MaxVersion: "2.5.1", Status: "ACTIVATED"})
	h.start()
	h.command(requester, "i-latest")
	h.awaitTold(requester, "Nothing to upgrade: every client named (1) already runs the latest version")
	if n := len(h.slack.Calls("chat.postMessage")); n != 0 {
		t.Errorf("%d messages posted", n)
	}
}

// TestOutdatedFleet: --outdated selects every client of the region older
// than the latest version, across DescribeBackupClients pages, and goes
// through the same card and approval.
func TestOutdatedFleet(t *testing.T) {
	h := newHarness(t, nil)
	for i := range 250 {
		v := "2.4.0"
		if i%5 == 0 {
			v = "2.10.0" // the latest: numerically above 2.9, below as text
		}
		h.hbr.SetInstance(fmt.Sprintf("i-fleet%03d", i), hbrtest.Instance{Version: v, MaxVersion: "2.10.0", Status: "ACTIVATED"})
	}
	h.start()
	h.command(requester, "--outdated --limit 150")
	card := h.awaitCard(1)
	if !strings.Contains(text(card), "Will upgrade (150)") {
		t.Errorf("card:\n%s", text(card))
	}
	pages := 0
	for _, c := range h.hbr.Calls("DescribeBackupClients") {
		if c.Params.Get("InstanceIds") == "" && c.Params.Get("ClientIds") == "" {
			pages++
		}
	}
	if pages != 3 {
		t.Errorf("%d unfiltered DescribeBackupClients pages, want 3 for 250 clients", pages)
	}
	h.click(approver, card, "hbr_upgrade_approve")
	h.awaitReports(card, "final", 2)
	submitted := 0
	for _, c := range h.hbr.Calls("UpgradeBackupClients") {
		var ids []string
		json.Unmarshal([]byte(c.Params.Get("ClientIds")), &ids)
		for _, id := range ids {
			var n int
			if _, err := fmt.Sscanf(id, "c-fleet%03d", &n); err != nil || n%5 == 0 {
				t.Errorf("%s submitted: it was not outdated", id)
			}
		}
		submitted += len(ids)
	}
	if submitted != 150 {
		t.Errorf("%d clients submitted, want 150", submitted)
	}
}

// TestRetryFailed: "Retry" on a report opens a new request, through
// approval, for just the IDs that did not end upgraded.
func TestRetryFailed(t *testing.T) {
	h := newHarness(t, nil)
	h.hbr.SetInstance("i-bad", hbrtest.Instance{Invalid: hbrtest.InstanceNotRunning})
	h.hbr.SetInstance("i-fail", hbrtest.Instance{UpgradeStatus: "UPGRADE_FAILED", ErrorCode: "UPGRADE_FAILED"})
	h.start()
	h.command(requester, "i-ok i-bad i-fail")
	card := h.awaitCard(1)
	h.click(approver, card, "hbr_upgrade_approve")
	final := h.awaitReports(card, "final", 1)[0]
	if !strings.Contains(string(final.Blocks), "hbr_upgrade_retry") || !strings.Contains(text(final), "Retry the 2 not upgraded") {
		t.Fatalf("no retry button on a report with failures:\n%s", text(final))
	}
	h.slack.SendBlockAction(slacktest.BlockAction{ChannelID: channel, MessageTS: final.TS, UserID: approver, ActionID: "hbr_upgrade_retry"})
	retry := h.awaitCard(2)
	if !strings.Contains(text(retry), "requested by <@"+approver+">") || !strings.Contains(text(retry), "i-bad") ||
		!strings.Contains(text(retry), "i-fail") || strings.Contains(text(retry), "i-ok") {
		t.Errorf("retry card:\n%s", text(retry))
	}
	if n := len(h.hbr.Calls("UpgradeBackupClients")); n != 1 {
		t.Fatalf("the retry submitted before approval (%d calls)", n)
	}
	h.click(requester, retry, "hbr_upgrade_approve")
	h.awaitReports(retry, "final", 1)
	calls := h.hbr.Calls("UpgradeBackupClients")
	if len(calls) != 2 || calls[1].Params.Get("InstanceIds") != `["i-bad","i-fail"]` {
		t.Errorf("retry submitted %v", calls[len(calls)-1].Params.Get("InstanceIds"))
	}
}

// TestLargeReportCSV: a 300-ID request: each job's report keeps its
// summary and failures, and its full table goes up as a CSV in the thread
// whose rows match the job.
func TestLargeReportCSV(t *testing.T) {
	h := newHarness(t, nil)
	h.hbr.SetInstance("i-000", hbrtest.Instance{UpgradeStatus: "UPGRADE_FAILED", ErrorCode: "UPGRADE_FAILED"})
	h.start()
	ids := make([]string, 300)
	for i := range ids {
		ids[i] = fmt.Sprintf("i-%03d", i)
	}
	h.command(requester, strings.Join(ids, ","))
	card := h.awaitCard(1)
	h.click(approver, card, "hbr_upgrade_approve")
	finals := h.awaitReports(card, "final", 3)
	h.awaitUnscheduled()
	files := h.slack.Files()
	if len(files) != 3 {
		t.Fatalf("%d CSV files, want one per job (3)", len(files))
	}
	rows := map[string]string{}
	for _, f := range files {
		if f.ThreadTS != card.TS || !strings.HasSuffix(f.Name, ".csv") {
			t.Errorf("file %s in thread %q", f.Name, f.ThreadTS)
		}
		recs, err := csv.NewReader(bytes.NewReader(f.Content)).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		for _, rec := range recs[1:] {
			rows[rec[0]] = rec[1]
		}
	}
	for _, id := range ids {
		want := "upgraded"
		if id == "i-000" {
			want = "failed"
		}
		if rows[id] != want {
			t.Errorf("CSV row of %s: %q, want %q", id, rows[id], want)
		}
	}
	for _, f := range finals {
		if strings.Contains(text(f), "i-150") {
			t.Errorf("a large report lists upgraded IDs instead of the CSV:\n%s", text(f))
		}
	}
}
