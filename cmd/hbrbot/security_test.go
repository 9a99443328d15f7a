package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/hbrbot/hbrbot/hbrtest"
	"github.com/hbrbot/hbrbot/internal/botproc"
	"github.com/hbrbot/hbrbot/slacktest"
)

// outsider is a Slack Connect member of another organisation.
const outsider = "U0EVE"

// TestOtherOrganisationIsRefused: a command and an approve click from a
// member of another organisation are refused privately and change nothing:
// no card, no look-up, no submission.
func TestOtherOrganisationIsRefused(t *testing.T) {
	h := newHarness(t, nil)
	h.slack.SetUser(slacktest.User{ID: outsider, TeamID: "T0OTHER"})
	h.start()

	env := h.command(outsider, "i-foreign1")
	if got := h.ackPayload(env); !strings.Contains(got, "own organisation") || !strings.Contains(got, "T0OTHER") {
		t.Errorf("a foreign command acked with %q, want a refusal naming the organisation", got)
	}
	h.command(requester, "i-home1")
	card := h.awaitCard(1)
	h.click(outsider, card, "hbr_upgrade_approve")
	h.awaitTold(outsider, "own organisation")
	h.click(approver, card, "hbr_upgrade_cancel")
	if _, err := h.slack.WaitCall(h.ctx(), "chat.update", func(c slacktest.Call) bool {
		return strings.Contains(c.Form.Get("blocks"), "Cancelled by")
	}); err != nil {
		t.Fatalf("card never cancelled: %v", err)
	}
	if n := len(h.hbr.Calls("UpgradeBackupClients")); n != 0 {
		t.Errorf("%d UpgradeBackupClients calls, want 0", n)
	}
	for _, c := range h.hbr.Calls("DescribeBackupClients") {
		if strings.Contains(c.Params.Encode(), "foreign") {
			t.Errorf("the foreign command was looked up: %v", c.Params)
		}
	}
	for _, m := range h.slack.Messages(channel) {
		if strings.Contains(text(m), "i-foreign1") {
			t.Errorf("the foreign command reached the channel: %s", text(m))
		}
	}
}

// TestAllowedTeamActs: HBRBOT_ALLOWED_TEAMS lets another team's members act.
func TestAllowedTeamActs(t *testing.T) {
	h := newHarness(t, map[string]string{"HBRBOT_ALLOWED_TEAMS": "T0PARTNER"})
	h.slack.SetUser(slacktest.User{ID: "U0PAT", TeamID: "T0PARTNER"})
	h.start()
	h.command("U0PAT", "i-partner1")
	card := h.awaitCard(1)
	h.click(approver, card, "hbr_upgrade_approve")
	h.awaitReports(card, "final", 1)
}

// TestGuestsAndSharedChannels: a guest, and a channel shared with another
// organisation, are refused unless listed by ID.
func TestGuestsAndSharedChannels(t *testing.T) {
	h := newHarness(t, map[string]string{"HBRBOT_APPROVERS": approver})
	h.slack.SetUser(slacktest.User{ID: "U0GUEST", IsRestricted: true})
	h.slack.SetChannel(slacktest.Channel{ID: "C0SHARED", IsExtShared: true})
	h.start()
	if got := h.ackPayload(h.command("U0GUEST", "i-guest1")); !strings.Contains(got, "Guests") {
		t.Errorf("a guest's command acked with %q, want a refusal", got)
	}
	env := h.slack.SendSlashCommand(slacktest.SlashCommand{ChannelID: "C0SHARED", UserID: requester, Text: "i-shared1"})
	if got := h.ackPayload(env); !strings.Contains(got, "shared with another organisation") {
		t.Errorf("a command in a shared channel acked with %q, want a refusal", got)
	}
	if n := len(h.hbr.Calls("DescribeBackupClients")); n != 0 {
		t.Errorf("%d look-ups for refused commands, want 0", n)
	}
}

// TestClickBoundToItsCard: an approve click whose channel or message is not
// the card's is refused.
func TestClickBoundToItsCard(t *testing.T) {
	h := newHarness(t, nil)
	h.start()
	h.command(requester, "i-bound1")
	card := h.awaitCard(1)
	requestID := requestID(t, card)
	other := h.slack.PostAs(requester, channel, "", "another message", nil)
	h.slack.SendBlockAction(slacktest.BlockAction{ChannelID: channel, MessageTS: other, UserID: approver,
		ActionID: "hbr_upgrade_approve", Value: requestID})
	h.awaitTold(approver, "not on this request's approval card")
	h.slack.SendBlockAction(slacktest.BlockAction{ChannelID: "C0ELSEWHERE", MessageTS: card.TS, UserID: approver,
		ActionID: "hbr_upgrade_approve", Value: requestID})
	if n := len(h.hbr.Calls("UpgradeBackupClients")); n != 0 {
		t.Errorf("%d submissions from forged clicks, want 0", n)
	}
	h.click(approver, card, "hbr_upgrade_approve")
	h.awaitReports(card, "final", 1)
}

