package slacktest

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/gorilla/websocket"
)

// maxRetries is how often Slack re-sends an unacknowledged envelope
// (retry_attempt 1..3).
const maxRetries = 3

// Ack is one acknowledgement frame received from a client.
type Ack struct {
	EnvelopeID   string
	Type         string          // the envelope's type ("slash_commands", ...); "" for an unknown envelope_id
	Payload      json.RawMessage // nil when the ack carried none
	At           time.Time
	Connection   int           // ID of the socket it arrived on (1, 2, ... in connect order)
	Latency      time.Duration // since the envelope's first delivery; 0 for unknown envelopes
	RetryAttempt int           // retry_attempt of the latest delivery before this ack
}

// envelope is one Socket Mode request, tracked across deliveries.
type envelope struct {
	id, typ    string
	payload    json.RawMessage
	accepts    bool
	retries    int // retry_attempt of the current delivery
	reason     string
	deliveries int
	firstSent  time.Time
	acked      bool
	timer      *time.Timer
	raw        []byte // SendRaw: written as-is, not tracked
}

type outFrame struct {
	data []byte    // hello/disconnect
	env  *envelope // or an envelope, rendered when written so retry_attempt is current
}

// conn is one open Socket Mode WebSocket. Only its writeLoop writes frames,
// because gorilla/websocket allows a single concurrent writer.
type conn struct {
	id       int
	ws       *websocket.Conn
	pending  []outFrame // guarded by Server.mu
	draining bool       // sent "disconnect": route nothing new here
	wake     chan struct{}
	done     chan struct{}
	closed   bool // guarded by Server.mu
}

func (c *conn) push(f outFrame) {
	c.pending = append(c.pending, f)
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// close drops the TCP connection without a close frame, like a network loss.
// Callers hold Server.mu.
func (c *conn) close() {
	if !c.closed {
		c.closed = true
		close(c.done)
		_ = c.ws.Close()
	}
}

var upgrader = websocket.Upgrader{
	// slack-go sends "Origin: https://api.slack.com", which the default
	// same-origin check would reject.
	CheckOrigin: func(*http.Request) bool { return true },
}

func (s *Server) handleLink(w http.ResponseWriter, r *http.Request) {
	ticket := r.URL.Query().Get("ticket")
	s.mu.Lock()
	valid := s.tickets[ticket]
	delete(s.tickets, ticket) // tickets are single-use
	s.mu.Unlock()
	if !valid {
		http.Error(w, "invalid or used ticket", http.StatusUnauthorized)
		return
	}
	ws, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	c := &conn{ws: ws, wake: make(chan struct{}, 1), done: make(chan struct{})}

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = ws.Close()
		return
	}
	s.nextConnID++
	c.id = s.nextConnID
	s.conns = append(s.conns, c)
	c.push(outFrame{data: marshalRaw(obj{
		"type": "hello", "num_connections": len(s.conns),
		"debug_info": obj{"host": "fake-applink", "started": time.Now().UTC().Format("2006-01-02 15:04:05.000"),
			"build_number": 1, "approximate_connection_time": 18060},
		"connection_info": obj{"app_id": AppID},
	})})
	queued := s.queue
	s.queue = nil
	for _, e := range queued {
		s.route(e)
	}
	s.wg.Add(2)
	s.notify()
	s.mu.Unlock()

	go s.writeLoop(c)
	s.readLoop(c)
}

func (s *Server) readLoop(c *conn) {
	defer s.wg.Done()
	for {
		_, data, err := c.ws.ReadMessage()
		at := time.Now() // before the lock: the fake's own contention is not the bot's latency
		if err != nil {
			s.mu.Lock()
			s.dropConn(c)
			s.mu.Unlock()
			return
		}
		var a struct {
			EnvelopeID string          `json:"envelope_id"`
			Payload    json.RawMessage `json:"payload"`
		}
		if json.Unmarshal(data, &a) == nil {
			s.runAckHooks(s.recordAck(c, a.EnvelopeID, a.Payload, at))
		}
	}
}

