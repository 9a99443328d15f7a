package main

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/hbrbot/hbrbot/slacktest"
)

//go:embed page.html
var pageHTML []byte

// pageCSP lets the page run its own inline script and nothing else.
var pageCSP = func() string {
	_, script, _ := bytes.Cut(pageHTML, []byte("<script>"))
	script, _, _ = bytes.Cut(script, []byte("</script>"))
	sum := sha256.Sum256(script)
	return "default-src 'self'; script-src 'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'; style-src 'unsafe-inline'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
}()

// page serves the channel view and its small API. It only shows what the
// fake Slack stores and sends what a Slack client would send: slash
// commands and button clicks, as Socket Mode envelopes to the real bot.
type page struct {
	d      *Demo
	addr   string // host:port it listens on
	public bool
	r      renderer

	mu   sync.Mutex
	seen map[string]time.Time // ts → when the page first saw the message
}

func newPage(d *Demo, addr string, public bool) http.Handler {
	p := &page{d: d, addr: addr, public: public, seen: map[string]time.Time{}}
	p.r = renderer{name: p.userName}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", p.index)
	mux.HandleFunc("GET /api/messages", p.messages)
	mux.HandleFunc("POST /api/command", p.command)
	mux.HandleFunc("POST /api/click", p.click)
	return p.guard(mux)
}

// guard answers only requests addressed to the demo by name (no DNS
// rebinding) and, for the API's POSTs, only the page's own requests: they
// carry a header a cross-site form cannot set.
func (p *page) guard(next http.Handler) http.Handler {
	_, port, _ := net.SplitHostPort(p.addr)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, hport, err := net.SplitHostPort(r.Host)
		if !p.public && (err != nil || hport != port || !isLoopback(strings.Trim(host, "[]"))) {
			http.Error(w, "this demo answers only on a loopback address", http.StatusMisdirectedRequest)
			return
		}
		if r.Method == http.MethodPost && r.Header.Get("X-Hbrbot-Demo") != "1" {
			http.Error(w, "missing X-Hbrbot-Demo header", http.StatusForbidden)
			return
		}
		w.Header().Set("Content-Security-Policy", pageCSP)
		w.Header().Set("X-Content-Type-Options", "nosniff")
		next.ServeHTTP(w, r)
	})
}

func (p *page) index(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write(pageHTML)
}

func (p *page) userName(id string) string {
	if id == slacktest.BotUserID {
		return "hbrbot"
	}
	for _, u := range people {
		if u.ID == id {
			return u.Name
		}
	}
	return strings.ToLower(id)
}

// actor is the request's "as" user, one of the demo's people.
func actor(r *http.Request) (string, bool) {
	as := r.FormValue("as")
	for _, u := range people {
		if u.ID == as {
			return as, true
		}
	}
	return "", false
}

// message is a stored message as the page shows it.
type message struct {
	TS        string    `json:"ts"`
	User      string    `json:"user"`
	UserName  string    `json:"user_name"`
	IsBot     bool      `json:"is_bot"`
	Ephemeral bool      `json:"ephemeral"`
	Edited    bool      `json:"edited"`
	Time      string    `json:"time"`
	HTML      string    `json:"html"`
	Files     []string  `json:"files,omitempty"`
	Replies   []message `json:"replies,omitempty"`
}

// fleetRow is one client as the fake HBR has it now.
type fleetRow struct {
	ID      string `json:"id"`
	Name    string `json:"name"`
	Version string `json:"version"`
	Latest  string `json:"latest"`
	Status  string `json:"status"`
	Note    string `json:"note"`
}

type state struct {
	Channel  string     `json:"channel"`
	People   []person   `json:"people"`
	Messages []message  `json:"messages"`
	Fleet    []fleetRow `json:"fleet"`
	Command  string     `json:"suggested_command"`
}

