package bot

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/hbrbot/hbrbot"
)

var update = flag.Bool("update", false, "rewrite the golden files")

var t0 = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)

func ids(prefix string, n int) []string {
	var out []string
	for i := range n {
		out = append(out, fmt.Sprintf("%s%017d", prefix, i))
	}
	return out
}

func request(n int) hbrbot.Request {
	r := hbrbot.Request{
		ID: "r2x8kq4mzva", ChannelID: "C0OPS", RequesterID: "U0ALICE", State: hbrbot.RequestPending,
		Spec:      hbrbot.UpgradeSpec{Targets: hbrbot.Targets{InstanceIDs: ids("i-bp1", n-2), ClientIDs: ids("c-000", 2)}, Region: "cn-hangzhou"},
		CreatedAt: t0, ExpiresAt: t0.Add(time.Hour), RequiredApprovals: 2, Approvals: []string{"U0BOB"},
	}
	// The pre-flight look-up: one of each group.
	all := r.Spec.All()
	for i, id := range all[:len(all)-1] {
		c := hbrbot.ClientInfo{InstanceID: id, ClientID: "c-for-" + id, InstanceName: fmt.Sprintf("web-%02d", i), Version: "2.4.0", MaxVersion: "2.5.1", Status: "ACTIVATED"}
		if strings.HasPrefix(id, "c-") {
			c.ClientID, c.InstanceID = id, "i-for-"+id
		}
		if i == 1 {
			c.Status = "UNKNOWN"
		}
		r.Preflight = append(r.Preflight, c)
	}
	r.Skipped = []string{"i-bp1latest0000000000"}
	return r
}

// mixedBatch is a job that ended with every kind of outcome a report shows.
func mixedBatch() hbrbot.Batch {
	t := hbrbot.Targets{InstanceIDs: ids("i-bp1", 100)}
	b := hbrbot.Batch{BatchSpec: hbrbot.BatchSpec{Targets: t}, BatchStatus: hbrbot.BatchStatus{
		RequestID: "r2x8kq4mzva", Index: 0, Of: 3, Region: "cn-hangzhou",
		RequesterID: "U0ALICE", ChannelID: "C0OPS", ThreadTS: "1700000000.000100", State: hbrbot.BatchFinished,
		TaskID: "t-0123456789abcdefghij", Started: t0, Deadline: t0.Add(20 * time.Minute), Final: hbrbot.JobCompleted,
		Invalid: []hbrbot.InvalidTarget{{ID: t.InstanceIDs[0], ErrorCode: "InstanceNotRunning"}, {ID: t.InstanceIDs[1], ErrorCode: "CloudAssistNotRunningOnInstance"}}}}
	for i, id := range t.InstanceIDs[2:] {
		r := hbrbot.ClientResult{InstanceID: id, ClientStatus: "ACTIVATED"}
		after := "2.5.1"
		switch {
		case i%20 == 0:
			r.ClientStatus, r.ErrorCode = "UPGRADE_FAILED", "UPGRADE_FAILED"
			after = "2.4.0"
		case i == 7:
			after = "2.4.0" // HBR says done; the client says otherwise
		case i == 9:
			r.ClientStatus, r.ErrorCode = "UPGRADE_FAILED", "UPGRADE_FAILED" // the client says done
		}
		b.Results = append(b.Results, r)
		b.Before = append(b.Before, hbrbot.ClientInfo{InstanceID: id, Version: "2.4.0", MaxVersion: "2.5.1", Status: "ACTIVATED"})
		b.After = append(b.After, hbrbot.ClientInfo{InstanceID: id, Version: after, MaxVersion: "2.5.1", Status: "ACTIVATED"})
	}
	return b
}

