package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/hbrbot/hbrbot/hbrtest"
	"github.com/hbrbot/hbrbot/slacktest"
)

// TestQuota: against an HBR that enforces a small flow-control quota (120
// calls per action and minute) while the jobs' polls ask for far more
// (three jobs at a 100ms interval), the bot keeps each action within its
// budget (80% of the quota): no call is throttled, every card shows its
// look-up and every job is reported exactly once.
func TestQuota(t *testing.T) {
	const quota, commands = 120, 3
	h := newHarness(t, map[string]string{
		"HBRBOT_HBR_RATE_LIMITS": fmt.Sprintf("DescribeTask=%d,UpgradeBackupClients=%[1]d,DescribeBackupClients=%[1]d", quota*8/10),
	})
	h.hbr.Close()
	h.hbr = hbrtest.NewServer(hbrtest.WithQuota(quota))
	t.Cleanup(h.hbr.Close)
	h.env["HBR_ENDPOINT"] = h.hbr.URL()
	for c := range commands {
		for i := range 3 {
			h.hbr.SetInstance(fmt.Sprintf("i-q%d%d", c, i), hbrtest.Instance{})
		}
	}
	h.start()
	for c := range commands {
		h.command(requester, fmt.Sprintf("i-q%d0 i-q%[1]d1 i-q%[1]d2", c))
	}
	h.awaitCard(commands) // all posted
	cards := h.cards()
	for _, c := range cards {
		h.click(approver, c, "hbr_upgrade_approve")
	}
	for _, c := range cards {
		h.awaitReports(c, "final", 1)
	}
	h.awaitUnscheduled()

	for _, c := range h.cards() {
		if got := len(h.reportsOf(c, "final")); got != 1 {
			t.Errorf("card %s: %d final reports, want 1", c.TS, got)
		}
		text := c.Text + string(c.Blocks)
		if strings.Contains(text, "Looking the clients up") || strings.Contains(text, "Could not look") || !strings.Contains(text, "Will upgrade") {
			t.Errorf("card %s does not show its look-up:\n%s", c.TS, text)
		}
	}
	for _, action := range []string{hbrtest.ActionUpgradeBackupClients, hbrtest.ActionDescribeTask, hbrtest.ActionDescribeBackupClients} {
		if n := h.hbr.Throttled(action); n != 0 {
			t.Errorf("%s: %d calls throttled, want 0", action, n)
		}
	}
	if n := len(h.hbr.Calls(hbrtest.ActionUpgradeBackupClients)); n != commands {
		t.Errorf("%d submissions, want %d", n, commands)
	}
}

// cards are the channel's approval cards, as they stand.
func (h *harness) cards() []slacktest.Message {
	var out []slacktest.Message
	for _, m := range h.slack.Messages(channel) {
		if m.ThreadTS == "" && !m.Ephemeral {
			out = append(out, m)
		}
	}
	return out
}
