// Package botproc is the one place the tests and the load benchmark
// (cmd/hbrbot-bench) get a running bot from: it builds the hbrbot binary,
// starts it as a child process, waits for its readiness (/readyz), reads
// its metrics (/metrics), stops it, and picks free loopback ports. Tests
// that run the bot in-process (run()) use its port, readiness and metrics
// helpers too.
package botproc

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"
)

// ReadyTimeout bounds every wait on /readyz: far above what a bot needs to
// connect to Slack and Redis (even built with -race on a slow machine), so
// a hang still ends with an error.
const ReadyTimeout = 60 * time.Second

// pollEvery is how often /readyz and /metrics are asked while waiting:
// readiness has no event to wait on, it is the bot's own answer.
const pollEvery = 10 * time.Millisecond

// client bounds one request to a bot that may be stuck.
var client = &http.Client{Timeout: 2 * time.Second}

// FreePort is a free loopback TCP port. Another process may take it before
// it is used; callers retry or fail loudly.
func FreePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// FreeAddr is FreePort as a 127.0.0.1:port address.
func FreeAddr() (string, error) {
	port, err := FreePort()
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("127.0.0.1:%d", port), nil
}

// RaceEnabled reports whether the running binary was built with the race
// detector.
func RaceEnabled() bool {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range bi.Settings {
		if s.Key == "-race" {
			return s.Value == "true"
		}
	}
	return false
}

// Build builds ./cmd/hbrbot of the module the working directory is in
// into dir and returns the binary's path. It builds with the race
// detector when the running binary has it (go test -race).
func Build(ctx context.Context, dir string) (string, error) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		return "", fmt.Errorf("the go command is needed to build the bot: %w", err)
	}
	out, err := exec.CommandContext(ctx, goBin, "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the hbrbot module: run from the repository")
	}
	bin := filepath.Join(dir, "hbrbot")
	args := []string{"build", "-buildvcs=false", "-o", bin}
	if RaceEnabled() {
		args = append(args, "-race")
	}
	args = append(args, "./cmd/hbrbot")
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = filepath.Dir(gomod)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return bin, nil
}

// Config is how to start one bot process.
type Config struct {
	Bin string   // the binary (Build)
	Env []string // its whole environment, KEY=VALUE: nothing is inherited
	Dir string   // its working directory: one without a stray .env
	// Addr is its HBRBOT_HTTP_ADDR, added to Env; "" picks a free one.
	Addr string
	// Stdout and Stderr, when set, get what the process writes. Stderr (its
	// log) is also kept, the last part of it, for error messages.
	Stdout, Stderr io.Writer
}

// Proc is a running (or exited) bot process.
type Proc struct {
	Addr string    // its HTTP address: /readyz, /metrics
	Cmd  *exec.Cmd // started; its ProcessState is set once Exited is closed

	exited chan struct{}
	err    error // Wait's, once exited is closed
	tail   *tailBuffer
}

// Start starts the bot. It does not wait for readiness: AwaitReady does.
func Start(c Config) (*Proc, error) {
	addr := c.Addr
	if addr == "" {
		var err error
		if addr, err = FreeAddr(); err != nil {
			return nil, err
		}
	}
	p := &Proc{Addr: addr, exited: make(chan struct{}), tail: &tailBuffer{max: 64 << 10}}
	p.Cmd = exec.Command(c.Bin)
	p.Cmd.Dir = c.Dir
	p.Cmd.Env = append(append([]string(nil), c.Env...), "HBRBOT_HTTP_ADDR="+addr)
	p.Cmd.Stdout = c.Stdout
	p.Cmd.Stderr = p.tail
	if c.Stderr != nil {
		p.Cmd.Stderr = io.MultiWriter(c.Stderr, p.tail)
	}
	if err := p.Cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", c.Bin, err)
	}
	go func() {
		p.err = p.Cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// Exited is closed once the process has exited; Err is set then.
func (p *Proc) Exited() <-chan struct{} { return p.exited }

// Err is how the process exited (nil: status 0). Call it after Exited.
func (p *Proc) Err() error { return p.err }

// Tail is the last n lines the process wrote to stderr.
func (p *Proc) Tail(n int) string { return p.tail.lines(n) }

// AwaitReady waits until /readyz answers 200. An error names how the
// process exited, if it did, and carries its last log lines.
func (p *Proc) AwaitReady(ctx context.Context) error {
	return p.AwaitReadyz(ctx, http.StatusOK)
}

// AwaitReadyz waits until /readyz answers status (503: not ready).
func (p *Proc) AwaitReadyz(ctx context.Context, status int) error {
	if err := AwaitReadyz(ctx, p.Addr, status, p.exited); err != nil {
		if p.exitedNow() {
			err = fmt.Errorf("%w (exit: %v)", err, p.err)
		}
		return fmt.Errorf("%w; its log ends:\n%s", err, p.Tail(30))
	}
	return nil
}

func (p *Proc) exitedNow() bool {
	select {
	case <-p.exited:
		return true
	default:
		return false
	}
}

// Stop stops the process as an orchestrator does: SIGTERM, then SIGKILL
// when it is still running after grace. It returns nil only when the
// process exited by itself with status 0.
func (p *Proc) Stop(grace time.Duration) error {
	if p.exitedNow() {
		return p.exitError()
	}
	if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil && !p.exitedNow() {
		return fmt.Errorf("SIGTERM: %w", err)
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.exited:
		return p.exitError()
	case <-t.C:
		_ = p.Kill()
		return fmt.Errorf("still running %v after SIGTERM: killed; its log ends:\n%s", grace, p.Tail(30))
	}
}

func (p *Proc) exitError() error {
	if p.err != nil {
		return fmt.Errorf("exited with %v; its log ends:\n%s", p.err, p.Tail(30))
	}
	return nil
}

// Kill kills the process with SIGKILL and waits until it is gone.
func (p *Proc) Kill() error {
	if p.exitedNow() {
		return nil
	}
	if err := p.Cmd.Process.Kill(); err != nil && !p.exitedNow() {
		return err
	}
	<-p.exited
	return nil
}

// AwaitReadyz asks http://addr/readyz until it answers status, the bot
// exits (exited is closed; nil for none), ctx ends or ReadyTimeout passes.
func AwaitReadyz(ctx context.Context, addr string, status int, exited <-chan struct{}) error {
	ctx, cancel := context.WithTimeout(ctx, ReadyTimeout)
	defer cancel()
	url := "http://" + addr + "/readyz"
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	last := errors.New("none")
	for {
		a, err := get(ctx, url)
		switch {
		case err == nil && a.status == status:
			return nil
		case err == nil:
			last = fmt.Errorf("%d %s", a.status, strings.TrimSpace(string(a.body)))
		case ctx.Err() == nil: // not the wait's own end cutting the request short
			last = err
		}
		select {
		case <-exited:
			return fmt.Errorf("the bot exited before %s answered %d (last answer: %v)", url, status, last)
		case <-ctx.Done():
			return fmt.Errorf("%s did not answer %d: %w (last answer: %v)", url, status, ctx.Err(), last)
		case <-tick.C:
		}
	}
}

type answer struct {
	status int
	body   []byte
}

func get(ctx context.Context, url string) (answer, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return answer{}, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, body: body}, err
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if over := len(t.b) - t.max; over > 0 {
		t.b = append(t.b[:0], t.b[over:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) lines(n int) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	lines := bytes.Split(bytes.TrimRight(t.b, "\n"), []byte("\n"))
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