// TestGolden keeps the Block Kit JSON of the card and the reports
// reviewable in a diff: `go test ./bot -update` rewrites them.
func TestGolden(t *testing.T) {
	approved := request(5)
	approved.State, approved.DecidedBy, approved.DecidedAt = hbrbot.RequestApproved, "U0CAROL", t0.Add(time.Minute)
	approved.Approvals = []string{"U0BOB", "U0CAROL"}
	started := mixedBatch()
	started.State, started.Final, started.Results = hbrbot.BatchRunning, "", nil
	startedText, startedBlocks := StartedReport(started)
	finalText, finalBlocks := FinalReport(mixedBatch())
	for _, tc := range []struct {
		name   string
		text   string
		blocks []slack.Block
	}{
		{"card_pending", cardFallback(request(5)), CardBlocks(request(5), nil)},
		{"card_approved_done", cardFallback(approved), CardBlocks(approved, []hbrbot.Batch{func() hbrbot.Batch { b := mixedBatch(); b.Of = 1; return b }()})},
		{"report_started", startedText, startedBlocks},
		{"report_final", finalText, finalBlocks},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := json.MarshalIndent(map[string]any{"text": tc.text, "blocks": tc.blocks}, "", "  ")
			if err != nil {
				t.Fatal(err)
			}
			path := filepath.Join("testdata", tc.name+".golden.json")
			if *update {
				if err := os.WriteFile(path, append(got, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run go test ./bot -update to create it)", err)
			}
			if strings.TrimSpace(string(want)) != strings.TrimSpace(string(got)) {
				t.Errorf("%s differs from the golden file; if the change is meant, run go test ./bot -update\ngot:\n%s", path, got)
			}
			checkLimits(t, tc.text, tc.blocks)
		})
	}
}

// TestLimits: the largest card and report stay within Slack's limits.
func TestLimits(t *testing.T) {
	big := request(500)
	text, blocks := FinalReport(mixedBatch())
	checkLimits(t, cardFallback(big), CardBlocks(big, nil))
	checkLimits(t, text, blocks)
	// Every ID of a 500-ID card is on it, or summarised.
	all, _ := json.Marshal(CardBlocks(big, nil))
	for _, id := range big.Spec.All() {
		if !strings.Contains(string(all), id) && !strings.Contains(string(all), "more") {
			t.Fatalf("card lacks %s and says nothing of the rest", id)
		}
	}
}

// checkLimits checks Slack's documented limits: 50 blocks a message, 3,000
// characters a section's text, 4,000 a message's text; action_id 255,
// button value 2,000 and text 75 characters.
func checkLimits(t *testing.T, text string, blocks []slack.Block) {
	t.Helper()
	if len(blocks) > 50 {
		t.Errorf("%d blocks, Slack allows 50", len(blocks))
	}
	if n := len([]rune(text)); n > 4000 {
		t.Errorf("text of %d characters, keep it within 4000", n)
	}
	for _, b := range blocks {
		switch b := b.(type) {
		case *slack.SectionBlock:
			if n := len([]rune(b.Text.Text)); n > 3000 {
				t.Errorf("section of %d characters, Slack allows 3000", n)
			}
		case *slack.ActionBlock:
			for _, e := range b.Elements.ElementSet {
				if btn, ok := e.(*slack.ButtonBlockElement); ok {
					if len(btn.ActionID) > 255 || len(btn.Value) > 2000 || len([]rune(btn.Text.Text)) > 75 {
						t.Errorf("button %q over Slack's limits", btn.ActionID)
					}
				}
			}
		}
	}
}

// TestFinalReportUnverified: when the look-up after the job failed, each
// ID's line says whose word its outcome is (Result, or the job's status
// for an ID Result does not name) and gives its version as the one before
// the job, never as the client's state; no "(no code)" on an upgraded one.
func TestFinalReportUnverified(t *testing.T) {
	b := hbrbot.Batch{
		BatchSpec: hbrbot.BatchSpec{Targets: hbrbot.Targets{InstanceIDs: []string{"i-ok", "i-bad", "i-silent"}},
			Before: []hbrbot.ClientInfo{{InstanceID: "i-ok", Version: "2.4.0", MaxVersion: "2.5.1"}, {InstanceID: "i-bad", Version: "2.4.0", MaxVersion: "2.5.1"}}},
		BatchStatus: hbrbot.BatchStatus{State: hbrbot.BatchFinished, Final: hbrbot.JobCompleted, TaskID: "t-1", VerifyFailure: "Forbidden.RAM",
			Results: []hbrbot.ClientResult{{InstanceID: "i-ok", ClientStatus: "ACTIVATED"}, {InstanceID: "i-bad", ClientStatus: "UPGRADE_FAILED", ErrorCode: "UPGRADE_FAILED"}}}}
	_, blocks := FinalReport(b)
	got := strings.Join(blockTexts(t, blocks), "\n")
	for _, want := range []string{
		"*Not verified*: the clients could not be looked up after the job",
		"• `i-ok` · _unverified_: as HBR's Result says; 2.4.0 before the job",
		"• `i-bad` `UPGRADE_FAILED` · _unverified_: as HBR's Result says; 2.4.0 before the job",
		"• `i-silent` · _unverified_: not in HBR's Result, as the job's status says",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("report lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "no code") {
		t.Errorf("report says \"no code\":\n%s", got)
	}
}
