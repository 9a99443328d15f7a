// Package slacktest is an in-process fake of the parts of Slack that hbrbot
// uses: Socket Mode (apps.connections.open + the WebSocket link), a handful of
// Web API methods, and response_url webhooks. It is meant to be driven by the
// real, unmodified github.com/slack-go/slack client, in the spirit of
// net/http/httptest: NewServer listens on 127.0.0.1:0, point
// slack.OptionAPIURL at APIURL, and assert on what was recorded.
//
// The wire formats follow what slack-go v0.35.0 sends and accepts (see
// /work/shared/notes/slack.md, parts A0-A3). Where Slack's behaviour is
// undocumented the choice made here is written down next to the code.
//
// Every state change wakes the Wait* helpers, so tests never need to sleep.
package slacktest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

// ErrClosed is returned by the Wait* helpers once the server is closed.
var ErrClosed = errors.New("slacktest: server closed")

// Fixed identities of the fake workspace. Messages posted with the bot token
// are attributed to BotUserID/BotID, as Slack does for a bot token.
const (
	BotUserID = "U0BOT"
	BotID     = "B0BOT"
	AppID     = "A0TEST"
)

// Option configures a Server.
type Option func(*Server)

// WithPingInterval sets how often WebSocket PING frames are sent (default 1s).
// slack-go drops a socket that sees no PING within its own OptionPingInterval
// (30s by default), so this must stay below the client's value. 0 disables
// pings, to reproduce the reconnect loop a silent server causes.
func WithPingInterval(d time.Duration) Option { return func(s *Server) { s.pingInterval = d } }

// WithAckTimeout sets how long an envelope may stay unacknowledged before it
// is delivered again (default 3s, Slack's limit). 0 disables redelivery.
func WithAckTimeout(d time.Duration) Option { return func(s *Server) { s.ackTimeout = d } }

// WithTeamID sets the workspace ID (default "T0TEST").
func WithTeamID(id string) Option { return func(s *Server) { s.teamID = id } }

// WithEnterpriseID makes the workspace part of an Enterprise Grid org
// (auth.test and payloads then carry its ID).
func WithEnterpriseID(id string) Option { return func(s *Server) { s.enterpriseID = id } }

// Call is one recorded HTTP request.
type Call struct {
	Method string         // Web API method, or "response_url"
	Form   url.Values     // query + form body (includes "token")
	JSON   map[string]any // decoded body of response_url posts
	Token  string         // the credential presented, from the form or a Bearer header
	At     time.Time
	Status int    // HTTP status answered
	Error  string // Slack "error" answered, "" on success
}

// Message is a stored message as the fake sees it.
type Message struct {
	Channel, TS, ThreadTS, Text, User string
	Blocks                            json.RawMessage // nil when the message has no blocks
	Metadata                          json.RawMessage // {"event_type":..,"event_payload":..} or nil
	Ephemeral                         bool
	EphemeralUser                     string
	ReplyBroadcast                    bool
	Deleted                           bool // removed via response_url delete_original
	Edits                             int  // chat.update / replace_original count

	// Files are the IDs of the files the message shares: Slack posts a file
	// shared by files.completeUploadExternal as a message with "files".
	Files []string
}

// User is someone known to users.info and used for display names in
// payloads. Unknown IDs are full members of the server's workspace, with a
// name derived from the ID.
type User struct {
	ID, Name, RealName string
	IsBot, Deleted     bool
	// TeamID is the user's own workspace (default the server's): another
	// one for a Slack Connect member of another organisation.
	TeamID, EnterpriseID string
	// Guests: multi-channel (restricted) and single-channel (ultra).
	IsRestricted, IsUltraRestricted bool
}

// Channel is a conversation known to conversations.info. Unknown IDs are
// public channels of the server's workspace, shared with nobody.
type Channel struct {
	ID        string
	IsPrivate bool
	// IsExtShared: shared with another organisation (Slack Connect).
	IsExtShared bool
}

type fault struct {
	status     int
	retryAfter time.Duration
	err        string
}

