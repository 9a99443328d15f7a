package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hbrbot/hbrbot/slacktest"
)

// waitFor bounds every await: far above what the tests need.
const waitFor = 60 * time.Second

// startDemo starts a demo whose jobs take job, polled every poll, on a
// free loopback port. (The bot's HBR rate limit, 300 calls a minute, caps
// the polls at 5 a second.)
func startDemo(t *testing.T, job, poll time.Duration) *Demo {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	logName := filepath.Join(t.TempDir(), "bot.log")
	logs, err := os.Create(logName)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { logs.Close() })
	d, err := Start(ctx, Options{Addr: "127.0.0.1:0", JobDuration: job, PollInterval: poll, Logs: logs})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.Close()
		if err := d.Err(); err != nil {
			t.Errorf("the bot returned %v", err)
		}
		if b, _ := os.ReadFile(logName); t.Failed() {
			t.Logf("bot logs:\n%s", b)
		}
	})
	return d
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	t.Cleanup(cancel)
	return ctx
}

// postForm posts fields to the page's API as the page does.
func postForm(t *testing.T, d *Demo, path string, fields url.Values) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, d.URL+strings.TrimPrefix(path, "/"), strings.NewReader(fields.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("X-Hbrbot-Demo", "1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func getState(t *testing.T, d *Demo, as string) state {
	t.Helper()
	resp, err := http.Get(d.URL + "api/messages?as=" + as)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var s state
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

// isCard: the approval card while it awaits a decision.
func isCard(m slacktest.Message) bool {
	return m.ThreadTS == "" && !m.Ephemeral && strings.Contains(string(m.Blocks), `"hbr_upgrade_approve"`)
}

// isReport: a thread reply of kind ("started", "progress", "final").
func isReport(kind string) func(slacktest.Message) bool {
	return func(m slacktest.Message) bool {
		return m.ThreadTS != "" && strings.Contains(string(m.Metadata), `"kind":"`+kind+`"`)
	}
}

// TestDemoFlow drives the page's API like the page does: Alice asks,
// Mallory's approval is refused (told to her alone), Bob approves, and
// the final report, with its failures, shows in the card's thread.
func TestDemoFlow(t *testing.T) {
	d := startDemo(t, time.Second, 200*time.Millisecond)
	ctx := testCtx(t)
	if code, body := postForm(t, d, "/api/command", url.Values{"as": {alice}, "text": {fleetCommand()}}); code != http.StatusOK {
		t.Fatalf("command: %d %s", code, body)
	}
	card, err := d.Slack.WaitMessage(ctx, channelID, isCard)
	if err != nil {
		t.Fatal(err)
	}
	if code, body := postForm(t, d, "/api/click", url.Values{"as": {mallory}, "channel": {channelID}, "ts": {card.TS}, "action_id": {"hbr_upgrade_approve"}}); code != http.StatusOK {
		t.Fatalf("click: %d %s", code, body)
	}
	told, err := d.Slack.WaitMessage(ctx, channelID, func(m slacktest.Message) bool { return m.Ephemeral && m.EphemeralUser == mallory })
	if err != nil {
		t.Fatal(err)
	}
	if code, body := postForm(t, d, "/api/click", url.Values{"as": {bob}, "channel": {channelID}, "ts": {card.TS}, "action_id": {"hbr_upgrade_approve"}}); code != http.StatusOK {
		t.Fatalf("click: %d %s", code, body)
	}
	if _, err := d.Slack.WaitMessage(ctx, channelID, isReport("final")); err != nil {
		t.Fatal(err)
	}

	seen := func(s state, ts string) *message {
		for i, m := range s.Messages {
			if m.TS == ts {
				return &s.Messages[i]
			}
		}
		return nil
	}
	forAlice, forMallory := getState(t, d, alice), getState(t, d, mallory)
	if seen(forAlice, told.TS) != nil {
		t.Errorf("Alice sees Mallory's ephemeral message")
	}
	if m := seen(forMallory, told.TS); m == nil || !m.Ephemeral || !strings.Contains(m.HTML, "approve") {
		t.Errorf("Mallory is not told she cannot approve: %+v", m)
	}
	c := seen(forAlice, card.TS)
	if c == nil {
		t.Fatalf("no card in %+v", forAlice.Messages)
	}
	if strings.Contains(c.HTML, "hbr_upgrade_approve") || !strings.Contains(c.HTML, `Approved by <span class="mention">@bob</span>`) {
		t.Errorf("card after approval:\n%s", c.HTML)
	}
	var thread strings.Builder
	for _, r := range c.Replies {
		thread.WriteString(r.HTML + "\n")
	}
	for _, want := range []string{
		"Job started: HBR task", "completed:</b> 5 upgraded · 1 failed · 1 refused",
		"<code>i-bp1legacy01</code> <code>UPGRADE_FAILED</code>", "<code>i-bp1batch01</code> <code>InstanceNotRunning</code>",
		`data-action-id="hbr_upgrade_retry"`,
	} {
		if !strings.Contains(thread.String(), want) {
			t.Errorf("the thread lacks %q:\n%s", want, thread.String())
		}
	}
	for _, f := range forAlice.Fleet {
		if f.ID == "i-bp1web01" && f.Version != f.Latest || f.ID == "i-bp1legacy01" && f.Version == f.Latest {
			t.Errorf("fleet after the job: %+v", f)
		}
	}
}

// TestPageGuards: the API answers only the page itself on a loopback
// name, for the demo's users, with a known command.
func TestPageGuards(t *testing.T) {
	d := startDemo(t, time.Second, 200*time.Millisecond)
	if code, _ := postForm(t, d, "/api/command", url.Values{"as": {"U0EVE"}, "text": {"help"}}); code != http.StatusBadRequest {
		t.Errorf("an unknown user: %d", code)
	}
	if code, _ := postForm(t, d, "/api/command", url.Values{"as": {alice}, "text": {"/remind me"}}); code != http.StatusBadRequest {
		t.Errorf("another command: %d", code)
	}
	if code, _ := postForm(t, d, "/api/click", url.Values{"as": {alice}, "channel": {channelID}, "ts": {"1.2"}, "action_id": {"x"}}); code != http.StatusNotFound {
		t.Errorf("a click on no message: %d", code)
	}
	resp, err := http.PostForm(d.URL+"api/command", url.Values{"as": {alice}, "text": {"help"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("a cross-site form post: %d", resp.StatusCode)
	}
	req, _ := http.NewRequest(http.MethodGet, d.URL+"api/messages?as="+alice, nil)
	req.Host = "attacker.example:80"
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMisdirectedRequest {
		t.Errorf("another Host: %d", resp.StatusCode)
	}
	resp, err = http.Get(d.URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'sha256-") {
		t.Errorf("page CSP %q", csp)
	}
}

func TestCheckAddr(t *testing.T) {
	for _, tc := range []struct {
		addr   string
		public bool
		ok     bool
	}{
		{"127.0.0.1:8099", false, true},
		{"localhost:8099", false, true},
		{"[::1]:8099", false, true},
		{":8099", false, false},
		{"0.0.0.0:8099", false, false},
		{"192.0.2.1:8099", false, false},
		{"0.0.0.0:8099", true, true},
		{"nope", false, false},
	} {
		if err := checkAddr(tc.addr, tc.public); (err == nil) != tc.ok {
			t.Errorf("checkAddr(%q, %v) = %v", tc.addr, tc.public, err)
		}
	}
}

func TestJobScript(t *testing.T) {
	s := jobScript(20*time.Second, time.Second)
	if len(s) != 20 || s[0].Progress != 0 || s[19].Progress != 100 || s[19].Description != "completed" || s[10].Progress <= s[9].Progress {
		t.Errorf("script %+v", s)
	}
}