// liveMarkup is mrkdwn Slack would act on.
var liveMarkup = regexp.MustCompile(`<!channel>|<!here>|<https://evil\.example`)

// slackTexts is every text the bot sent Slack: each call's text and the
// texts of its blocks, decoded.
func slackTexts(srv *slacktest.Server) []string {
	var out []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case string:
			out = append(out, v)
		case map[string]any:
			for _, c := range v {
				walk(c)
			}
		case []any:
			for _, c := range v {
				walk(c)
			}
		}
	}
	for _, m := range []string{"chat.postMessage", "chat.update", "chat.postEphemeral", "response_url", "files.completeUploadExternal"} {
		for _, c := range srv.Calls(m) {
			out = append(out, c.Form.Get("text"), c.Form.Get("files"))
			var blocks any
			if json.Unmarshal([]byte(c.Form.Get("blocks")), &blocks) == nil {
				walk(blocks)
			}
			walk(c.JSON)
		}
	}
	return out
}

// TestHBRTextIsInert: HBR's instance names and error messages holding
// mentions and links reach Slack as plain text, in every card, report and
// reply, their notification text included.
func TestHBRTextIsInert(t *testing.T) {
	h := newHarness(t, nil)
	h.hbr.SetInstance("i-evil1", hbrtest.Instance{Name: "<!channel> db-1"})
	h.hbr.SetInstance("i-evil2", hbrtest.Instance{Name: "<https://evil.example/x|click me>"})
	h.hbr.FailNextWith("UpgradeBackupClients", 1, 403, "Forbidden.RAM", "<!here> you are not authorized <https://evil.example/y|fix>")
	h.start()
	h.command(requester, "i-evil1 i-evil2")
	card := h.awaitCard(1)
	if !strings.Contains(text(card), "db-1") {
		t.Fatalf("the card does not show the instance names at all:\n%s", text(card))
	}
	h.click(approver, card, "hbr_upgrade_approve")
	h.awaitReports(card, "final", 1)
	texts := slackTexts(h.slack)
	for _, s := range texts {
		if m := liveMarkup.FindString(s); m != "" {
			t.Errorf("live markup %q reached Slack in %q", m, s)
		}
	}
	if !strings.Contains(strings.Join(texts, "\n"), "&lt;!here&gt;") {
		t.Error("HBR's error message is not shown (escaped) in the report: the test would not see it")
	}
}

// TestSecretsStayOut: with STS credentials whose secret HBR no longer
// accepts, HBR answers SignatureDoesNotMatch echoing its string to sign,
// SecurityToken included. With debug logging on, the token appears in no
// log line, Slack call, audit record or Redis value.
func TestSecretsStayOut(t *testing.T) {
	const token = "CAIS.sts-token-e2e-0123456789abcdef"
	h := newHarness(t, map[string]string{
		"ALIBABA_CLOUD_ACCESS_KEY_ID": "STS.NKeyE2E", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "rotated-away-secret",
		"ALIBABA_CLOUD_SECURITY_TOKEN": token, "HBRBOT_LOG_LEVEL": "debug",
	})
	h.hbr.Close()
	h.hbr = hbrtest.NewServer(hbrtest.WithCredentials("STS.NKeyE2E", "current-secret"), hbrtest.WithSecurityToken(token))
	t.Cleanup(h.hbr.Close)
	h.env["HBR_ENDPOINT"] = h.hbr.URL()
	h.start()
	h.command(requester, "i-sts1")
	card := h.awaitCard(1)
	h.click(approver, card, "hbr_upgrade_approve")
	final := h.awaitReports(card, "final", 1)
	if !strings.Contains(text(final[0]), "SignatureDoesNotMatch") {
		t.Fatalf("the report does not say the signature was refused:\n%s", text(final[0]))
	}
	h.awaitAudit("job_finished", requestID(t, card))

	where := map[string]string{"logs": h.logs.String(), "slack": strings.Join(slackTexts(h.slack), "\n")}
	for _, m := range []string{"auth.test", "users.info", "conversations.info", "chat.postMessage", "chat.update",
		"chat.postEphemeral", "conversations.replies", "files.getUploadURLExternal", "files.completeUploadExternal"} {
		for _, c := range h.slack.Calls(m) {
			where["slack form "+m] += c.Form.Encode()
		}
	}
	where["redis"] = dumpRedis(t, h)
	for name, s := range where {
		for _, secret := range []string{token, "rotated-away-secret"} {
			if strings.Contains(s, secret) {
				t.Errorf("%q appears in %s", secret, name)
			}
		}
	}
	if !strings.Contains(where["logs"], `"level":"DEBUG"`) {
		t.Error("no debug line in the logs: the test would not see a leak there")
	}
}