type responseURL struct {
	channel, user string
	messageTS     string // source message of a block action; "" for slash commands
	uses          int
}

// Server is a fake Slack. Its zero value is not usable; call NewServer.
type Server struct {
	botToken, appToken, teamID string
	enterpriseID               string
	pingInterval, ackTimeout   time.Duration

	httpSrv *http.Server
	base    string // "http://127.0.0.1:PORT"
	wg      sync.WaitGroup

	mu      sync.Mutex
	changed chan struct{} // closed and replaced on every change; see notify
	closed  bool

	calls     map[string][]Call
	faults    map[string][]fault
	openError string

	tsSeq    int64
	messages []*Message // in ts order, since ts is assigned monotonically
	byKey    map[string]*Message

	userGroups map[string][]string
	users      map[string]User
	channels   map[string]Channel
	respURLs   map[int]*responseURL
	nextResp   int
	files      fileStore // see files.go

	// Socket Mode state, see socket.go.
	tickets    map[string]bool
	nextTicket int
	conns      []*conn // open sockets, in connection order
	nextConnID int
	rr         int // round-robin cursor
	queue      []*envelope
	envelopes  map[string]*envelope
	acks       []Ack

	// Test-only hooks, see hooks.go.
	ackHooks []*ackHook
	holds    []*Hold
}

// NewServer starts a fake Slack on 127.0.0.1 with a random port.
func NewServer(opts ...Option) *Server {
	s := &Server{
		botToken:     "xoxb-test",
		appToken:     "xapp-test",
		teamID:       "T0TEST",
		pingInterval: time.Second,
		ackTimeout:   3 * time.Second,
		changed:      make(chan struct{}),
		calls:        map[string][]Call{},
		faults:       map[string][]fault{},
		byKey:        map[string]*Message{},
		userGroups:   map[string][]string{},
		users:        map[string]User{},
		channels:     map[string]Channel{},
		respURLs:     map[int]*responseURL{},
		tickets:      map[string]bool{},
		envelopes:    map[string]*envelope{},
	}
	for _, o := range opts {
		o(s)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(fmt.Sprintf("slacktest: listen: %v", err))
	}
	s.base = "http://" + ln.Addr().String()
	mux := http.NewServeMux()
	mux.HandleFunc("/api/", s.handleAPI)
	mux.HandleFunc("/link/", s.handleLink)
	mux.HandleFunc("/response/", s.handleResponseURL)
	mux.HandleFunc("/upload/", s.handleUpload)
	mux.HandleFunc("/archives/", func(w http.ResponseWriter, r *http.Request) {
		_, _ = fmt.Fprintf(w, "permalink %s\n", r.URL.Path)
	})
	s.httpSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_ = s.httpSrv.Serve(ln)
	}()
	return s
}

// Close stops the server, drops every socket and wakes all waiters.
func (s *Server) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	for _, e := range s.envelopes {
		stopTimer(e)
	}
	for _, c := range s.conns {
		c.close()
	}
	for _, h := range slices.Clone(s.holds) {
		h.end()
	}
	s.notify()
	s.mu.Unlock()
	_ = s.httpSrv.Close() // hijacked WebSockets are not covered; closed above
	s.wg.Wait()
}

// APIURL is the value for slack.OptionAPIURL, with the trailing slash
// slack-go needs (it concatenates endpoint+method).
func (s *Server) APIURL() string { return s.base + "/api/" }

// URL is the server root, "http://127.0.0.1:PORT".
func (s *Server) URL() string { return s.base }

