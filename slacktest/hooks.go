package slacktest

import (
	"context"
	"fmt"
	"maps"
	"slices"
)

// Test-only hooks: they let a test act at a precise moment of the
// exchange (an ack read, a call received) without changing a byte of what
// the client sees. A held call is answered later, as a slow Slack answers;
// nothing else differs.

type ackHook struct{ f func(Ack) }

// OnAck makes f run for every ack the fake reads from now on, in the read
// loop of the socket it came on: after the ack is recorded (Acks and
// WaitAck see it, a slash command's response is shown), before that
// socket's next frame is read. It is the instant Slack has the ack: f can,
// e.g., kill the client's process before it gets any further. f runs
// without the server's lock, so it may call the server; for acks on
// different sockets it may run concurrently. Register it before sending
// the envelope whose ack it waits for (Ack.EnvelopeID and Ack.Type tell
// the acks apart); remove stops it.
func (s *Server) OnAck(f func(Ack)) (remove func()) {
	h := &ackHook{f: f}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ackHooks = append(s.ackHooks, h)
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		s.ackHooks = slices.DeleteFunc(s.ackHooks, func(x *ackHook) bool { return x == h })
	}
}

// runAckHooks runs the hooks registered when ack a was read. Callers do
// not hold s.mu.
func (s *Server) runAckHooks(a Ack) {
	s.mu.Lock()
	hooks := slices.Clone(s.ackHooks)
	s.mu.Unlock()
	for _, h := range hooks {
		h.f(a)
	}
}

// Hold is a set of methods whose calls the fake holds; see Server.Hold.
type Hold struct {
	s       *Server
	methods map[string]bool
	release chan struct{}
	held    map[string]int // guarded by s.mu
	done    bool           // guarded by s.mu
}

// Hold makes the calls of methods (Web API methods, "response_url" for
// webhook posts, "upload_url" for a file's bytes) that arrive from now on
// wait, received but neither acted on, recorded nor answered, until
// Release: Slack being slow to answer. A test holds, for instance, every
// call that shows something while it kills a client, to prove that the
// client showed nothing after a given moment. Released, each call is
// served then (faults apply then; its record keeps the time it arrived),
// whether or not its client is still there to read the answer: Slack acts
// on a request it has received. A client whose own timeout ends first
// sees that timeout.
func (s *Server) Hold(methods ...string) *Hold {
	h := &Hold{s: s, methods: map[string]bool{}, release: make(chan struct{}), held: map[string]int{}}
	for _, m := range methods {
		h.methods[m] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		h.done = true
		close(h.release)
		return h
	}
	s.holds = append(s.holds, h)
	return h
}

// Wait blocks until n calls of method have been held.
func (h *Hold) Wait(ctx context.Context, method string, n int) error {
	if err := h.s.wait(ctx, func() bool { return h.held[method] >= n }); err != nil {
		return fmt.Errorf("waiting for %d held %s call(s): %w", n, method, err)
	}
	return nil
}

// Release lets the held calls go on and holds no more. It returns how
// many calls of each method were held (methods with none are absent).
// Calling it again returns the same counts.
func (h *Hold) Release() map[string]int {
	h.s.mu.Lock()
	defer h.s.mu.Unlock()
	h.end()
	return maps.Clone(h.held)
}

// end releases h. Callers hold s.mu.
func (h *Hold) end() {
	if h.done {
		return
	}
	h.done = true
	close(h.release)
	h.s.holds = slices.DeleteFunc(h.s.holds, func(x *Hold) bool { return x == h })
}

// await makes a call of method that just arrived wait for every hold
// that names it. Callers do not hold s.mu.
func (s *Server) await(method string) {
	s.mu.Lock()
	var waits []chan struct{}
	for _, h := range s.holds {
		if h.methods[method] {
			h.held[method]++
			waits = append(waits, h.release)
		}
	}
	if len(waits) > 0 {
		s.notify()
	}
	s.mu.Unlock()
	for _, w := range waits {
		<-w
	}
}

// ConnectionIDs lists the open sockets that have not been sent a
// disconnect, by the IDs their acks carry (Ack.Connection), in connection
// order: a test that runs several clients tells them apart by it.
func (s *Server) ConnectionIDs() []int {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []int
	for _, c := range s.conns {
		if !c.draining && !c.closed {
			ids = append(ids, c.id)
		}
	}
	return ids
}
