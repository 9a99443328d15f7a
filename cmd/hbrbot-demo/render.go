package main

import (
	"encoding/json"
	"fmt"
	"html"
	"strconv"
	"strings"
)

// This file renders what the bot posts (Block Kit, mrkdwn) as HTML, the
// way Slack's client shows it, for the demo page. Everything that reaches
// the page is escaped here: text is HTML-escaped first and only then given
// the markup that the renderer itself writes.

// emoji are the shortcodes the bot uses; others stay as typed.
var emoji = map[string]string{
	"arrow_up":                "⬆️",
	"arrows_counterclockwise": "🔄",
	"grey_question":           "❔",
	"hourglass":               "⌛",
	"hourglass_flowing_sand":  "⏳",
	"no_entry_sign":           "🚫",
	"question":                "❓",
	"test_tube":               "🧪",
	"warning":                 "⚠️",
	"white_check_mark":        "✅",
	"x":                       "❌",
	"lock":                    "🔒",
	"tada":                    "🎉",
}

// renderer turns mrkdwn into HTML; name gives a user's display name.
type renderer struct {
	name func(userID string) string
}

// mrkdwn renders Slack mrkdwn as HTML: *bold*, _italic_, ~strike~,
// `code`, ```pre```, <url|links>, <@U…> mentions, <#C…|channel>,
// <!date^…|fallback>, <!here>, :emoji: and line breaks. Slack's own
// entities (&amp; &lt; &gt;) show as the characters they stand for.
func (r renderer) mrkdwn(s string) string {
	s = strings.ReplaceAll(s, "\x00", "") // the placeholders' delimiter
	var out strings.Builder
	parts := strings.Split(s, "```")
	for i, part := range parts {
		if i%2 == 1 && i < len(parts)-1 {
			out.WriteString(`<pre class="pre">` + plain(strings.Trim(part, "\n")) + `</pre>`)
			continue
		}
		if i%2 == 1 {
			part = "```" + part // an unclosed fence is text
		}
		out.WriteString(r.inline(part))
	}
	return out.String()
}

// inline renders mrkdwn without code blocks. Code spans, angle-bracket
// markup and emoji become placeholders first, so that the emphasis
// markers are only looked for in text, then the text is escaped, the
// emphasis applied, and the placeholders put back.
func (r renderer) inline(s string) string {
	var held []string
	hold := func(h string) string {
		held = append(held, h)
		return "\x00" + strconv.Itoa(len(held)-1) + "\x00"
	}
	var b strings.Builder
	for i := 0; i < len(s); {
		switch c := s[i]; {
		case c == '`':
			if j := strings.IndexAny(s[i+1:], "`\n"); j > 0 && s[i+1+j] == '`' {
				b.WriteString(hold(`<code>` + plain(s[i+1:i+1+j]) + `</code>`))
				i += j + 2
				continue
			}
		case c == '<':
			if j := strings.IndexAny(s[i+1:], "<>\n"); j >= 0 && s[i+1+j] == '>' {
				b.WriteString(hold(r.angle(s[i+1 : i+1+j])))
				i += j + 2
				continue
			}
		case c == ':':
			if j := strings.IndexByte(s[i+1:], ':'); j > 0 {
				if e, ok := emoji[s[i+1:i+1+j]]; ok {
					b.WriteString(hold(`<span class="emoji">` + e + `</span>`))
					i += j + 2
					continue
				}
			}
		}
		b.WriteByte(s[i])
		i++
	}
	t := plain(b.String())
	t = emphasis(t, '*', "<b>", "</b>")
	t = emphasis(t, '_', "<i>", "</i>")
	t = emphasis(t, '~', "<s>", "</s>")
	t = strings.ReplaceAll(t, "\n", "<br>")
	for i, h := range held {
		t = strings.Replace(t, "\x00"+strconv.Itoa(i)+"\x00", h, 1)
	}
	return t
}

