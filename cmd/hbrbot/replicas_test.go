package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/hbrbot/hbrbot/hbrtest"
	"github.com/hbrbot/hbrbot/internal/botproc"
	"github.com/hbrbot/hbrbot/slacktest"
)

// TestReplicas: N bots share one Redis and one Slack app. Slack hands the
// envelopes of 100 commands, their approvals, second clicks and
// redeliveries to whichever replica's socket is next; the replicas then
// share the jobs through the Redis schedule. Every batch is submitted
// once, reported started once and final once, and a job is never polled
// twice within one poll interval.
func TestReplicas(t *testing.T) {
	for _, n := range []int{2, 3} {
		t.Run(fmt.Sprintf("%d replicas", n), func(t *testing.T) { testReplicas(t, n) })
	}
}

// replicaRequest is one command of the replica and soak tests.
type replicaRequest struct {
	ids     []string // as typed, the first always an instance ID
	id      string   // the bot's request ID, read from the card
	card    slacktest.Message
	batches int
}

// batchKey is the key the bot tags a batch's reports with.
func (r *replicaRequest) batchKey(i int) string { return fmt.Sprintf("%s.%d", r.id, i) }

func testReplicas(t *testing.T, replicas int) {
	const (
		commands = 100
		interval = 100 * time.Millisecond
		minGap   = 50 * time.Millisecond // an interval, less scheduling tolerance
	)
	h := newHarness(t, map[string]string{
		"HBRBOT_POLL_INTERVAL":  interval.String(),
		"HBRBOT_LEASE":          "5s",
		"HBRBOT_HBR_RATE_LIMIT": "6000",
		"HBRBOT_USER_COMMANDS":  "10000", "HBRBOT_CHANNEL_COMMANDS": "10000", "HBRBOT_USER_PENDING": "10000",
	})
	// Five polls a job, so the replicas have polls to share.
	h.hbr.SetDefaultScript(
		hbrtest.Step{Progress: 0, Description: hbrtest.TaskCreated},
		hbrtest.Step{Progress: 25, Description: hbrtest.TaskCreated},
		hbrtest.Step{Progress: 50, Description: hbrtest.TaskCreated},
		hbrtest.Step{Progress: 75, Description: hbrtest.TaskCreated},
		hbrtest.Step{Progress: 100, Description: hbrtest.TaskCompleted},
	)
	var reps []*instance
	for range replicas {
		reps = append(reps, h.startReplica())
	}
	if err := h.slack.WaitConnections(h.ctx(), replicas); err != nil {
		t.Fatal(err)
	}

	// 100 commands: 1-3 IDs each, every 20th with 150 IDs (two jobs);
	// instance and client IDs mixed. Every ID is unique to its command.
	reqs := make([]*replicaRequest, commands)
	totalBatches := 0
	for i := range reqs {
		n := 1 + i%3
		if i%20 == 7 {
			n = 150
		}
		r := &replicaRequest{batches: (n + 99) / 100}
		for k := range n {
			prefix := "i"
			if k%3 == 2 {
				prefix = "c"
			}
			r.ids = append(r.ids, fmt.Sprintf("%s-r%03dn%03d", prefix, i, k))
		}
		reqs[i] = r
		totalBatches += r.batches
	}
	for i, r := range reqs {
		env := h.command(requester, strings.Join(r.ids, " "))
		if i%25 == 1 {
			h.slack.Redeliver(env) // a lost ack: the same command twice
		}
	}
	if _, err := h.slack.WaitCalls(h.ctx(), "chat.postMessage", commands, isCard); err != nil {
		t.Fatalf("cards: %v\nlogs:\n%s", err, h.logs)
	}
	mapCards(t, h.slack, reqs)

	// Approve every card; 20 also get a second approval by another user,
	// 10 approval envelopes are delivered twice.
	doubles := 0
	for i, r := range reqs {
		env := h.slack.SendBlockAction(slacktest.BlockAction{ChannelID: channel, MessageTS: r.card.TS,
			UserID: approver, ActionID: "hbr_upgrade_approve", Value: r.id})
		if i%5 == 0 {
			h.slack.SendBlockAction(slacktest.BlockAction{ChannelID: channel, MessageTS: r.card.TS,
				UserID: "U0CAROL", ActionID: "hbr_upgrade_approve", Value: r.id})
			doubles++
		}
		if i%10 == 3 {
			h.slack.Redeliver(env)
		}
	}

	if _, err := h.slack.WaitCalls(h.ctx(), "chat.postMessage", totalBatches, isReport("final")); err != nil {
		t.Fatalf("final reports: %v\nlogs:\n%s", err, h.logs)
	}
	// Whichever click lost is told so, once per double click.
	if _, err := h.slack.WaitCalls(h.ctx(), "response_url", doubles, func(c slacktest.Call) bool {
		s, _ := c.JSON["text"].(string)
		return strings.Contains(s, "already approved by <@")
	}); err != nil {
		t.Errorf("second approvers not told: %v", err)
	}
	h.awaitUnscheduled() // nothing left that could post or call again

	// Exactly one card per command.
	if n := len(cards(h.slack)); n != commands {
		t.Errorf("%d approval cards for %d commands", n, commands)
	}

	// One UpgradeBackupClients per batch, each ID in exactly one.
	calls := h.hbr.Calls("UpgradeBackupClients")
	if len(calls) != totalBatches {
		t.Errorf("UpgradeBackupClients called %d times for %d batches", len(calls), totalBatches)
	}
	submitted := map[string]int{}
	for _, c := range calls {
		for _, id := range callIDs(t, c) {
			submitted[id]++
		}
	}
	for _, r := range reqs {
		for _, id := range r.ids {
			if submitted[id] != 1 {
				t.Errorf("%s submitted %d times, want 1", id, submitted[id])
			}
		}
	}
	if jobs := len(h.hbr.Jobs()); jobs != totalBatches {
		t.Errorf("%d HBR jobs for %d batches", jobs, totalBatches)
	}

	// One started and one final reply per batch, in its request's thread.
	started, finals := threadReports(h.slack)
	for _, r := range reqs {
		for b := range r.batches {
			k := r.batchKey(b)
			for kind, got := range map[string][]slacktest.Message{"started": started[k], "final": finals[k]} {
				if len(got) != 1 {
					t.Errorf("batch %s: %d %s replies, want 1", k, len(got), kind)
				}
				for _, m := range got {
					if m.ThreadTS != r.card.TS {
						t.Errorf("batch %s: %s reply in thread %s, want %s", k, kind, m.ThreadTS, r.card.TS)
					}
				}
			}
			if len(finals[k]) == 1 && !strings.Contains(text(finals[k][0]), "completed") {
				t.Errorf("batch %s: final report:\n%s", k, text(finals[k][0]))
			}
		}
	}
	for _, r := range reqs {
		var ms []slacktest.Message
		for b := range r.batches {
			ms = append(ms, finals[r.batchKey(b)]...)
		}
		for _, id := range unreported(h.slack, ms, r.ids) {
			t.Errorf("request %s: no final report names %s", r.id, id)
		}
	}
	if len(started) != totalBatches || len(finals) != totalBatches {
		t.Errorf("replies for %d/%d batches (started/final), want %d", len(started), len(finals), totalBatches)
	}

	// Every job polled, never twice within one interval: the lease makes
	// the replicas take turns.
	polls := map[string][]time.Time{}
	for _, c := range h.hbr.Calls("DescribeTask") {
		polls[c.Params.Get("TaskId")] = append(polls[c.Params.Get("TaskId")], c.At)
	}
	closest := time.Hour
	for _, j := range h.hbr.Jobs() {
		at := polls[j.TaskID]
		if len(at) < len(j.Script) {
			t.Errorf("job %s polled %d times, want its %d steps", j.TaskID, len(at), len(j.Script))
		}
		sort.Slice(at, func(a, b int) bool { return at[a].Before(at[b]) })
		for i := 1; i < len(at); i++ {
			gap := at[i].Sub(at[i-1])
			closest = min(closest, gap)
			if gap < minGap {
				t.Errorf("job %s polled twice %v apart (interval %v)", j.TaskID, gap, interval)
			}
		}
	}

	// Who did what, from each replica's metrics; not asserted (the split
	// depends on timing).
	var split []string
	for i, r := range reps {
		m, err := botproc.ReadMetrics(h.ctx(), r.addr)
		if err != nil {
			t.Errorf("replica %d: %v", i+1, err)
			continue
		}
		split = append(split, fmt.Sprintf("replica %d: %v submissions, %v final reports", i+1,
			m[`hbrbot_hbr_calls_total{action="UpgradeBackupClients",code=""}`], m.Sum("hbrbot_jobs_finished_total")))
	}
	t.Logf("%d batches; closest polls of one job %v apart; %s", totalBatches, closest, strings.Join(split, "; "))
}

