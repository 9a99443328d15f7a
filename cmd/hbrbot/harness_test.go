package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/hbrbot/hbrbot"
	"github.com/hbrbot/hbrbot/hbrtest"
	"github.com/hbrbot/hbrbot/internal/botproc"
	"github.com/hbrbot/hbrbot/internal/redistest"
	"github.com/hbrbot/hbrbot/redisstore"
	"github.com/hbrbot/hbrbot/slacktest"
)

// harness runs the whole bot through run() against the fake Slack, the
// fake HBR and a real Redis.
type harness struct {
	t     *testing.T
	slack *slacktest.Server
	hbr   *hbrtest.Server
	redis *redistest.Server
	env   map[string]string
	logs  *syncBuffer
}

const (
	channel   = "C0OPS"
	requester = "U0ALICE"
	approver  = "U0BOB"
)

// waitFor bounds every await in these tests: far above what they need, so
// a slow CI machine does not fail them, and a hang still ends.
const waitFor = 30 * time.Second

func newHarness(t *testing.T, env map[string]string) *harness {
	t.Helper()
	h := &harness{
		t:     t,
		slack: slacktest.NewServer(),
		hbr:   hbrtest.NewServer(),
		redis: redistest.Start(t),
		logs:  &syncBuffer{},
	}
	t.Cleanup(h.slack.Close)
	t.Cleanup(h.hbr.Close)
	h.env = map[string]string{
		"SLACK_APP_TOKEN":                 "xapp-test",
		"SLACK_BOT_TOKEN":                 "xoxb-test",
		"SLACK_API_URL":                   h.slack.APIURL(),
		"ALIBABA_CLOUD_ACCESS_KEY_ID":     "testid",
		"ALIBABA_CLOUD_ACCESS_KEY_SECRET": "testsecret",
		"ALIBABA_CLOUD_REGION_ID":         "cn-hangzhou",
		"HBR_ENDPOINT":                    h.hbr.URL(),
		"REDIS_URL":                       h.redis.URL(),
		"HBRBOT_POLL_INTERVAL":            "100ms",
		"HBRBOT_HBR_RATE_LIMIT":           "6000",                                                                   // tests poll fast; the limit has its own tests
		"HBRBOT_HBR_RATE_LIMITS":          "DescribeTask=6000,UpgradeBackupClients=6000,DescribeBackupClients=6000", // TestQuota sets its own
		// One test user sends most commands: the flood limits have their own test.
		"HBRBOT_USER_COMMANDS": "10000", "HBRBOT_CHANNEL_COMMANDS": "10000", "HBRBOT_USER_PENDING": "10000",
		"HBRBOT_HTTP_ADDR": freeAddr(t),
	}
	for k, v := range env {
		h.env[k] = v
	}
	return h
}

// built is the bot's binary, built once for the tests that run it as a
// child process (botBinary) and removed after them (TestMain).
var built struct {
	once sync.Once
	dir  string
	bin  string
	err  error
}