// dumpRedis is every value in the test's Redis, as text.
func dumpRedis(t *testing.T, h *harness) string {
	t.Helper()
	ctx, rdb := h.ctx(), h.redis.Client()
	var b strings.Builder
	iter := rdb.Scan(ctx, 0, "*", 1000).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		var v any
		var err error
		switch typ, _ := rdb.Type(ctx, k).Result(); typ {
		case "string":
			v, err = rdb.Get(ctx, k).Result()
		case "hash":
			v, err = rdb.HGetAll(ctx, k).Result()
		case "zset":
			v, err = rdb.ZRangeWithScores(ctx, k, 0, -1).Result()
		case "stream":
			v, err = rdb.XRange(ctx, k, "-", "+").Result()
		case "set":
			v, err = rdb.SMembers(ctx, k).Result()
		case "list":
			v, err = rdb.LRange(ctx, k, 0, -1).Result()
		}
		if err != nil {
			t.Fatalf("read %s: %v", k, err)
		}
		raw, _ := json.Marshal(v)
		b.WriteString(k + " " + string(raw) + "\n")
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestSentinelPasswordStaysOut: go-redis takes a Sentinel master's password
// only as a URL query value; the bot never logs it, even when it cannot
// reach the Sentinels.
func TestSentinelPasswordStaysOut(t *testing.T) {
	const pw = "sentinel-master-pw-0123456789"
	h := newHarness(t, map[string]string{"REDIS_MODE": "sentinel",
		"REDIS_URL": "redis://:user-pw-0123456789@127.0.0.1:1/0?master_name=m&password=" + pw})
	ctx, cancel := context.WithCancel(context.Background())
	exited := make(chan struct{})
	var runErr error
	go func() {
		defer close(exited)
		runErr = run(ctx, []string{"hbrbot"}, func(k string) string { return h.env[k] }, io.Discard, h.logs)
	}()
	if err := botproc.AwaitReadyz(h.ctx(), h.env["HBRBOT_HTTP_ADDR"], http.StatusServiceUnavailable, exited); err != nil {
		cancel()
		<-exited
		t.Fatalf("%v; run: %v\nlogs:\n%s", err, runErr, h.logs)
	}
	cancel()
	<-exited
	logs := h.logs.String()
	for _, secret := range []string{pw, "user-pw-0123456789"} {
		if strings.Contains(logs, secret) {
			t.Errorf("%q appears in the logs:\n%s", secret, logs)
		}
	}
	if !strings.Contains(logs, "master_name=m") {
		t.Errorf("the Redis URL is not logged at all: the test would not see a leak\n%s", logs)
	}
}

// TestFloodFromOneUser: one user's burst of commands is cut at the limit,
// told when to try again, and another user's card and look-up go through.
func TestFloodFromOneUser(t *testing.T) {
	h := newHarness(t, map[string]string{"HBRBOT_USER_COMMANDS": "3", "HBRBOT_USER_PENDING": "50"})
	h.hbr.SetInstance("i-calm1", hbrtest.Instance{})
	h.start()
	for i := range 8 {
		h.command(requester, "i-flood"+string(rune('a'+i)))
	}
	h.awaitTold(requester, "Try again in")
	h.command("U0CAROL", "i-calm1")
	if _, err := h.slack.WaitCall(h.ctx(), "chat.postMessage", func(c slacktest.Call) bool {
		return c.Form.Get("thread_ts") == "" && strings.Contains(c.Form.Get("blocks"), "i-calm1") && strings.Contains(c.Form.Get("blocks"), "Will upgrade")
	}); err != nil {
		t.Fatalf("the other user's card, with its look-up, never came: %v\nlogs:\n%s", err, h.logs)
	}
	// Wait for every command to be answered: refused ones by their notice.
	if _, err := h.slack.WaitCalls(h.ctx(), "response_url", 5, func(c slacktest.Call) bool {
		s, _ := c.JSON["text"].(string)
		return strings.Contains(s, "Try again in")
	}); err != nil {
		t.Fatalf("not every flooding command was refused: %v", err)
	}
	floodCard := func(c slacktest.Call) bool {
		return c.Form.Get("thread_ts") == "" && strings.Contains(c.Form.Get("blocks"), "i-flood")
	}
	if _, err := h.slack.WaitCalls(h.ctx(), "chat.postMessage", 3, floodCard); err != nil {
		t.Fatalf("the flooding user's first commands got no cards: %v", err)
	}
	cards := 0
	for _, c := range h.slack.Calls("chat.postMessage") {
		if c.Form.Get("thread_ts") == "" && strings.Contains(c.Form.Get("blocks"), "i-flood") {
			cards++
		}
	}
	if cards != 3 {
		t.Errorf("%d cards from the flooding user, want 3", cards)
	}
}