// notify wakes every waiter. Callers hold s.mu.
func (s *Server) notify() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// wait runs check under the lock until it reports done, re-running it after
// every change. It is the single event-driven waiting primitive.
func (s *Server) wait(ctx context.Context, check func() bool) error {
	for {
		s.mu.Lock()
		if check() {
			s.mu.Unlock()
			return nil
		}
		if s.closed {
			s.mu.Unlock()
			return ErrClosed
		}
		ch := s.changed
		s.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// RateLimit makes the next n calls of method answer HTTP 429 with a
// Retry-After header (whole seconds, rounded up, at least 1) and
// {"ok":false,"error":"ratelimited"}, which slack-go turns into
// *slack.RateLimitedError. method may be "response_url" or "upload_url".
func (s *Server) RateLimit(method string, n int, retryAfter time.Duration) {
	s.addFaults(method, n, fault{status: http.StatusTooManyRequests, retryAfter: retryAfter, err: "ratelimited"})
}

// FailNext makes the next n calls of method answer {"ok":false,"error":slackError}
// with HTTP 200, as Slack does for API errors. For "response_url" the answer is
// HTTP 400 with that body instead, since webhooks report errors by status;
// the same goes for "upload_url" (see files.go).
// Faults queue up in the order they were added.
func (s *Server) FailNext(method string, n int, slackError string) {
	s.addFaults(method, n, fault{status: http.StatusOK, err: slackError})
}

func (s *Server) addFaults(method string, n int, f fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for range n {
		s.faults[method] = append(s.faults[method], f)
	}
}

// takeFault pops the next injected fault for method. Callers hold s.mu.
func (s *Server) takeFault(method string) (fault, bool) {
	q := s.faults[method]
	if len(q) == 0 {
		return fault{}, false
	}
	s.faults[method] = q[1:]
	return q[0], true
}

// SetConnectionsOpenError makes every apps.connections.open answer
// {"ok":false,"error":err} until called again with "". slack-go treats
// invalid_auth, not_authed, account_inactive and token_revoked as fatal and
// retries anything else with backoff.
func (s *Server) SetConnectionsOpenError(err string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.openError = err
}

// SetUserGroup defines the members usergroups.users.list returns for id.
func (s *Server) SetUserGroup(id string, users ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.userGroups[id] = append([]string{}, users...)
}

// SetUser registers a user for users.info and payload display names.
func (s *Server) SetUser(u User) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.users[u.ID] = u
}

// SetChannel registers a conversation for conversations.info.
func (s *Server) SetChannel(c Channel) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.channels[c.ID] = c
}

// user is id's record, the server's member by default. Callers hold s.mu.
func (s *Server) user(id string) User {
	u, ok := s.users[id]
	if !ok {
		u = User{ID: id, Name: strings.ToLower(id)}
	}
	if u.TeamID == "" {
		u.TeamID, u.EnterpriseID = s.teamID, s.enterpriseID
	}
	return u
}

// userName returns the display name for id. Callers hold s.mu.
func (s *Server) userName(id string) string {
	if u, ok := s.users[id]; ok && u.Name != "" {
		return u.Name
	}
	return strings.ToLower(id)
}

func (s *Server) record(c Call) {
	s.calls[c.Method] = append(s.calls[c.Method], c)
	s.notify()
}

// Calls returns copies of the recorded calls of method, oldest first.
func (s *Server) Calls(method string) []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Call, len(s.calls[method]))
	for i, c := range s.calls[method] {
		out[i] = copyCall(c)
	}
	return out
}

func copyCall(c Call) Call {
	if c.Form != nil {
		c.Form = cloneValues(c.Form)
	}
	return c // JSON maps are never mutated after recording
}