// startReplica runs one more bot sharing the harness's fakes and Redis,
// with its own HBRBOT_HTTP_ADDR, and returns once it is connected to Slack
// and ready.
func (h *harness) startReplica() *instance {
	h.t.Helper()
	env := maps.Clone(h.env)
	env["HBRBOT_HTTP_ADDR"] = freeAddr(h.t)
	return h.startRun(env, h.logs)
}

// isCard matches a successful top-level post: an approval card.
func isCard(c slacktest.Call) bool {
	return c.Form.Get("thread_ts") == "" && c.Error == ""
}

// isReport matches a successful thread reply of kind.
func isReport(kind string) func(slacktest.Call) bool {
	return func(c slacktest.Call) bool {
		return c.Form.Get("thread_ts") != "" && c.Error == "" && strings.Contains(c.Form.Get("metadata"), `"kind":"`+kind+`"`)
	}
}

// cards lists the approval cards in the channel.
func cards(s *slacktest.Server) []slacktest.Message {
	var out []slacktest.Message
	for _, m := range s.Messages(channel) {
		if m.ThreadTS == "" && !m.Ephemeral {
			out = append(out, m)
		}
	}
	return out
}

// mapCards finds each request's card by its first ID and reads the
// request ID from its Approve button.
func mapCards(t *testing.T, s *slacktest.Server, reqs []*replicaRequest) {
	t.Helper()
	all := cards(s)
	for _, r := range reqs {
		for _, c := range all {
			if strings.Contains(text(c), "`"+r.ids[0]+"`") {
				r.card, r.id = c, cardRequestID(c)
				break
			}
		}
		if r.id == "" {
			t.Fatalf("no card (with an Approve button) names %s", r.ids[0])
		}
	}
}