func (s *Server) writeLoop(c *conn) {
	defer s.wg.Done()
	ping := func() error {
		// A ping right away, then one per interval, keeps slack-go's
		// dead-man timer (which expects server PINGs) satisfied.
		return c.ws.WriteControl(websocket.PingMessage, []byte(strconv.FormatInt(time.Now().UnixNano(), 10)), time.Now().Add(5*time.Second))
	}
	fail := func(f *outFrame) {
		s.mu.Lock()
		s.dropConn(c)
		if f != nil && f.env != nil && f.env.raw == nil && !f.env.acked {
			// The frame never reached the client: undo the delivery.
			f.env.deliveries--
			stopTimer(f.env)
			s.route(f.env)
		}
		s.mu.Unlock()
	}
	var tick <-chan time.Time // nil, never fires, when pings are disabled
	if s.pingInterval > 0 {
		if ping() != nil {
			fail(nil)
			return
		}
		t := time.NewTicker(s.pingInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-c.done:
			return
		case <-tick:
			if ping() != nil {
				fail(nil)
				return
			}
		case <-c.wake:
			for {
				f, data, ok := s.nextFrame(c)
				if !ok {
					break
				}
				_ = c.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
				if c.ws.WriteMessage(websocket.TextMessage, data) != nil {
					fail(&f)
					return
				}
			}
		}
	}
}

// nextFrame pops c's next frame and, for envelopes, counts the delivery and
// arms the ack timer before the write, so an ack can never beat its record.
func (s *Server) nextFrame(c *conn) (outFrame, []byte, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(c.pending) > 0 && !c.closed {
		f := c.pending[0]
		c.pending = c.pending[1:]
		e := f.env
		switch {
		case e == nil:
			return f, f.data, true
		case e.raw != nil:
			return f, e.raw, true
		case e.acked:
			continue // a redelivery raced with a late ack
		}
		e.deliveries++
		if e.firstSent.IsZero() {
			e.firstSent = time.Now()
		}
		stopTimer(e)
		if attempt := e.deliveries; s.ackTimeout > 0 {
			e.timer = time.AfterFunc(s.ackTimeout, func() { s.ackTimedOut(e, attempt) })
		}
		s.notify()
		return f, marshalRaw(obj{"envelope_id": e.id, "type": e.typ, "payload": e.payload,
			"accepts_response_payload": e.accepts, "retry_attempt": e.retries, "retry_reason": e.reason}), true
	}
	return outFrame{}, nil, false
}

func stopTimer(e *envelope) {
	if e.timer != nil {
		e.timer.Stop()
		e.timer = nil
	}
}

func (s *Server) ackTimedOut(e *envelope, attempt int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || e.acked || e.deliveries != attempt || e.retries >= maxRetries {
		return
	}
	e.retries++
	e.reason = "timeout"
	s.route(e)
}

// dropConn forgets a socket and re-routes whatever it had not written yet.
// Callers hold s.mu.
func (s *Server) dropConn(c *conn) {
	c.close()
	for i, x := range s.conns {
		if x == c {
			s.conns = append(s.conns[:i:i], s.conns[i+1:]...)
			break
		}
	}
	pending := c.pending
	c.pending = nil
	for _, f := range pending {
		if f.env != nil && !f.env.acked {
			s.route(f.env)
		}
	}
	s.notify()
}

// route hands e to the next live socket, round-robin, or queues it until one
// connects. Callers hold s.mu.
func (s *Server) route(e *envelope) {
	if s.closed {
		return
	}
	var live []*conn
	for _, c := range s.conns {
		if !c.draining && !c.closed {
			live = append(live, c)
		}
	}
	if len(live) == 0 {
		s.queue = append(s.queue, e)
		return
	}
	live[s.rr%len(live)].push(outFrame{env: e})
	s.rr++
}

func (s *Server) recordAck(c *conn, id string, payload json.RawMessage, at time.Time) Ack {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := Ack{EnvelopeID: id, At: at, Connection: c.id}
	if len(payload) > 0 && string(payload) != "null" {
		a.Payload = append(json.RawMessage(nil), payload...)
	}
	if e, ok := s.envelopes[id]; ok {
		a.Type = e.typ
		a.Latency, a.RetryAttempt = a.At.Sub(e.firstSent), e.retries
		if !e.acked {
			e.acked = true
			stopTimer(e)
			if e.typ == "slash_commands" {
				s.applySlashResponse(e, a.Payload)
			}
		}
	}
	s.acks = append(s.acks, a)
	s.notify()
	return a
}

// applySlashResponse shows the message in a slash command's ack payload, as
// Slack does: ephemeral to the invoking user unless response_type is
// "in_channel". Invalid payloads are ignored (Slack shows an error instead).
// Callers hold s.mu.
func (s *Server) applySlashResponse(e *envelope, payload json.RawMessage) {
	var resp struct {
		Text         string          `json:"text"`
		Blocks       json.RawMessage `json:"blocks"`
		ResponseType string          `json:"response_type"`
	}
	var cmd struct {
		ChannelID string `json:"channel_id"`
		UserID    string `json:"user_id"`
	}
	if json.Unmarshal(payload, &resp) != nil || json.Unmarshal(e.payload, &cmd) != nil {
		return
	}
	var blocks json.RawMessage
	if len(resp.Blocks) > 0 && string(resp.Blocks) != "null" {
		var bad string
		if blocks, bad = normalizeBlocks(string(resp.Blocks)); bad != "" {
			return
		}
	}
	if resp.Text != "" || len(blocks) > 0 {
		s.postResponse(cmd.ChannelID, cmd.UserID, "", resp.ResponseType, resp.Text, blocks)
	}
}