// botBinary builds the hbrbot binary (with the race detector when the
// tests have it) the first time it is asked for, and returns its path.
func botBinary(t *testing.T) string {
	t.Helper()
	built.once.Do(func() {
		began := time.Now()
		if built.dir, built.err = os.MkdirTemp("", "hbrbot-test-bin-"); built.err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		built.bin, built.err = botproc.Build(ctx, built.dir)
		t.Logf("built %s (race detector: %v) in %v", built.bin, botproc.RaceEnabled(), time.Since(began).Round(time.Millisecond))
	})
	if built.err != nil {
		t.Fatalf("build the bot: %v", built.err)
	}
	return built.bin
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// freeAddr is a free loopback address for a bot's HBRBOT_HTTP_ADDR.
func freeAddr(t *testing.T) string {
	t.Helper()
	addr, err := botproc.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

func (h *harness) ctx() context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	h.t.Cleanup(cancel)
	return ctx
}

// instance is one running instance of run().
type instance struct {
	addr   string // its HBRBOT_HTTP_ADDR
	cancel context.CancelFunc
	exited chan struct{} // closed when run returned; err is set then
	err    error
	once   sync.Once
}

// start runs the bot with the harness's environment and returns once it
// is ready.
func (h *harness) start() *instance {
	h.t.Helper()
	return h.startRun(h.env, h.logs)
}

// startRun runs the bot with env, logging to logs, and returns once it is
// connected to Slack and ready (/readyz).
func (h *harness) startRun(env map[string]string, logs io.Writer) *instance {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	b := &instance{addr: env["HBRBOT_HTTP_ADDR"], cancel: cancel, exited: make(chan struct{})}
	conns := h.slack.Connections()
	go func() {
		defer close(b.exited)
		b.err = run(ctx, []string{"hbrbot"}, func(k string) string { return env[k] }, io.Discard, logs)
	}()
	h.t.Cleanup(func() { b.stop(h.t) })
	if err := h.slack.WaitConnections(h.ctx(), conns+1); err != nil {
		h.t.Fatalf("bot did not connect to Slack: %v\nlogs:\n%s", err, h.logs)
	}
	h.awaitReadyz(b, http.StatusOK)
	return b
}

// awaitReadyz waits until b's /readyz answers status: readiness is the
// bot's own signal.
func (h *harness) awaitReadyz(b *instance, status int) {
	h.t.Helper()
	if err := botproc.AwaitReadyz(h.ctx(), b.addr, status, b.exited); err != nil {
		h.t.Fatalf("%v (%s)\nlogs:\n%s", err, b.state(), h.logs)
	}
}

// state says whether run returned, and what.
func (b *instance) state() string {
	select {
	case <-b.exited:
		return fmt.Sprintf("run returned %v", b.err)
	default:
		return "running"
	}
}

// stop cancels the bot and waits for run to return (idempotent): once it
// has, every envelope it acked has been acted on.
func (b *instance) stop(t *testing.T) {
	t.Helper()
	b.once.Do(func() {
		b.cancel()
		select {
		case <-b.exited:
			if b.err != nil {
				t.Errorf("run returned %v", b.err)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("run did not return within 15s of its context ending")
		}
	})
}

// awaitMetrics waits until b's /metrics has every series of want at its
// value.
func (h *harness) awaitMetrics(b *instance, want botproc.Metrics) {
	h.t.Helper()
	if _, err := botproc.AwaitMetrics(h.ctx(), b.addr, want); err != nil {
		h.t.Fatalf("%v\nlogs:\n%s", err, h.logs)
	}
}

// command types a slash command and returns its envelope ID.
func (h *harness) command(user, text string) string {
	return h.slack.SendSlashCommand(slacktest.SlashCommand{ChannelID: channel, UserID: user, Text: text})
}

// awaitCard waits for the nth approval card (1-based) in the channel.
func (h *harness) awaitCard(n int) slacktest.Message {
	h.t.Helper()
	_, err := h.slack.WaitCalls(h.ctx(), "chat.postMessage", n, func(c slacktest.Call) bool {
		return c.Form.Get("thread_ts") == "" && c.Error == ""
	})
	if err != nil {
		h.t.Fatalf("no approval card: %v\nlogs:\n%s", err, h.logs)
	}
	var cards []slacktest.Message
	for _, m := range h.slack.Messages(channel) {
		if m.ThreadTS == "" && !m.Ephemeral {
			cards = append(cards, m)
		}
	}
	return cards[n-1]
}

func (h *harness) click(user string, card slacktest.Message, action string) string {
	return h.slack.SendBlockAction(slacktest.BlockAction{ChannelID: channel, MessageTS: card.TS, UserID: user, ActionID: action})
}

// reportsOf lists the thread replies of kind ("started"/"final") posted
// under card.
func (h *harness) reportsOf(card slacktest.Message, kind string) []slacktest.Message {
	var out []slacktest.Message
	for _, m := range h.slack.Thread(channel, card.TS) {
		var md struct {
			EventType    string            `json:"event_type"`
			EventPayload map[string]string `json:"event_payload"`
		}
		if json.Unmarshal(m.Metadata, &md) == nil && md.EventType == "hbrbot_report" && md.EventPayload["kind"] == kind {
			out = append(out, m)
		}
	}
	return out
}

// awaitReports waits until n replies of kind are in card's thread.
func (h *harness) awaitReports(card slacktest.Message, kind string, n int) []slacktest.Message {
	h.t.Helper()
	_, err := h.slack.WaitCalls(h.ctx(), "chat.postMessage", n, func(c slacktest.Call) bool {
		return c.Form.Get("thread_ts") == card.TS && strings.Contains(c.Form.Get("metadata"), `"kind":"`+kind+`"`) && c.Error == ""
	})
	if err != nil {
		h.t.Fatalf("waiting for %d %s reports: %v\nlogs:\n%s", n, kind, err, h.logs)
	}
	return h.reportsOf(card, kind)
}

// awaitTold waits for a private message to user containing text.
func (h *harness) awaitTold(user, text string) {
	h.t.Helper()
	_, err := h.slack.WaitCall(h.ctx(), "response_url", func(c slacktest.Call) bool {
		s, _ := c.JSON["text"].(string)
		return strings.Contains(s, text)
	})
	if err != nil {
		var got []string
		for _, c := range h.slack.Calls("response_url") {
			got = append(got, fmt.Sprint(c.JSON["text"]))
		}
		h.t.Fatalf("%s was not told %q: %v; told: %q\nlogs:\n%s", user, text, err, got, h.logs)
	}
}

// ackPayload waits for an envelope's ack and returns the text it carried.
func (h *harness) ackPayload(envelopeID string) string {
	h.t.Helper()
	ack, err := h.slack.WaitAck(h.ctx(), envelopeID)
	if err != nil {
		h.t.Fatalf("envelope %s not acked: %v", envelopeID, err)
	}
	var p struct {
		Text string `json:"text"`
	}
	json.Unmarshal(ack.Payload, &p)
	return p.Text
}

// text is everything a message says: its text and its blocks.
func text(m slacktest.Message) string { return m.Text + "\n" + string(m.Blocks) }

// awaitAudit waits until the audit stream holds a record of event for
// requestID (XREAD BLOCK: an event, not a poll).
func (h *harness) awaitAudit(event, requestID string) {
	h.t.Helper()
	ctx := h.ctx()
	rdb := h.redis.Client()
	last := "0"
	for {
		streams, err := rdb.XRead(ctx, &redis.XReadArgs{Streams: []string{redisstore.Prefix + "audit", last}, Block: time.Second}).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			h.t.Fatalf("no audit record %s of %s: %v\nlogs:\n%s", event, requestID, err, h.logs)
		}
		for _, st := range streams {
			for _, m := range st.Messages {
				last = m.ID
				var rec hbrbot.AuditRecord
				raw, _ := m.Values["record"].(string)
				if json.Unmarshal([]byte(raw), &rec) == nil && rec.Event == event && rec.RequestID == requestID {
					return
				}
			}
		}
	}
}

// syncBuffer collects the bot's logs, for failure messages and the
// secrets check: tests wait on events (Slack, HBR, the audit stream,
// metrics), never on a log line.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.b.String()
	if len(out) > 20000 {
		out = "…" + out[len(out)-20000:]
	}
	return out
}

// unreported lists the ids that neither the final reports given nor any
// CSV table (a large job's, which lists every ID) names.
func unreported(srv *slacktest.Server, finals []slacktest.Message, ids []string) []string {
	var all strings.Builder
	for _, f := range srv.Files() {
		all.Write(f.Content)
	}
	for _, m := range finals {
		all.WriteString(text(m))
	}
	var missing []string
	for _, id := range ids {
		if !strings.Contains(all.String(), id) {
			missing = append(missing, id)
		}
	}
	return missing
}
