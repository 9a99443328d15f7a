package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hbrbot/hbrbot/internal/redisproc"
)

// moduleRoot is the directory of the go.mod that holds ./cmd/hbrbot.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the hbrbot module: run from the repository (go run ./cmd/hbrbot-bench)")
	}
	return filepath.Dir(gomod), nil
}

// buildBot builds ./cmd/hbrbot into dir and returns the binary's path.
func buildBot(ctx context.Context, dir string) (string, error) {
	root, err := moduleRoot(ctx)
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "hbrbot")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/hbrbot")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/hbrbot: %w\n%s", err, out)
	}
	return bin, nil
}

// freeAddr is a free loopback address. Another process may take it before
// it is used; callers retry or fail loudly.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// redisProc is a redis-server child process.
type redisProc struct {
	Addr string
	cmd  *exec.Cmd
}

// startRedis starts redis-server on a free loopback port, with AOF as in
// production, and returns once it accepts connections.
func startRedis(ctx context.Context, dir string) (*redisProc, error) {
	path, err := exec.LookPath("redis-server")
	if err != nil {
		return nil, fmt.Errorf("redis-server is not on PATH (the bench needs a real Redis; e.g. apt-get install redis-server): %w", err)
	}
	var lastErr error
	for range 5 { // a free port can be taken between picking and binding
		addr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		_, portText, _ := net.SplitHostPort(addr)
		port, _ := strconv.Atoi(portText)
		cmd, err := redisproc.Start(ctx, path, dir, port, "--appendfsync", "everysec")
		if err == nil {
			return &redisProc{Addr: addr, cmd: cmd}, nil
		}
		lastErr = err
	}
	return nil, fmt.Errorf("start redis-server: %w", lastErr)
}

// cpuSeconds is the process's user+system CPU time so far, from /proc.
func (r *redisProc) cpuSeconds() float64 { return procCPU(r.cmd.Process.Pid) }

func (r *redisProc) stop() {
	if r == nil || r.cmd.Process == nil {
		return
	}
	_ = r.cmd.Process.Kill()
	_ = r.cmd.Wait()
}

// replica is one hbrbot child process.
type replica struct {
	n        int
	httpAddr string
	logPath  string
	cmd      *exec.Cmd
	exited   chan struct{} // closed when Wait returned
	waitErr  error

	// Filled by stop.
	cpu       float64       // user+system seconds (rusage)
	maxRSSKiB int64         // rusage ru_maxrss
	vmHWMKiB  int64         // /proc/<pid>/status VmHWM just before SIGTERM
	stopTook  time.Duration // SIGTERM to exit
	exitCode  int
}

// startReplica starts the bot with env (KEY=VALUE, nothing inherited but
// PATH and HOME) in dir, where there is no .env file.
func startReplica(bin, dir string, n int, env []string) (*replica, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	r := &replica{n: n, httpAddr: addr, logPath: filepath.Join(dir, fmt.Sprintf("hbrbot-%d.log", n)),
		exited: make(chan struct{})}
	logf, err := os.Create(r.logPath)
	if err != nil {
		return nil, err
	}
	wd := filepath.Join(dir, fmt.Sprintf("wd-%d", n))
	if err := os.MkdirAll(wd, 0o755); err != nil {
		logf.Close()
		return nil, err
	}
	r.cmd = exec.Command(bin)
	r.cmd.Dir = wd
	r.cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + wd, "HBRBOT_HTTP_ADDR=" + addr}, env...)
	r.cmd.Stdout, r.cmd.Stderr = logf, logf
	if err := r.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start replica %d: %w", n, err)
	}
	go func() {
		r.waitErr = r.cmd.Wait()
		logf.Close()
		close(r.exited)
	}()
	return r, nil
}

// awaitReady polls /readyz until it answers 200, the process exits or ctx
// ends. Readiness is the bot's own signal; there is no event to wait on.
func (r *replica) awaitReady(ctx context.Context) error {
	url := "http://" + r.httpAddr + "/readyz"
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	client := &http.Client{Timeout: 2 * time.Second}
	for {
		resp, err := client.Get(url)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-r.exited:
			return fmt.Errorf("replica %d exited before ready (%v); log:\n%s", r.n, r.waitErr, tail(r.logPath, 30))
		case <-ctx.Done():
			return fmt.Errorf("replica %d not ready: %w; log:\n%s", r.n, ctx.Err(), tail(r.logPath, 30))
		case <-tick.C:
		}
	}
}

// stop sends SIGTERM, waits up to grace (then kills), and collects the
// process's resource use.
func (r *replica) stop(grace time.Duration) {
	r.vmHWMKiB = procStatusKiB(r.cmd.Process.Pid, "VmHWM")
	start := time.Now()
	_ = r.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-r.exited:
	case <-t.C:
		_ = r.cmd.Process.Kill()
		<-r.exited
	}
	r.stopTook = time.Since(start)
	ps := r.cmd.ProcessState
	r.exitCode = ps.ExitCode()
	r.cpu = (ps.UserTime() + ps.SystemTime()).Seconds()
	if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
		r.maxRSSKiB = ru.Maxrss // KiB on Linux
	}
}

// cpuNow is the replica's CPU seconds so far (0 once it exited).
func (r *replica) cpuNow() float64 { return procCPU(r.cmd.Process.Pid) }

// procCPU reads utime+stime of pid from /proc/<pid>/stat, in seconds
// (USER_HZ is 100 on Linux). 0 when unavailable.
func procCPU(pid int) float64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name (field 2) may hold spaces; fields after it follow
	// the last ')'.
	s := string(raw)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime is field 14, stime 15.
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100
}

// procStatusKiB reads a "Key: N kB" line of /proc/<pid>/status.
func procStatusKiB(pid int, key string) int64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, key+":"); ok {
			n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return n
		}
	}
	return 0
}

// tail is the last n lines of a file, for error messages.
func tail(path string, n int) string {
	raw, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// logCounts reads the bot's JSON log once: lines by level, and the "msg"
// of WARN and ERROR lines as "LEVEL msg".
func logCounts(path string) (levels, problems map[string]int) {
	levels, problems = map[string]int{}, map[string]int{}
	f, err := os.Open(path)
	if err != nil {
		return levels, problems
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		level := jsonField(line, "level")
		if level == "" {
			continue
		}
		levels[level]++
		if level == "WARN" || level == "ERROR" {
			if msg := jsonField(line, "msg"); msg != "" {
				problems[level+" "+msg]++
			}
		}
	}
	return levels, problems
}

// jsonField is the string value of "key" in a flat JSON log line, without
// decoding it: the logs run to millions of lines.
func jsonField(line, key string) string {
	i := strings.Index(line, `"`+key+`":"`)
	if i < 0 {
		return ""
	}
	rest := line[i+len(key)+4:]
	if j := strings.IndexByte(rest, '"'); j > 0 {
		return rest[:j]
	}
	return ""
}