// callIDs lists the instance and client IDs of an UpgradeBackupClients call.
func callIDs(t *testing.T, c hbrtest.Call) []string {
	t.Helper()
	var out []string
	for _, p := range []string{"InstanceIds", "ClientIds"} {
		if v := c.Params.Get(p); v != "" {
			var ids []string
			if err := json.Unmarshal([]byte(v), &ids); err != nil {
				t.Errorf("%s = %q: %v", p, v, err)
			}
			out = append(out, ids...)
		}
	}
	return out
}

// threadReports groups the bot's thread replies by batch key, for each
// kind.
func threadReports(s *slacktest.Server) (started, finals map[string][]slacktest.Message) {
	started, finals = map[string][]slacktest.Message{}, map[string][]slacktest.Message{}
	for _, m := range s.Messages(channel) {
		if m.ThreadTS == "" || m.Ephemeral || m.Deleted {
			continue
		}
		var md struct {
			EventType    string            `json:"event_type"`
			EventPayload map[string]string `json:"event_payload"`
		}
		if json.Unmarshal(m.Metadata, &md) != nil || md.EventType != "hbrbot_report" {
			continue
		}
		k := md.EventPayload["batch"]
		switch md.EventPayload["kind"] {
		case "started":
			started[k] = append(started[k], m)
		case "final":
			finals[k] = append(finals[k], m)
		}
	}
	return started, finals
}