// messages lists the channel as user "as" sees it: ephemeral messages
// only when they are theirs, replies under their parent, deleted ones
// gone.
func (p *page) messages(w http.ResponseWriter, r *http.Request) {
	as, ok := actor(r)
	if !ok {
		http.Error(w, "as: not one of the demo's users", http.StatusBadRequest)
		return
	}
	files := map[string]string{}
	for _, f := range p.d.Slack.Files() {
		files[f.ID] = cmpOr(f.Title, f.Name)
	}
	top := []message{}
	index := map[string]int{} // parent ts → index in top
	var orphans []slacktest.Message
	for _, m := range p.d.Slack.Messages(channelID) {
		if m.Deleted || (m.Ephemeral && m.EphemeralUser != as) {
			continue
		}
		v := p.view(m, files)
		isReply := m.ThreadTS != "" && m.ThreadTS != m.TS
		if !isReply {
			index[m.TS] = len(top)
			top = append(top, v)
			continue
		}
		if i, ok := index[m.ThreadTS]; ok {
			top[i].Replies = append(top[i].Replies, v)
		} else {
			orphans = append(orphans, m)
		}
		if m.ReplyBroadcast {
			top = append(top, v)
		}
	}
	for _, m := range orphans { // a reply whose parent is not shown
		top = append(top, p.view(m, files))
	}
	out := state{Channel: channelName, People: people, Messages: top, Command: fleetCommand()}
	for _, s := range fleet {
		inst, _ := p.d.HBR.Instance(s.ID)
		out.Fleet = append(out.Fleet, fleetRow{ID: s.ID, Name: inst.Name, Version: inst.Version, Latest: inst.MaxVersion, Status: inst.Status, Note: s.Note})
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(out)
}

func (p *page) view(m slacktest.Message, files map[string]string) message {
	p.mu.Lock()
	at, ok := p.seen[m.TS]
	if !ok {
		at = time.Now()
		p.seen[m.TS] = at
	}
	p.mu.Unlock()
	v := message{
		TS: m.TS, User: m.User, UserName: p.userName(m.User), IsBot: m.User == slacktest.BotUserID,
		Ephemeral: m.Ephemeral, Edited: m.Edits > 0, Time: at.Format("15:04:05"),
		HTML: p.r.blocks(m.Blocks, m.Text),
	}
	for _, id := range m.Files {
		v.Files = append(v.Files, cmpOr(files[id], id))
	}
	return v
}

// command sends "/hbr-upgrade text" as user "as".
func (p *page) command(w http.ResponseWriter, r *http.Request) {
	as, ok := actor(r)
	if !ok {
		http.Error(w, "as: not one of the demo's users", http.StatusBadRequest)
		return
	}
	text := strings.TrimSpace(r.FormValue("text"))
	if strings.HasPrefix(text, "/") {
		name, rest, _ := strings.Cut(text, " ")
		if name != "/hbr-upgrade" {
			http.Error(w, "only /hbr-upgrade is installed in this workspace", http.StatusBadRequest)
			return
		}
		text = strings.TrimSpace(rest)
	}
	id := p.d.Slack.SendSlashCommand(slacktest.SlashCommand{ChannelID: channelID, UserID: as, Text: text})
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{"envelope_id": id})
}

// click sends a button click on a stored message as user "as".
func (p *page) click(w http.ResponseWriter, r *http.Request) {
	as, ok := actor(r)
	if !ok {
		http.Error(w, "as: not one of the demo's users", http.StatusBadRequest)
		return
	}
	ch, ts, action := r.FormValue("channel"), r.FormValue("ts"), r.FormValue("action_id")
	if m, ok := p.d.Slack.Message(ch, ts); !ok || m.Deleted || (m.Ephemeral && m.EphemeralUser != as) || action == "" {
		http.Error(w, "no such message or button", http.StatusNotFound)
		return
	}
	id := p.d.Slack.SendBlockAction(slacktest.BlockAction{ChannelID: ch, MessageTS: ts, UserID: as, ActionID: action, Value: r.FormValue("value")})
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{"envelope_id": id})
}