// plain is text as HTML: Slack's entities decoded, then everything escaped.
func plain(s string) string {
	return html.EscapeString(html.UnescapeString(slackEntities.Replace(s)))
}

// slackEntities keeps html.UnescapeString to the three entities Slack
// uses: any other "&…;" stays as typed.
var slackEntities = strings.NewReplacer("&amp;", "&amp;", "&lt;", "&lt;", "&gt;", "&gt;", "&", "&amp;")

// emphasis wraps text between a pair of markers, Slack's way: the opening
// marker does not follow a letter or digit and is not followed by a space,
// the closing one is not preceded by a space nor followed by a letter or
// digit, and both are on one line.
func emphasis(s string, marker byte, open, close string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != marker || (i > 0 && wordByte(s[i-1])) || i+1 >= len(s) || s[i+1] == ' ' || s[i+1] == marker || s[i+1] == '\n' {
			b.WriteByte(s[i])
			continue
		}
		end := -1
		for j := i + 1; j < len(s) && s[j] != '\n'; j++ {
			if s[j] == marker && s[j-1] != ' ' && (j+1 == len(s) || !wordByte(s[j+1])) {
				end = j
				break
			}
		}
		if end < 0 {
			b.WriteByte(s[i])
			continue
		}
		b.WriteString(open + s[i+1:end] + close)
		i = end
	}
	return b.String()
}

func wordByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c >= 0x80
}

