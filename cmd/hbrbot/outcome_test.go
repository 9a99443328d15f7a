package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/hbrbot/hbrbot/hbrtest"
	"github.com/hbrbot/hbrbot/slacktest"
)

// row is what a final report says of one ID: the heading of its group
// and its own line.
type row struct{ group, line string }

// groupHeading is a report's group heading, "*:x: Failed (2)*…".
var groupHeading = regexp.MustCompile(`^\*(.+) \(\d+\)\*`)

// reportRows maps every ID a final report's blocks name (as a code span,
// under a group heading) to its group and line.
func reportRows(t *testing.T, m slacktest.Message) map[string]row {
	t.Helper()
	var blocks []struct {
		Text struct {
			Text string `json:"text"`
		} `json:"text"`
	}
	if err := json.Unmarshal(m.Blocks, &blocks); err != nil {
		t.Fatalf("report blocks: %v\n%s", err, m.Blocks)
	}
	rows := map[string]row{}
	group := ""
	for _, b := range blocks {
		for _, l := range strings.Split(b.Text.Text, "\n") {
			if g := groupHeading.FindStringSubmatch(l); g != nil {
				group = g[1]
				continue
			}
			if group == "" || !strings.Contains(l, "`i-") {
				continue
			}
			for _, f := range strings.Split(l, "`") {
				if strings.HasPrefix(f, "i-") && !strings.ContainsAny(f, " ") {
					if _, dup := rows[f]; !dup {
						rows[f] = row{group, l}
					}
				}
			}
		}
	}
	return rows
}

// want is what the final report must say of one ID: a word of its group's
// heading and phrases of its line.
type want struct {
	group string
	line  []string
}

