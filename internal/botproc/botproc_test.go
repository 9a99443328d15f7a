package botproc

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestParseMetrics(t *testing.T) {
	m, err := ParseMetrics(`# HELP hbrbot_jobs_finished_total HBR jobs.
# TYPE hbrbot_jobs_finished_total counter
hbrbot_jobs_finished_total{final="completed"} 2
hbrbot_jobs_finished_total{final="failed"} 1
hbrbot_socket_mode_connected 1
hbrbot_report_lag_seconds_sum 0.25
go_info{version="go1.26 x"} 1
`)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Sum("hbrbot_jobs_finished_total"); got != 3 {
		t.Errorf("Sum = %v, want 3", got)
	}
	if got := m[`go_info{version="go1.26 x"}`]; got != 1 {
		t.Errorf("a label with a space: %v", m)
	}
	bad := m.Mismatches(Metrics{`hbrbot_jobs_finished_total{final="completed"}`: 2, "hbrbot_socket_mode_connected": 0, "nope": 1})
	if len(bad) != 2 || !strings.HasPrefix(bad[0], "hbrbot_socket_mode_connected = 1") || !strings.HasPrefix(bad[1], "nope: absent") {
		t.Errorf("Mismatches = %q", bad)
	}
	if _, err := ParseMetrics("novalue\n"); err == nil {
		t.Error("a line without a value parsed")
	}
}

func TestAwaitReadyz(t *testing.T) {
	var ready atomic.Bool
	var asked atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		switch {
		case r.URL.Path == "/metrics":
			w.Write([]byte("hbrbot_commands_total{outcome=\"accepted\"} 1\n"))
		case r.URL.Path != "/readyz":
			http.NotFound(w, r)
		case ready.Load():
			w.Write([]byte("ok\n"))
		default:
			if asked.Load() > 3 {
				ready.Store(true)
			}
			http.Error(w, "not ready\nredis: down", http.StatusServiceUnavailable)
		}
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := AwaitReadyz(ctx, addr, http.StatusServiceUnavailable, nil); err != nil {
		t.Fatal(err)
	}
	if err := AwaitReadyz(ctx, addr, http.StatusOK, nil); err != nil || !ready.Load() {
		t.Fatalf("ready: %v", err)
	}
	if _, err := AwaitMetrics(ctx, addr, Metrics{`hbrbot_commands_total{outcome="accepted"}`: 1}); err != nil {
		t.Error(err)
	}

	ready.Store(false)
	asked.Store(-1 << 20) // never ready again
	short, cancelShort := context.WithTimeout(ctx, time.Second)
	defer cancelShort()
	err := AwaitReadyz(short, addr, http.StatusOK, nil)
	if err == nil || !strings.Contains(err.Error(), "redis: down") {
		t.Errorf("error %v, want the last answer", err)
	}
	exited := make(chan struct{})
	close(exited)
	if err := AwaitReadyz(ctx, addr, http.StatusOK, exited); err == nil || !strings.Contains(err.Error(), "exited") {
		t.Errorf("error %v, want the exit", err)
	}
}

// A process that exits at once: the wait for readiness says so, with its
// log; stopping it is no error.
func TestProcExits(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip(err)
	}
	p, err := Start(Config{Bin: sh, Env: []string{"PATH=/usr/bin:/bin"}, Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	p.tail.Write([]byte("line 1\nline 2\nline 3\n"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err = p.AwaitReady(ctx)
	if err == nil || !strings.Contains(err.Error(), "exited") || !strings.HasSuffix(err.Error(), "line 1\nline 2\nline 3") {
		t.Errorf("AwaitReady = %v", err)
	}
	if err := p.Stop(time.Second); err != nil {
		t.Errorf("Stop of a process that exited 0: %v", err)
	}
	if err := p.Kill(); err != nil {
		t.Errorf("Kill of an exited process: %v", err)
	}
	if !strings.HasPrefix(p.Addr, "127.0.0.1:") {
		t.Errorf("Addr %q", p.Addr)
	}
}

func TestTail(t *testing.T) {
	b := &tailBuffer{max: 10}
	b.Write([]byte("aaaa\nbbbb\n"))
	b.Write([]byte("cccc\n"))
	if got := b.lines(5); got != "bbbb\ncccc" {
		t.Errorf("lines = %q: want what fits in 10 bytes", got)
	}
	if got := b.lines(1); got != "cccc" {
		t.Errorf("lines(1) = %q", got)
	}
}
