package main

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
)

var testRenderer = renderer{name: func(id string) string {
	return map[string]string{"U0ALICE": "alice", "U0BOB": "bob"}[id]
}}

func TestMrkdwn(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"plain", "hello", "hello"},
		{"bold", "*HBR client upgrade* requested", "<b>HBR client upgrade</b> requested"},
		{"italic", "_Every ID_ is here", "<i>Every ID</i> is here"},
		{"strike", "~gone~", "<s>gone</s>"},
		{"bold and italic", "*a* and _b_", "<b>a</b> and <i>b</i>"},
		{"not bold inside a word", "2*3*4", "2*3*4"},
		{"not bold with spaces", "a * b * c", "a * b * c"},
		{"unclosed bold", "*open", "*open"},
		{"snake case is not italic", "HBRBOT_TASK_TIMEOUT and a_b_c", "HBRBOT_TASK_TIMEOUT and a_b_c"},
		{"code", "HBR task `t-0123`.", "HBR task <code>t-0123</code>."},
		{"no markup in code", "`*x* _y_ <@U0BOB>`", "<code>*x* _y_ &lt;@U0BOB&gt;</code>"},
		{"bold around code", "*Already (`--force` to include) (1)*", "<b>Already (<code>--force</code> to include) (1)</b>"},
		{"pre", "```a *b*\n<c>```", `<pre class="pre">a *b*` + "\n" + `&lt;c&gt;</pre>`},
		{"unclosed pre", "```a", "```a"},
		{"link", "<https://example.test/a?b=1&amp;c=2|the docs>", `<a href="https://example.test/a?b=1&amp;c=2" target="_blank" rel="noopener noreferrer">the docs</a>`},
		{"bare link", "<https://example.test>", `<a href="https://example.test" target="_blank" rel="noopener noreferrer">https://example.test</a>`},
		{"javascript link is text", "<javascript:alert(1)|click>", "click"},
		{"mention", "by <@U0ALICE>", `by <span class="mention">@alice</span>`},
		{"mention with label", "<@U0BOB|robert>", `<span class="mention">@robert</span>`},
		{"channel", "<#C0OPS|ops>", `<span class="mention">#ops</span>`},
		{"here", "<!here>", `<span class="mention">@here</span>`},
		{"date", "until <!date^1795957200^{date_short_pretty} {time}|2026-11-29 13:00 UTC>", `until <span class="date">2026-11-29 13:00 UTC</span>`},
		{"emoji", ":white_check_mark: *Done*", `<span class="emoji">✅</span> <b>Done</b>`},
		{"emoji in bold", "*:arrow_up: Will upgrade (3)*", `<b><span class="emoji">⬆️</span> Will upgrade (3)</b>`},
		{"unknown emoji", ":nope: 10:30:45", ":nope: 10:30:45"},
		{"line breaks", "a\nb", "a<br>b"},
		{"slack entities", "a &lt;b&gt; &amp; c", "a &lt;b&gt; &amp; c"},
		{"escaped entity", "&amp;lt;", "&amp;lt;"},
		{"script escaped", "&lt;script&gt;alert(1)&lt;/script&gt;", "&lt;script&gt;alert(1)&lt;/script&gt;"},
		{"raw script", "<script>alert(1)</script>", "scriptalert(1)/script"},
		{"quotes", `"it's"`, "&#34;it&#39;s&#34;"},
		{"other entity stays text", "&copy;", "&amp;copy;"},
		{"script in a mention label", "<@U0BOB|<b>x</b>>", "@" /* checked below: no tag survives */},
		{"script in a link label", `<https://e.test|"><script>>`, `rel="noopener noreferrer">&#34;</a>script&gt;`},
		{"quote in a link", `<https://e.test/"onmouseover="x|y>`, `<a href="https://e.test/&#34;onmouseover=&#34;x" target="_blank" rel="noopener noreferrer">y</a>`},
		{"placeholder delimiter", "a\x000\x00b", "a0b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := testRenderer.mrkdwn(tc.in)
			if !strings.Contains(got, tc.want) {
				t.Errorf("mrkdwn(%q)\n got %q\nwant %q", tc.in, got, tc.want)
			}
			for _, bad := range []string{"<script", "<b>x</b>", "onmouseover=\""} {
				if strings.Contains(got, bad) {
					t.Errorf("mrkdwn(%q) = %q lets %q through", tc.in, got, bad)
				}
			}
		})
	}
}

// TestBlocks renders the bot's golden approval card: its text, its
// buttons (with what a click sends) and its context line.
func TestBlocks(t *testing.T) {
	var card struct {
		Blocks json.RawMessage `json:"blocks"`
		Text   string          `json:"text"`
	}
	raw := readFile(t, "../../bot/testdata/card_pending.golden.json")
	if err := json.Unmarshal(raw, &card); err != nil {
		t.Fatal(err)
	}
	got := testRenderer.blocks(card.Blocks, card.Text)
	for _, want := range []string{
		`<b>HBR client upgrade</b> requested by <span class="mention">@alice</span>`,
		`<b>Region:</b> <code>cn-hangzhou</code>`,
		`<b><span class="emoji">⬆️</span> Will upgrade (3)</b>`,
		`<div class="blk context"><span class="ctx-text">Awaiting approval until <span class="date">2026-11-29 13:00 UTC</span>`,
		`<button class="btn primary" data-action-id="hbr_upgrade_approve" data-value="r2x8kq4mzva">Approve</button>`,
		`<button class="btn danger" data-action-id="hbr_upgrade_cancel" data-value="r2x8kq4mzva">Cancel</button>`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("card lacks %s\n%s", want, got)
		}
	}
}

func TestBlockKinds(t *testing.T) {
	for _, tc := range []struct{ name, blocks, text, want string }{
		{"no blocks", ``, "*hi*", `<b>hi</b>`},
		{"header", `[{"type":"header","text":{"type":"plain_text","text":"<b> :tada:","emoji":true}}]`, "", `<div class="blk header">&lt;b&gt; 🎉</div>`},
		{"divider", `[{"type":"divider"}]`, "", `<hr class="blk divider">`},
		{"fields", `[{"type":"section","fields":[{"type":"mrkdwn","text":"*a*"},{"type":"plain_text","text":"*b*"}]}]`, "", `<div class="field"><b>a</b></div><div class="field">*b*</div>`},
		{"accessory", `[{"type":"section","text":{"type":"mrkdwn","text":"x"},"accessory":{"type":"button","action_id":"a\"b","value":"<v>","text":{"type":"plain_text","text":"Go"}}}]`, "", `<button class="btn" data-action-id="a&#34;b" data-value="&lt;v&gt;">Go</button>`},
		{"unknown", `[{"type":"video"}]`, "", `[video block]`},
		{"bad style", `[{"type":"actions","elements":[{"type":"button","style":"x\" onclick=\"y","text":{"type":"plain_text","text":"B"}}]}]`, "", `<button class="btn" data-action-id=""`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := testRenderer.blocks(json.RawMessage(tc.blocks), tc.text)
			if !strings.Contains(got, tc.want) {
				t.Errorf("got %s\nwant %s", got, tc.want)
			}
		})
	}
}

func readFile(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