// TestResultDisagrees: when HBR's Result and the clients' state after the
// job disagree, the state decides (docs/design.md, "The verified state
// decides"), per ID, with Result's word beside it; when the look-up after
// the job fails, Result and the job's status decide, marked unverified.
func TestResultDisagrees(t *testing.T) {
	failedJob := []hbrtest.Step{{Progress: 10, Description: hbrtest.TaskCreated}, {Progress: -1, Description: hbrtest.TaskCreated}}
	for _, tc := range []struct {
		name      string
		script    []hbrtest.Step // nil: the default, completed
		instances map[string]hbrtest.Instance
		// verifyFails: DescribeBackupClients fails after the card, for
		// every try of the look-up after the job.
		verifyFails bool
		card        []string // phrases of the card
		report      []string // phrases of the final report
		ids         map[string]want
	}{
		{
			name:   "result failed, client upgraded",
			script: failedJob,
			instances: map[string]hbrtest.Instance{
				"i-moved": {ErrorCode: "UPGRADE_FAILED", EndStatus: hbrtest.StatusActivated},
				"i-stuck": {ErrorCode: "UPGRADE_FAILED"},
			},
			report: []string{"failed:", "1 upgraded · 1 failed"},
			ids: map[string]want{
				"i-moved": {"Upgraded", []string{"2.5.1, though HBR's Result said `UPGRADE_FAILED`"}},
				"i-stuck": {"Failed", []string{"`UPGRADE_FAILED` (2.4.0)"}},
			},
		},
		{
			name: "result says done or nothing, client still old",
			instances: map[string]hbrtest.Instance{
				"i-saidok":     {StaysOld: true},
				"i-saidokdown": {EndStatus: hbrtest.StatusUnknown},
				"i-silent":     {NotInResult: true, StaysOld: true},
				"i-silentdown": {NotInResult: true, EndStatus: hbrtest.StatusUnknown},
				"i-done":       {},
			},
			report: []string{"completed:", "1 upgraded · 2 failed · 2 still old", "`StillOld`: HBR reported success", "`UNKNOWN`: the client is disconnected"},
			ids: map[string]want{
				"i-saidok":     {"still on an old version", []string{"2.4.0 → 2.4.0, latest 2.5.1"}},
				"i-saidokdown": {"Failed", []string{"`UNKNOWN` (2.4.0)"}},
				"i-silent":     {"still on an old version", []string{"2.4.0 → 2.4.0, latest 2.5.1"}},
				"i-silentdown": {"Failed", []string{"`UNKNOWN` (2.4.0)"}},
				"i-done":       {"Upgraded", nil},
			},
		},
		{
			name: "result not final when the job ends",
			instances: map[string]hbrtest.Instance{
				"i-upmoved": {UpgradeStatus: hbrtest.StatusUpgrading, EndStatus: hbrtest.StatusActivated},
				"i-upstuck": {UpgradeStatus: hbrtest.StatusUpgrading},
			},
			report: []string{"completed:", "1 upgraded · 1 failed"},
			ids: map[string]want{
				"i-upmoved": {"Upgraded", []string{"2.5.1, though HBR's Result said `UPGRADING`"}},
				"i-upstuck": {"Failed", []string{"`UPGRADING` (2.4.0)"}},
			},
		},
		{
			// As text "2.9.9" > "2.10.0": a textual comparison would leave
			// i-nine out of the card and call i-short upgraded.
			name: "versions compared numerically",
			instances: map[string]hbrtest.Instance{
				"i-nine":  {Version: "2.9.9", MaxVersion: "2.10.0"},
				"i-short": {Version: "2.4.0", MaxVersion: "2.10.0", EndVersion: "2.9.9"},
			},
			card:   []string{"Will upgrade (2)", "2.9.9 → 2.10.0", "2.4.0 → 2.10.0"},
			report: []string{"completed:", "1 upgraded · 1 still old", "Upgraded (1)*: 2.9.9 → 2.10.0 (latest)"},
			ids: map[string]want{
				"i-nine":  {"Upgraded", nil},
				"i-short": {"still on an old version", []string{"2.4.0 → 2.9.9, latest 2.10.0"}},
			},
		},
		{
			// What the clients really did (i-saidok stayed old, i-saidfail
			// moved) cannot be seen: the report says HBR's word, unverified.
			name:        "verification fails",
			verifyFails: true,
			instances: map[string]hbrtest.Instance{
				"i-saidok":   {StaysOld: true},
				"i-saidfail": {UpgradeStatus: hbrtest.StatusUpgradeFailed, ErrorCode: "UPGRADE_FAILED", EndStatus: hbrtest.StatusActivated},
				"i-silent":   {NotInResult: true},
			},
			report: []string{"completed:", "*Not verified*", "(Forbidden.RAM), even after retries", "2 upgraded · 1 failed"},
			ids: map[string]want{
				"i-saidok":   {"Upgraded", []string{"`i-saidok` · _unverified_: as HBR's Result says; 2.4.0 before the job"}},
				"i-saidfail": {"Failed", []string{"`i-saidfail` `UPGRADE_FAILED` · _unverified_: as HBR's Result says; 2.4.0 before the job"}},
				"i-silent":   {"Upgraded", []string{"`i-silent` · _unverified_: not in HBR's Result, as the job's status says; 2.4.0 before the job"}},
			},
		},
		{
			name:        "verification fails, job failed",
			script:      failedJob,
			verifyFails: true,
			instances: map[string]hbrtest.Instance{
				"i-saidfail": {ErrorCode: "UPGRADE_FAILED"},
				"i-silent":   {NotInResult: true, EndStatus: hbrtest.StatusActivated},
			},
			report: []string{"failed:", "*Not verified*", "(Forbidden.RAM), even after retries", "0 upgraded · 2 failed"},
			ids: map[string]want{
				"i-saidfail": {"Failed", []string{"`i-saidfail` `UPGRADE_FAILED` · _unverified_: as HBR's Result says"}},
				"i-silent":   {"Failed", []string{"`i-silent` `JobFailed` · _unverified_: not in HBR's Result, as the job's status says"}},
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, nil)
			ids := slices.Sorted(maps.Keys(tc.instances))
			for _, id := range ids {
				h.hbr.SetInstance(id, tc.instances[id])
			}
			if tc.script != nil {
				h.hbr.QueueJob(tc.script...)
			}
			h.start()
			h.command(requester, strings.Join(ids, " "))
			card := h.awaitCard(1)
			for _, w := range append(tc.card, fmt.Sprintf("Will upgrade (%d)", len(ids))) {
				if !strings.Contains(text(card), w) {
					t.Errorf("card lacks %q:\n%s", w, text(card))
				}
			}
			preflight := len(h.hbr.Calls(hbrtest.ActionDescribeBackupClients))
			if tc.verifyFails {
				// The look-up before the card is done; from here on,
				// only the look-up after the job asks.
				h.hbr.FailNext(hbrtest.ActionDescribeBackupClients, 3, 403, "Forbidden.RAM")
			}
			h.click(approver, card, "hbr_upgrade_approve")
			final := h.awaitReports(card, "final", 1)[0]
			for _, w := range tc.report {
				if !strings.Contains(text(final), w) {
					t.Errorf("final report lacks %q:\n%s", w, text(final))
				}
			}
			rows := reportRows(t, final)
			for id, w := range tc.ids {
				r, ok := rows[id]
				switch {
				case !ok:
					t.Errorf("final report does not list %s:\n%s", id, text(final))
					continue
				case !strings.Contains(r.group, w.group):
					t.Errorf("%s under %q, want %q: %s", id, r.group, w.group, r.line)
				}
				for _, phrase := range w.line {
					if !strings.Contains(r.line, phrase) {
						t.Errorf("%s: line %q lacks %q", id, r.line, phrase)
					}
				}
				if !tc.verifyFails && strings.Contains(r.line, "unverified") {
					t.Errorf("%s marked unverified though the look-up worked: %s", id, r.line)
				}
			}
			h.awaitUnscheduled()
			after := h.hbr.Calls(hbrtest.ActionDescribeBackupClients)[preflight:]
			switch {
			case tc.verifyFails && len(after) != 3:
				t.Errorf("%d look-ups after the job, want 3 (tried, and tried twice again)", len(after))
			case !tc.verifyFails && len(after) != 1:
				t.Errorf("%d look-ups after the job, want 1", len(after))
			}
			for _, c := range after {
				if tc.verifyFails && c.Code != "Forbidden.RAM" {
					t.Errorf("a look-up after the job answered %s, want the injected Forbidden.RAM", c.Code)
				}
			}
			if testing.Verbose() {
				t.Logf("final report:\n%s", text(final))
			}
		})
	}
}
