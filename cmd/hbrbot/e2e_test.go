package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/hbrbot/hbrbot/hbrtest"
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
	if got := h.ackPayload(env); got != "" {
		t.Errorf("valid command acked with text %q, want a silent ack", got)
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
	updated, _ := h.slack.Message(channel, card.TS)
	if !strings.Contains(text(updated), "Approved by <@"+approver+">") || strings.Contains(string(updated.Blocks), "hbr_upgrade_approve") {
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
