package redistest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
)

// Proxy is a TCP proxy on loopback between one client (a bot replica)
// and a Server, that can stop the client's writes at an exact command: a
// test arms it with HoldAfter, and once the first command naming the
// pattern has been forwarded, every later command the client sends, on
// any of its connections, new ones included, is held back. Replies keep
// flowing, so the client hears the answer to that last command. A test
// can so freeze a process between two writes (the crash window between
// them), kill it, and find Redis exactly as the process left it.
//
// The client's bytes are read command by command (RESP arrays of bulk
// strings, or inline commands), so a command is forwarded whole or not
// at all, even when a pipeline sends several in one write.
type Proxy struct {
	Addr string // host:port clients connect to

	srv *Server
	ln  net.Listener

	mu      sync.Mutex
	pattern []byte // armed by HoldAfter; nil: not armed
	holding bool
	held    chan struct{} // closed once holding starts
	conns   map[*proxyConn]struct{}
	closed  bool
	wg      sync.WaitGroup
}

// proxyConn is one client connection and its upstream.
type proxyConn struct {
	client, upstream net.Conn
	w                *bufio.Writer // to upstream, written under Proxy.mu
	pending          []byte        // held commands, under Proxy.mu
}

// StartProxy starts a proxy to srv on a free loopback port, closed with
// the test.
func StartProxy(t testing.TB, srv *Server) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("proxy: %v", err)
	}
	p := &Proxy{Addr: ln.Addr().String(), srv: srv, ln: ln, held: make(chan struct{}), conns: map[*proxyConn]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.Close)
	return p
}

// URL is the redis:// URL of the test's database, through the proxy.
func (p *Proxy) URL() string { return "redis://" + p.Addr + "/" + strconv.Itoa(p.srv.DB) }

// HoldAfter arms the proxy: the first command containing pattern (a key
// name, say) is forwarded, and from then on every command is held until
// Release. Held returns a channel closed at that moment.
func (p *Proxy) HoldAfter(pattern string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pattern = []byte(pattern)
}

// Held is closed once the proxy holds the client's commands.
func (p *Proxy) Held() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.held
}

// Release forwards what was held, each connection's commands in their
// order (but those of a connection whose client went away meanwhile: they
// are dropped, as a killed process's unsent writes are), and lets later
// commands through. The proxy can be armed again.
func (p *Proxy) Release() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.holding {
		return
	}
	p.holding = false
	p.held = make(chan struct{})
	for c := range p.conns {
		if len(c.pending) > 0 {
			c.w.Write(c.pending)
			c.w.Flush()
		}
		c.pending = nil
	}
}

// Close stops the proxy and closes every connection.
func (p *Proxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.ln.Close()
	for c := range p.conns {
		c.client.Close()
		c.upstream.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		upstream, err := net.Dial("tcp", p.srv.Addr)
		if err != nil {
			client.Close()
			continue
		}
		c := &proxyConn{client: client, upstream: upstream, w: bufio.NewWriter(upstream)}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			client.Close()
			upstream.Close()
			return
		}
		p.conns[c] = struct{}{}
		p.mu.Unlock()
		p.wg.Add(2)
		go p.toServer(c)
		go func() { // replies flow whatever is held
			defer p.wg.Done()
			io.Copy(client, upstream)
			client.Close()
		}()
	}
}

// toServer forwards c's commands one by one, or holds them.
func (p *Proxy) toServer(c *proxyConn) {
	defer p.wg.Done()
	r := bufio.NewReader(c.client)
	for {
		cmd, err := readCommand(r)
		if err != nil {
			// The client went away (or spoke no RESP): what it had not yet
			// got through dies with it.
			p.mu.Lock()
			delete(p.conns, c)
			p.mu.Unlock()
			c.upstream.Close()
			return
		}
		p.mu.Lock()
		if p.holding {
			c.pending = append(c.pending, cmd...)
			p.mu.Unlock()
			continue
		}
		c.w.Write(cmd)
		if p.pattern != nil && bytes.Contains(cmd, p.pattern) {
			// Decided before the command leaves: no command read after it,
			// on any connection, can be forwarded. Those read before it go.
			p.pattern, p.holding = nil, true
			close(p.held)
			for o := range p.conns {
				o.w.Flush()
			}
		} else if r.Buffered() == 0 { // a pipeline's commands leave together
			c.w.Flush()
		}
		p.mu.Unlock()
	}
}

// readCommand reads one command as a client sends it: a RESP array of
// bulk strings, or an inline command (one line).
func readCommand(r *bufio.Reader) ([]byte, error) {
	line, err := r.ReadBytes('\n')
	if err != nil {
		return nil, err
	}
	if line[0] != '*' {
		return line, nil
	}
	n, err := respLength(line)
	if err != nil {
		return nil, err
	}
	cmd := line
	for range n {
		head, err := r.ReadBytes('\n')
		if err != nil {
			return nil, err
		}
		if head[0] != '$' {
			return nil, fmt.Errorf("proxy: a command's element is %q, not a bulk string", head)
		}
		size, err := respLength(head)
		if err != nil {
			return nil, err
		}
		cmd = append(cmd, head...)
		if size < 0 {
			continue
		}
		body := make([]byte, size+2) // and its CRLF
		if _, err := io.ReadFull(r, body); err != nil {
			return nil, err
		}
		cmd = append(cmd, body...)
	}
	return cmd, nil
}

// respLength reads the number of "*3\r\n" or "$5\r\n".
func respLength(line []byte) (int, error) {
	s := string(bytes.TrimRight(line[1:], "\r\n"))
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, errors.New("proxy: bad RESP length " + strconv.Quote(s))
	}
	return n, nil
}
