package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/hbrbot/hbrbot"
	"github.com/hbrbot/hbrbot/slacktest"
)

// TestTwoOfThreeApprovals: each approver counts once; the card shows the
// count; two racing last approvals on two replicas submit once.
func TestTwoOfThreeApprovals(t *testing.T) {
	h := newHarness(t, map[string]string{"HBRBOT_REQUIRED_APPROVALS": "2", "HBRBOT_APPROVERS": "U0BOB,U0CAROL,U0DAVE"})
	h.start()
	h.startReplica() // envelopes alternate between the two
	h.command(requester, "i-aaa")
	card := h.awaitCard(1)
	if !strings.Contains(text(card), "Approvals:* 0 of 2") {
		t.Errorf("card does not show the approvals needed:\n%s", text(card))
	}
	h.click("U0BOB", card, "hbr_upgrade_approve")
	h.awaitTold("U0BOB", "Your approval is recorded (1 of 2)")
	h.click("U0BOB", card, "hbr_upgrade_approve")
	h.awaitTold("U0BOB", "You have already approved this request")
	if _, err := h.slack.WaitCall(h.ctx(), "chat.update", func(c slacktest.Call) bool {
		return strings.Contains(c.Form.Get("blocks"), "1 of 2 (\\u003c@U0BOB\\u003e)")
	}); err != nil {
		t.Errorf("card not updated with the first approval: %v", err)
	}
	if n := len(h.hbr.Calls("UpgradeBackupClients")); n != 0 {
		t.Fatalf("submitted after one of two approvals (%d calls)", n)
	}
	h.click("U0CAROL", card, "hbr_upgrade_approve")
	h.click("U0DAVE", card, "hbr_upgrade_approve")
	h.awaitReports(card, "final", 1)
	h.awaitTold("", "already approved by")
	if n := len(h.hbr.Calls("UpgradeBackupClients")); n != 1 {
		t.Errorf("UpgradeBackupClients called %d times, want 1", n)
	}
	updated, _ := h.slack.Message(channel, card.TS)
	if !strings.Contains(text(updated), "2 of 2") || strings.Contains(string(updated.Blocks), "hbr_upgrade_approve") {
		t.Errorf("card after approval:\n%s", text(updated))
	}
}

const policyYAML = `# test policy
default:
  regions: [cn-hangzhou]
  cross_account: false
channels:
  C0PROD:
    regions: [cn-hangzhou, cn-shanghai]
    cross_account: true
    source_accounts: [1111111111111111]
    required_approvals: 1
`

// TestPolicyFile: commands outside their channel's rules are refused,
// privately, naming the rule.
func TestPolicyFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "policy.yaml")
	os.WriteFile(file, []byte(policyYAML), 0o600)
	h := newHarness(t, map[string]string{"HBRBOT_POLICY_FILE": file})
	h.start()
	for _, tc := range []struct{ channel, text, want string }{
		{"C0OPS", "i-aaa --region cn-beijing", "Region `cn-beijing` is not allowed in this channel"},
		{"C0OPS", "i-aaa --cross-account-user-id 1111111111111111 --cross-account-role r", "Cross-account upgrades are not allowed"},
		{"C0PROD", "i-aaa --cross-account-user-id 2222222222222222 --cross-account-role r", "Source account `2222222222222222` is not allowed"},
	} {
		env := h.slack.SendSlashCommand(slacktest.SlashCommand{ChannelID: tc.channel, UserID: requester, Text: tc.text})
		if got := h.ackPayload(env); !strings.Contains(got, tc.want) {
			t.Errorf("%s %q: ack %q, want %q", tc.channel, tc.text, got, tc.want)
		}
	}
	// Allowed by the channel's own entry.
	h.slack.SendSlashCommand(slacktest.SlashCommand{ChannelID: "C0PROD", UserID: requester,
		Text: "i-aaa --region cn-shanghai --cross-account-user-id 1111111111111111 --cross-account-role hbrcrossrole"})
	if _, err := h.slack.WaitCall(h.ctx(), "chat.postMessage", func(c slacktest.Call) bool { return c.Form.Get("channel") == "C0PROD" }); err != nil {
		t.Fatalf("allowed command got no card: %v", err)
	}
	if n := len(h.slack.Calls("chat.postMessage")); n != 1 {
		t.Errorf("%d cards posted, want 1 (refused commands post nothing)", n)
	}
}

// TestPolicyFileInvalid: a bad policy file stops the bot at start, naming
// the line.
func TestPolicyFileInvalid(t *testing.T) {
	file := filepath.Join(t.TempDir(), "policy.yaml")
	os.WriteFile(file, []byte("default:\n  regions: [cn-hangzhou]\n  aprovers: [U0BOB]\nchannels:\n  C0X:\n    approvers: [bob]\n"), 0o600)
	h := newHarness(t, map[string]string{"HBRBOT_POLICY_FILE": file})
	err := run(context.Background(), []string{"hbrbot"}, func(k string) string { return h.env[k] }, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "line 3") || !strings.Contains(err.Error(), "aprovers") {
		t.Errorf("run = %v, want an error naming line 3's unknown key", err)
	}
	os.WriteFile(file, []byte("channels:\n  C0X:\n    approvers: [bob]\n"), 0o600)
	err = run(context.Background(), []string{"hbrbot"}, func(k string) string { return h.env[k] }, &bytes.Buffer{}, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), "policy.yaml:3") || !strings.Contains(err.Error(), `"bob"`) {
		t.Errorf("run = %v, want an error naming line 3's bad ID", err)
	}
}

