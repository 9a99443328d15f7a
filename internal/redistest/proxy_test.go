package redistest

import (
	"bufio"
	"context"
	"errors"
	"net"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// rawConn is a connection to the proxy that writes RESP by hand, so a test
// controls what goes in one write.
type rawConn struct {
	t *testing.T
	net.Conn
	r *bufio.Reader
}

func dialRaw(t *testing.T, p *Proxy) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", p.Addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawConn{t: t, Conn: c, r: bufio.NewReader(c)}
}

// resp is a command as clients send it.
func resp(args ...string) string {
	s := "*" + strconv.Itoa(len(args)) + "\r\n"
	for _, a := range args {
		s += "$" + strconv.Itoa(len(a)) + "\r\n" + a + "\r\n"
	}
	return s
}

func (c *rawConn) send(s string) {
	c.t.Helper()
	if _, err := c.Write([]byte(s)); err != nil {
		c.t.Fatal(err)
	}
}

// expect reads one reply line and checks it.
func (c *rawConn) expect(want string) {
	c.t.Helper()
	line, err := c.r.ReadString('\n')
	if err != nil || strings.TrimRight(line, "\r\n") != want {
		c.t.Fatalf("reply %q, %v; want %q", line, err, want)
	}
}

// TestProxyHoldsAfterCommand: the proxy forwards until the command naming
// the pattern, that one whole (its reply comes back), and holds every
// later command, the rest of the same write and other connections' alike,
// until Release; a connection that went away meanwhile loses what was
// held of it.
func TestProxyHoldsAfterCommand(t *testing.T) {
	srv := StartOwn(t) // database 0: a held SELECT would stall dialRaw
	direct := srv.Client()
	p := StartProxy(t, srv)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	exists := func(key string) bool {
		t.Helper()
		n, err := direct.Exists(ctx, key).Result()
		if err != nil {
			t.Fatal(err)
		}
		return n == 1
	}

	viaProxy := redis.NewClient(&redis.Options{Addr: p.Addr, DB: srv.DB, MaxRetries: -1, ReadTimeout: 300 * time.Millisecond})
	defer viaProxy.Close()
	if err := viaProxy.Set(ctx, "before", "1", 0).Err(); err != nil || !exists("before") {
		t.Fatalf("not forwarded: %v", err)
	}
	first := dialRaw(t, p)
	if srv.Real { // miniredis reads no inline commands
		first.send("PING\r\n")
		first.expect("+PONG")
	}

	p.HoldAfter("proxy:trigger")
	// One write: the trigger, then a command that must not land.
	first.send(resp("SET", "proxy:trigger", "v") + resp("SET", "held:same", "1"))
	first.expect("+OK")
	select {
	case <-p.Held():
	default:
		t.Fatal("the trigger was forwarded but Held is not closed")
	}
	// The hold was decided before the trigger was written: nothing after
	// it can land, whenever the proxy reads it.
	if !exists("proxy:trigger") || exists("held:same") {
		t.Fatalf("trigger %v, the command after it %v; want only the trigger", exists("proxy:trigger"), exists("held:same"))
	}
	// Another connection, opened now, is held too.
	other := dialRaw(t, p)
	other.send(resp("SET", "held:other", "1"))
	other.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
	if _, err := other.r.ReadString('\n'); !isTimeout(err) {
		t.Fatalf("a held command was answered: %v", err)
	}
	other.SetReadDeadline(time.Time{})
	if err := viaProxy.Set(ctx, "held:pool", "1", 0).Err(); !isTimeout(err) {
		t.Fatalf("SET through the pool while held = %v, want a timeout", err)
	}
	if exists("held:other") || exists("held:pool") {
		t.Fatal("a held command landed")
	}
	// A client that goes away while held loses its held commands.
	gone := dialRaw(t, p)
	gone.send(resp("SET", "held:gone", "1"))
	isGone := func(c *proxyConn) bool { return c.client.RemoteAddr().String() == gone.LocalAddr().String() }
	awaitProxy(t, p, "the command held", func(c *proxyConn) bool { return isGone(c) && len(c.pending) > 0 }, true)
	gone.Close()
	awaitProxy(t, p, "the client gone", isGone, false)

	p.Release()
	first.expect("+OK") // held:same, forwarded now
	other.expect("+OK")
	if !exists("held:same") || !exists("held:other") || exists("held:gone") {
		t.Errorf("after Release: same %v, other %v, gone %v; want the first two only", exists("held:same"), exists("held:other"), exists("held:gone"))
	}
	if err := viaProxy.Set(ctx, "after", "1", 0).Err(); err != nil || !exists("after") {
		t.Errorf("not forwarded after Release: %v", err)
	}
}

// awaitProxy waits until some connection of the proxy matches (or, with
// want false, none does). The proxy has no event for it: its state is
// asked.
func awaitProxy(t *testing.T, p *Proxy, what string, match func(*proxyConn) bool, want bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		p.mu.Lock()
		found := false
		for c := range p.conns {
			found = found || match(c)
		}
		p.mu.Unlock()
		if found == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the proxy never had %s", what)
		}
		<-tick.C
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout() || errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded)
}
