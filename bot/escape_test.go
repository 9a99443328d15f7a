package bot

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/slack-go/slack"

	"github.com/hbrbot/hbrbot"
	"github.com/hbrbot/hbrbot/upgrade"
)

// live finds mrkdwn that Slack would act on: a mention, a channel link, a
// special command (<!channel>, <!here>) or a link.
var live = regexp.MustCompile(`<[@#!]|<[a-z]+:|<[^>]*\|`)

// inert fails t if text holds live markup other than mentions of the
// users allowed, or a code span left open on a line.
func inert(t *testing.T, where, text string, allowedUsers ...string) {
	t.Helper()
	rest := text
	for _, u := range allowedUsers {
		rest = strings.ReplaceAll(rest, "<@"+u+">", "")
	}
	rest = regexp.MustCompile(`<!date\^\d+\^\{date_short_pretty\} \{time\}\|[^<>|]*>`).ReplaceAllString(rest, "")
	if m := live.FindString(rest); m != "" {
		t.Errorf("%s: live markup %q in %q", where, m, text)
	}
	for _, line := range strings.Split(text, "\n") {
		if strings.Count(line, "`")%2 != 0 {
			t.Errorf("%s: a code span broken on line %q", where, line)
		}
	}
}

// hostile is text from outside that tries every trick.
var hostile = []string{
	"<!channel> db-1",
	"<!here>",
	"<https://evil.example/x|click me>",
	"<@U0MALLORY>",
	"<#C0SECRET>",
	"a`b<!everyone>`c",
	"line\n<!channel>",
	"&lt;!channel&gt;",
}

func TestEscapeIsInert(t *testing.T) {
	for _, s := range hostile {
		inert(t, "esc", esc(s))
		inert(t, "code", code(s))
		inert(t, "mention", mention(s))
	}
	if got := esc("a & b < c > d"); got != "a &amp; b &lt; c &gt; d" {
		t.Errorf("esc = %q", got)
	}
	if got := mention("U0ALICE"); got != "<@U0ALICE>" {
		t.Errorf("mention of a user ID = %q", got)
	}
}

func FuzzEscapeIsInert(f *testing.F) {
	for _, s := range hostile {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		inert(t, "esc", esc(s))
		inert(t, "code", code(s))
		if !hbrbot.ValidUserID(s) { // a user ID is meant to mention that user
			inert(t, "mention", mention(s))
		}
		if c := code(s); !strings.HasPrefix(c, "`") || !strings.HasSuffix(c, "`") || strings.Count(c, "`") != 2 {
			t.Errorf("code(%q) = %q: not one span", s, c)
		}
	})
}

// blockTexts is every text a message's blocks show.
func blockTexts(t *testing.T, blocks []slack.Block) []string {
	t.Helper()
	raw, err := json.Marshal(blocks)
	if err != nil {
		t.Fatal(err)
	}
	var texts []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if s, ok := v["text"].(string); ok {
				texts = append(texts, s)
			}
			for _, c := range v {
				walk(c)
			}
		case []any:
			for _, c := range v {
				walk(c)
			}
		}
	}
	var doc any
	json.Unmarshal(raw, &doc)
	walk(doc)
	return texts
}

type noLinks struct{}

func (noLinks) Permalink(context.Context, string, string) (string, error) {
	return "https://acme.slack.com/archives/C0OPS/p1", nil
}

// TestHBRTextIsInert: whatever HBR and users put in names, versions,
// statuses, codes and messages, no message of the bot carries it live,
// in its blocks or in its notification text.
func TestHBRTextIsInert(t *testing.T) {
	for _, h := range hostile {
		r := request(5)
		r.Spec.CrossAccount = &hbrbot.CrossAccount{UserID: 1, RoleName: h}
		for i := range r.Preflight {
			c := &r.Preflight[i]
			c.InstanceName, c.Version, c.MaxVersion = h, h, h
			if i == 1 {
				c.Status = h
			}
		}
		b := mixedBatch()
		b.TaskID, b.Invalid[0].ErrorCode = h, h
		for i := range b.Results {
			b.Results[i].ErrorCode = h
		}
		for i := range b.After {
			b.After[i].Version = h
		}
		b.VerifyFailure = h
		refused := b
		refused.Error = &hbrbot.SubmissionError{Code: h, Message: h}
		unknown := b
		unknown.Error = &hbrbot.SubmissionError{Unknown: true, Message: h}
		r.PreflightFailure = h
		failed := r

		check := func(where, text string, blocks []slack.Block) {
			t.Helper()
			inert(t, where+" text", text, "U0ALICE", "U0BOB")
			for _, s := range blockTexts(t, blocks) {
				inert(t, where, s, "U0ALICE", "U0BOB")
			}
		}
		check("card", cardFallback(r), CardBlocks(r, nil))
		check("card without look-up", cardFallback(failed), CardBlocks(failed, nil))
		check("done card", cardFallback(r), CardBlocks(r, []hbrbot.Batch{b}))
		for name, batch := range map[string]hbrbot.Batch{"final": b, "refused": refused, "unknown": unknown} {
			text, blocks := FinalReport(batch)
			check(name, text, blocks)
		}
		text, blocks := StartedReport(b)
		check("started", text, blocks)
		text, blocks = ProgressReport(r, []hbrbot.BatchStatus{b.BatchStatus}, t0)
		check("progress", text, blocks)
		for _, n := range []upgrade.Notice{
			{Kind: upgrade.NoticeListFailed, Region: h, Reason: h},
			{Kind: upgrade.NoticeCardFailed, Reason: h},
			{Kind: upgrade.NoticeFleetUpToDate, Region: h},
			{Kind: upgrade.NoticeStatus, Status: []upgrade.StatusLine{{Request: r}, {Request: r, Batch: &b.BatchStatus}}},
		} {
			inert(t, "notice", NoticeText(context.Background(), n, noLinks{}), "U0ALICE", "U0BOB")
		}
		for _, cell := range strings.Split(string(ReportCSV(b)), "\n") {
			if strings.HasPrefix(cell, "=") || strings.Contains(cell, ",=") || strings.Contains(cell, ",@") {
				t.Errorf("CSV row %q can run as a formula", cell)
			}
		}
	}
}

func TestCSVCellsAreNotFormulas(t *testing.T) {
	for in, want := range map[string]string{"=1+1": "'=1+1", "+1": "'+1", "-1": "'-1", "@SUM(A1)": "'@SUM(A1)", "i-abc": "i-abc", "": ""} {
		if got := csvCell(in); got != want {
			t.Errorf("csvCell(%q) = %q, want %q", in, got, want)
		}
	}
}