// TestDryRun: the whole flow runs, approvals included, without one
// UpgradeBackupClients call; the card and reports say so first.
func TestDryRun(t *testing.T) {
	h := newHarness(t, nil)
	h.start()
	h.command(requester, "i-aaa c-bbb --dry-run")
	card := h.awaitCard(1)
	h.click(approver, card, "hbr_upgrade_approve")
	final := h.awaitReports(card, "final", 1)[0]
	for _, m := range []slacktest.Message{card, final} {
		var blocks []struct {
			Text struct{ Text string } `json:"text"`
		}
		json.Unmarshal(m.Blocks, &blocks)
		if len(blocks) == 0 || !strings.Contains(blocks[0].Text.Text, "DRY RUN") {
			t.Errorf("first line is not DRY RUN:\n%s", text(m))
		}
	}
	if !strings.Contains(text(final), "2 would be upgraded") {
		t.Errorf("final report:\n%s", text(final))
	}
	if n := len(h.hbr.Calls("UpgradeBackupClients")) + len(h.hbr.Calls("DescribeTask")); n != 0 {
		t.Errorf("%d job calls to HBR in a dry run, want 0", n)
	}
}

// TestAuditTrail: one request's story, in order, as `hbrbot audit` prints
// it; and no secret anywhere.
func TestAuditTrail(t *testing.T) {
	h := newHarness(t, map[string]string{"HBRBOT_REQUIRED_APPROVALS": "2"})
	h.start()
	h.command(requester, "i-bad --region cn-nowhere-1 --cross-account-user-id 1")
	h.command(requester, "i-aaa i-bbb")
	card := h.awaitCard(1)
	id := requestID(t, card)
	// The story has an order only if the steps do: no person clicks within
	// the millisecond the card appears, nor twice in one.
	h.awaitAudit(hbrbot.AuditRequestPosted, id)
	h.click(approver, card, "hbr_upgrade_approve")
	h.awaitAudit(hbrbot.AuditApprovalAdded, id)
	h.click("U0CAROL", card, "hbr_upgrade_approve")
	h.awaitReports(card, "final", 1)
	h.awaitUnscheduled()

	var out, errOut bytes.Buffer
	if err := run(context.Background(), []string{"hbrbot", "audit", "-since", "1h", "-format", "jsonl"}, func(k string) string { return h.env[k] }, &out, &errOut); err != nil {
		t.Fatalf("hbrbot audit: %v %s", err, errOut.String())
	}
	var story []string
	refused := false
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		var rec hbrbot.AuditRecord
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("audit line %q: %v", line, err)
		}
		if rec.Event == hbrbot.AuditCommandRefused && rec.Actor == requester {
			refused = true
		}
		if rec.RequestID != id {
			continue
		}
		step := rec.Event
		if a := rec.Fields["action"]; a != "" && rec.Event == hbrbot.AuditHBRCall {
			step += ":" + a
		}
		if k := rec.Fields["kind"]; k != "" {
			step += ":" + k
		}
		if len(story) == 0 || story[len(story)-1] != step { // polls repeat
			story = append(story, step)
		}
	}
	want := []string{"command_accepted", "request_posted", "approval_recorded", "request_decided",
		"hbr_call:UpgradeBackupClients", "report_posted:started", "hbr_call:DescribeTask", "report_posted:final", "job_finished"}
	if strings.Join(story, " ") != strings.Join(want, " ") {
		t.Errorf("audit story of %s:\n got %v\nwant %v", id, story, want)
	}
	if !refused {
		t.Error("the refused command is not in the audit trail")
	}

	var csvOut bytes.Buffer
	if err := run(context.Background(), []string{"hbrbot", "audit", "-format", "csv", "-request", id}, func(k string) string { return h.env[k] }, &csvOut, &errOut); err != nil {
		t.Fatalf("hbrbot audit -format csv: %v", err)
	}
	if lines := strings.Count(csvOut.String(), "\n"); lines < len(want)+1 || !strings.HasPrefix(csvOut.String(), "time,event,request_id") {
		t.Errorf("csv audit:\n%s", csvOut.String())
	}
	if testing.Verbose() {
		t.Logf("hbrbot audit -format csv -request %s:\n%s", id, csvOut.String())
	}

	// Secrets appear nowhere: logs, Slack, the audit stream.
	everything := h.logs.String() + out.String() + csvOut.String()
	for _, m := range []string{"chat.postMessage", "chat.update", "chat.postEphemeral", "response_url"} {
		for _, c := range h.slack.Calls(m) {
			b, _ := json.Marshal(c.JSON)
			everything += c.Form.Get("text") + c.Form.Get("blocks") + string(b)
		}
	}
	for _, secret := range []string{h.env["SLACK_BOT_TOKEN"], h.env["SLACK_APP_TOKEN"], h.env["ALIBABA_CLOUD_ACCESS_KEY_SECRET"]} {
		if strings.Contains(everything, secret) {
			t.Errorf("secret %q leaked", secret[:4]+"…")
		}
	}
}