// SendEnvelope delivers a Socket Mode request of type typ ("slash_commands",
// "interactive", "events_api") with the given payload and returns its
// envelope_id. payload may be a json.RawMessage or anything json.Marshal takes.
func (s *Server) SendEnvelope(typ string, payload any, acceptsResponsePayload bool) string {
	raw, ok := payload.(json.RawMessage)
	if !ok {
		raw = marshalRaw(payload)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	e := &envelope{id: newEnvelopeID(), typ: typ, payload: raw, accepts: acceptsResponsePayload}
	s.envelopes[e.id] = e
	s.route(e)
	return e.id
}

// SendRaw writes frame as-is to the next socket (e.g. malformed JSON); it is
// neither tracked nor redelivered.
func (s *Server) SendRaw(frame []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.route(&envelope{raw: append([]byte(nil), frame...)})
}

// Disconnect sends {"type":"disconnect","reason":reason} to every socket, as
// Slack does before refreshing a connection. slack-go then drops the socket
// and calls apps.connections.open again. Nothing new is routed to a socket
// after its disconnect frame.
func (s *Server) Disconnect(reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	frame := marshalRaw(obj{"type": "disconnect", "reason": reason, "debug_info": obj{"host": "fake"}})
	for _, c := range s.conns {
		if !c.draining {
			c.draining = true
			c.push(outFrame{data: frame})
		}
	}
	s.notify()
}

// DropConnections closes every socket abruptly (no close frame), like a
// network failure. Unwritten envelopes are re-routed; written but unacked
// ones come back through redelivery.
func (s *Server) DropConnections() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range append([]*conn(nil), s.conns...) {
		s.dropConn(c)
	}
}

// Connections is the number of open sockets that have not been sent a
// disconnect.
func (s *Server) Connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.liveConns()
}

func (s *Server) liveConns() int {
	n := 0
	for _, c := range s.conns {
		if !c.draining && !c.closed {
			n++
		}
	}
	return n
}

// WaitConnections blocks until at least n sockets are open (not counting
// sockets that were sent a disconnect).
func (s *Server) WaitConnections(ctx context.Context, n int) error {
	err := s.wait(ctx, func() bool { return s.liveConns() >= n })
	if err != nil {
		return fmt.Errorf("waiting for %d connection(s): %w", n, err)
	}
	return nil
}

// WaitAck blocks until envelopeID has been acknowledged and returns the
// first ack for it.
func (s *Server) WaitAck(ctx context.Context, envelopeID string) (Ack, error) {
	var got Ack
	err := s.wait(ctx, func() bool {
		for _, a := range s.acks {
			if a.EnvelopeID == envelopeID {
				got = a
				return true
			}
		}
		return false
	})
	if err != nil {
		return Ack{}, fmt.Errorf("waiting for ack of %s: %w", envelopeID, err)
	}
	return got, nil
}

// WaitAcks blocks until envelopeID has been acknowledged n times (a
// redelivered envelope is acked again) and returns those acks, in order.
func (s *Server) WaitAcks(ctx context.Context, envelopeID string, n int) ([]Ack, error) {
	var got []Ack
	err := s.wait(ctx, func() bool {
		got = got[:0]
		for _, a := range s.acks {
			if a.EnvelopeID == envelopeID {
				got = append(got, a)
			}
		}
		return len(got) >= n
	})
	if err != nil {
		return got, fmt.Errorf("waiting for %d acks of %s (have %d): %w", n, envelopeID, len(got), err)
	}
	return got, nil
}

// Acks returns every ack received, in arrival order (duplicates included).
func (s *Server) Acks() []Ack {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Ack(nil), s.acks...)
}

// Deliveries is how many times envelopeID has been written to a socket.
func (s *Server) Deliveries(envelopeID string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e, ok := s.envelopes[envelopeID]; ok {
		return e.deliveries
	}
	return 0
}

// WaitDeliveries blocks until envelopeID has been written n times.
func (s *Server) WaitDeliveries(ctx context.Context, envelopeID string, n int) error {
	return s.wait(ctx, func() bool {
		e, ok := s.envelopes[envelopeID]
		return ok && e.deliveries >= n
	})
}

func newEnvelopeID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	b[6], b[8] = b[6]&0x0f|0x40, b[8]&0x3f|0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}