func cloneValues(v url.Values) url.Values {
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

// WaitCall blocks until a call of method matching match (nil matches all)
// has been recorded, whether before or after WaitCall was called.
func (s *Server) WaitCall(ctx context.Context, method string, match func(Call) bool) (Call, error) {
	cs, err := s.WaitCalls(ctx, method, 1, match)
	if err != nil {
		return Call{}, err
	}
	return cs[0], nil
}

// WaitCalls blocks until n calls of method matching match have been recorded
// and returns the first n of them.
func (s *Server) WaitCalls(ctx context.Context, method string, n int, match func(Call) bool) ([]Call, error) {
	var got []Call
	seen := 0
	err := s.wait(ctx, func() bool {
		// Calls are append-only, so only the new ones need looking at.
		for _, c := range s.calls[method][seen:] {
			seen++
			if match == nil || match(c) {
				got = append(got, copyCall(c))
			}
		}
		return len(got) >= n
	})
	if err != nil {
		return got, fmt.Errorf("waiting for %d %s call(s), got %d: %w", n, method, len(got), err)
	}
	return got[:n], nil
}

// Message returns the stored message channel/ts, including ephemeral and
// deleted ones.
func (s *Server) Message(channel, ts string) (Message, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.byKey[channel+"/"+ts]
	if !ok {
		return Message{}, false
	}
	return copyMessage(m), true
}

// Thread returns the replies to channel/ts in ts order, as conversations.replies
// would (no parent, no ephemeral or deleted messages).
func (s *Server) Thread(channel, ts string) []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Message
	for _, m := range s.messages {
		if m.Channel == channel && m.ThreadTS == ts && !m.Ephemeral && !m.Deleted {
			out = append(out, copyMessage(m))
		}
	}
	return out
}

// Messages returns every message stored for channel in ts order, including
// thread replies, ephemeral and deleted messages.
func (s *Server) Messages(channel string) []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Message
	for _, m := range s.messages {
		if m.Channel == channel {
			out = append(out, copyMessage(m))
		}
	}
	return out
}

// WaitMessage blocks until a message of channel (thread replies, ephemeral
// and deleted ones included) matches match, as it is then, and returns it.
// A message that changes (chat.update, replace_original) is looked at
// again after each change.
func (s *Server) WaitMessage(ctx context.Context, channel string, match func(Message) bool) (Message, error) {
	var got Message
	err := s.wait(ctx, func() bool {
		for _, m := range s.messages {
			if m.Channel == channel && match(copyMessage(m)) {
				got = copyMessage(m)
				return true
			}
		}
		return false
	})
	if err != nil {
		return Message{}, fmt.Errorf("waiting for a message in %s: %w", channel, err)
	}
	return got, nil
}

func copyMessage(m *Message) Message {
	c := *m
	c.Blocks = append(json.RawMessage(nil), m.Blocks...)
	c.Metadata = append(json.RawMessage(nil), m.Metadata...)
	c.Files = append([]string(nil), m.Files...)
	if len(m.Blocks) == 0 {
		c.Blocks = nil
	}
	if len(m.Metadata) == 0 {
		c.Metadata = nil
	}
	return c
}

// nextTS returns a fresh message timestamp. Slack's ts are "seconds.micros"
// and unique per channel; these are unique server-wide, increase by 100µs and
// sort correctly as strings. Callers hold s.mu.
func (s *Server) nextTS() string {
	s.tsSeq++
	n := s.tsSeq * 100
	return fmt.Sprintf("%d.%06d", 1700000000+n/1000000, n%1000000)
}

// store inserts m keeping s.messages in ts order. Callers hold s.mu.
func (s *Server) store(m *Message) {
	s.messages = append(s.messages, m)
	sort.SliceStable(s.messages, func(i, j int) bool { return s.messages[i].TS < s.messages[j].TS })
	s.byKey[m.Channel+"/"+m.TS] = m
}

// newResponseURL hands out a response_url. Callers hold s.mu.
func (s *Server) newResponseURL(channel, user, messageTS string) string {
	s.nextResp++
	s.respURLs[s.nextResp] = &responseURL{channel: channel, user: user, messageTS: messageTS}
	return fmt.Sprintf("%s/response/%d", s.base, s.nextResp)
}

// PostAs stores a message that a user (or another app) posted in channel,
// in the thread of threadTS when it is not "", with metadata when given:
// what the bot must not take for its own. It returns the message's ts.
func (s *Server) PostAs(user, channel, threadTS, text string, metadata any) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := &Message{Channel: channel, ThreadTS: threadTS, Text: text, User: user, TS: s.nextTS()}
	if metadata != nil {
		m.Metadata, _ = json.Marshal(metadata)
	}
	s.store(m)
	return m.TS
}