// TestPolicyReloadOnHangup: SIGHUP reloads the policy file; a bad file is
// refused and the rules in force stay.
func TestPolicyReloadOnHangup(t *testing.T) {
	// The test takes SIGHUP itself first, so the process never dies of it.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	const (
		hangzhou = "default:\n  regions: [cn-hangzhou]\n"
		both     = "default:\n  regions: [cn-hangzhou, cn-shanghai]\n"
		bad      = "default:\n  regoins: [us-east-1]\n"
	)
	file := newPolicyPipe(t)
	h := newHarness(t, map[string]string{"HBRBOT_POLICY_FILE": file.path})
	startRead := file.serve(h.ctx(), hangzhou)
	h.start()
	t.Cleanup(file.close) // before the bot stops: a read left waiting would hold it
	if err := <-startRead; err != nil {
		t.Fatalf("the policy file at start: %v", err)
	}
	shanghai := func() string { return h.ackPayload(h.command(requester, "i-aaa --region cn-shanghai")) }
	if got := shanghai(); !strings.Contains(got, "not allowed") {
		t.Fatalf("before the reload: %q", got)
	}
	// A reload is done once the bot opens the file for the next one.
	hangup := func() *os.File {
		t.Helper()
		syscall.Kill(os.Getpid(), syscall.SIGHUP)
		return file.opened(h.ctx())
	}
	file.answer(hangup(), both)
	reading := hangup() // the reload of both is done
	if got := shanghai(); !strings.Contains(got, "card follows") {
		t.Errorf("after the reload, still refused: %q", got)
	}
	file.answer(reading, bad)
	reading = hangup() // the reload of the bad file is done
	if got := shanghai(); !strings.Contains(got, "card follows") {
		t.Errorf("a bad file replaced the rules: %q", got)
	}
	file.answer(reading, both)
}

// policyPipe is a policy file that is a named pipe: the test sees the bot
// open it (at start, on each SIGHUP) and writes what that read gets. The
// bot's read lasts until the test answers, so between the open and the
// answer the reload before is done and this one has not begun. Each read
// gets a pipe of its own: a new one replaces the answered one, which the
// bot may not have closed yet (opening that would not wait).
type policyPipe struct {
	t       *testing.T
	path    string
	mu      sync.Mutex
	waiting *os.File // opened, not yet answered
}

func newPolicyPipe(t *testing.T) *policyPipe {
	p := &policyPipe{t: t, path: filepath.Join(t.TempDir(), "policy.yaml")}
	if err := p.renew(); err != nil {
		t.Fatal(err)
	}
	return p
}

// renew puts a new pipe at the path.
func (p *policyPipe) renew() error {
	next := p.path + ".next"
	if err := syscall.Mkfifo(next, 0o600); err != nil {
		return err
	}
	return os.Rename(next, p.path)
}

// open waits until the bot opens the file for reading.
func (p *policyPipe) open(ctx context.Context) (*os.File, error) {
	opened := make(chan *os.File, 1)
	failed := make(chan error, 1)
	go func() { // no timeout on opening a pipe: it waits for the reader
		f, err := os.OpenFile(p.path, os.O_WRONLY, 0)
		if err != nil {
			failed <- err
			return
		}
		opened <- f
	}()
	select {
	case f := <-opened:
		p.mu.Lock()
		p.waiting = f
		p.mu.Unlock()
		return f, nil
	case err := <-failed:
		return nil, err
	case <-ctx.Done():
		return nil, fmt.Errorf("the bot did not open its policy file: %w", ctx.Err())
	}
}

// opened is open for the test goroutine.
func (p *policyPipe) opened(ctx context.Context) *os.File {
	p.t.Helper()
	f, err := p.open(ctx)
	if err != nil {
		p.t.Fatal(err)
	}
	return f
}

// answer ends the bot's read of f with yaml.
func (p *policyPipe) answer(f *os.File, yaml string) {
	_, err := f.WriteString(yaml)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if rerr := p.renew(); err == nil {
		err = rerr
	}
	p.mu.Lock()
	p.waiting = nil
	p.mu.Unlock()
	if err != nil {
		p.t.Errorf("answering the bot's read of its policy file: %v", err)
	}
}

// serve answers the next read with yaml, in the background.
func (p *policyPipe) serve(ctx context.Context, yaml string) <-chan error {
	done := make(chan error, 1)
	go func() {
		f, err := p.open(ctx)
		if err == nil {
			p.answer(f, yaml)
		}
		done <- err
	}()
	return done
}

// close ends a read the test left unanswered (it failed midway).
func (p *policyPipe) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.waiting != nil {
		p.waiting.Close()
		p.waiting = nil
	}
}