// angle renders the inside of <…>: a mention, a channel, a special
// mention, a date or a link. Only http(s) and mailto links become links.
func (r renderer) angle(in string) string {
	target, label, hasLabel := strings.Cut(in, "|")
	switch {
	case strings.HasPrefix(target, "@"):
		id := target[1:]
		name := label
		if !hasLabel {
			name = r.name(id)
		}
		return `<span class="mention">@` + plain(name) + `</span>`
	case strings.HasPrefix(target, "#"):
		name := label
		if !hasLabel {
			name = target[1:]
		}
		return `<span class="mention">#` + plain(name) + `</span>`
	case strings.HasPrefix(target, "!date^"):
		return `<span class="date">` + plain(label) + `</span>`
	case strings.HasPrefix(target, "!subteam^"):
		return `<span class="mention">@` + plain(cmpOr(label, strings.TrimPrefix(target, "!subteam^"))) + `</span>`
	case strings.HasPrefix(target, "!"):
		return `<span class="mention">@` + plain(cmpOr(label, target[1:])) + `</span>`
	}
	if !hasLabel {
		label = target
	}
	u := html.UnescapeString(slackEntities.Replace(target))
	lower := strings.ToLower(u)
	if !strings.HasPrefix(lower, "http://") && !strings.HasPrefix(lower, "https://") && !strings.HasPrefix(lower, "mailto:") {
		return plain(label)
	}
	return `<a href="` + html.EscapeString(u) + `" target="_blank" rel="noopener noreferrer">` + plain(label) + `</a>`
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// textObject is a Block Kit text object.
type textObject struct {
	Type  string `json:"type"`
	Text  string `json:"text"`
	Emoji bool   `json:"emoji"`
}

// element is a block element: a button, an image or a text object.
type element struct {
	Type     string      `json:"type"`
	Text     *textObject `json:"-"`
	ActionID string      `json:"action_id"`
	Value    string      `json:"value"`
	Style    string      `json:"style"`
	URL      string      `json:"url"`
	AltText  string      `json:"alt_text"`
}

// UnmarshalJSON reads an element whose "text" is a text object (buttons)
// or a string (mrkdwn and plain_text elements of a context block).
func (e *element) UnmarshalJSON(b []byte) error {
	type plainElement element
	var raw struct {
		plainElement
		Text json.RawMessage `json:"text"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		return err
	}
	*e = element(raw.plainElement)
	var s string
	if json.Unmarshal(raw.Text, &s) == nil {
		var emojiFlag struct {
			Emoji bool `json:"emoji"`
		}
		_ = json.Unmarshal(b, &emojiFlag)
		e.Text = &textObject{Type: e.Type, Text: s, Emoji: emojiFlag.Emoji}
	} else if len(raw.Text) > 0 {
		e.Text = &textObject{}
		if err := json.Unmarshal(raw.Text, e.Text); err != nil {
			return err
		}
	}
	return nil
}

type block struct {
	Type      string        `json:"type"`
	BlockID   string        `json:"block_id"`
	Text      *textObject   `json:"text"`
	Fields    []*textObject `json:"fields"`
	Accessory *element      `json:"accessory"`
	Elements  []*element    `json:"elements"`
}

// text renders a text object.
func (r renderer) text(t *textObject) string {
	if t == nil {
		return ""
	}
	if t.Type == "mrkdwn" {
		return r.mrkdwn(t.Text)
	}
	s := plain(t.Text)
	if t.Emoji {
		s = plainEmoji(s)
	}
	return strings.ReplaceAll(s, "\n", "<br>")
}

// plainEmoji shows the emoji of escaped plain text.
func plainEmoji(s string) string {
	for name, e := range emoji {
		s = strings.ReplaceAll(s, ":"+name+":", e)
	}
	return s
}

// button is a button as HTML: the page sends its click (action_id and
// value) to /api/click with the message's channel and ts.
func (r renderer) button(e *element) string {
	class := "btn"
	if e.Style == "primary" || e.Style == "danger" {
		class += " " + e.Style
	}
	return fmt.Sprintf(`<button class="%s" data-action-id="%s" data-value="%s">%s</button>`,
		class, html.EscapeString(e.ActionID), html.EscapeString(e.Value), r.text(e.Text))
}

func (r renderer) element(e *element) string {
	switch e.Type {
	case "button":
		return r.button(e)
	case "mrkdwn", "plain_text":
		return `<span class="ctx-text">` + r.text(e.Text) + `</span>`
	case "image":
		return `<span class="ctx-image" title="` + html.EscapeString(e.AltText) + `">🖼</span>`
	}
	return `<span class="unsupported">[` + plain(e.Type) + `]</span>`
}

// blocks renders a message's Block Kit blocks; text is shown when there
// are none (or they cannot be read).
func (r renderer) blocks(raw json.RawMessage, text string) string {
	var bs []block
	if len(raw) == 0 || json.Unmarshal(raw, &bs) != nil || len(bs) == 0 {
		return `<div class="blk section">` + r.mrkdwn(text) + `</div>`
	}
	var out strings.Builder
	for _, b := range bs {
		switch b.Type {
		case "header":
			out.WriteString(`<div class="blk header">` + r.text(b.Text) + `</div>`)
		case "section":
			out.WriteString(`<div class="blk section"><div class="section-body">`)
			if b.Text != nil {
				out.WriteString(`<div class="section-text">` + r.text(b.Text) + `</div>`)
			}
			if len(b.Fields) > 0 {
				out.WriteString(`<div class="fields">`)
				for _, f := range b.Fields {
					out.WriteString(`<div class="field">` + r.text(f) + `</div>`)
				}
				out.WriteString(`</div>`)
			}
			out.WriteString(`</div>`)
			if b.Accessory != nil {
				out.WriteString(`<div class="accessory">` + r.element(b.Accessory) + `</div>`)
			}
			out.WriteString(`</div>`)
		case "context":
			out.WriteString(`<div class="blk context">`)
			for _, e := range b.Elements {
				out.WriteString(r.element(e))
			}
			out.WriteString(`</div>`)
		case "actions":
			out.WriteString(`<div class="blk actions">`)
			for _, e := range b.Elements {
				out.WriteString(r.element(e))
			}
			out.WriteString(`</div>`)
		case "divider":
			out.WriteString(`<hr class="blk divider">`)
		default:
			out.WriteString(`<div class="blk unsupported">[` + plain(b.Type) + ` block]</div>`)
		}
	}
	return out.String()
}
