package main

import (
	"strings"
	"testing"
	"time"

	"github.com/hbrbot/hbrbot/internal/redistest"
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
