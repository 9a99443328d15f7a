package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hbrbot/hbrbot/internal/botproc"
	"github.com/hbrbot/hbrbot/internal/redisproc"
)

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
		port, err := botproc.FreePort()
		if err != nil {
			return nil, err
		}
		cmd, err := redisproc.Start(ctx, path, dir, port, "--appendfsync", "everysec")
		if err == nil {
			return &redisProc{Addr: fmt.Sprintf("127.0.0.1:%d", port), cmd: cmd}, nil
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
	*botproc.Proc
	n       int
	logPath string

	// Filled by stop.
	cpu       float64       // user+system seconds (rusage)
	maxRSSKiB int64         // rusage ru_maxrss
	vmHWMKiB  int64         // /proc/<pid>/status VmHWM just before SIGTERM
	stopTook  time.Duration // SIGTERM to exit
	exitCode  int
}

// startReplica starts the bot with env (KEY=VALUE, nothing inherited but
// PATH and HOME) in dir, where there is no .env file, logging to a file
// of its own.
func startReplica(bin, dir string, n int, env []string) (*replica, error) {
	r := &replica{n: n, logPath: filepath.Join(dir, fmt.Sprintf("hbrbot-%d.log", n))}
	logf, err := os.Create(r.logPath)
	if err != nil {
		return nil, err
	}
	wd := filepath.Join(dir, fmt.Sprintf("wd-%d", n))
	if err := os.MkdirAll(wd, 0o755); err != nil {
		logf.Close()
		return nil, err
	}
	r.Proc, err = botproc.Start(botproc.Config{Bin: bin, Dir: wd, Stdout: logf, Stderr: logf,
		Env: append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + wd}, env...)})
	if err != nil {
		logf.Close()
		return nil, fmt.Errorf("replica %d: %w", n, err)
	}
	go func() {
		<-r.Exited()
		logf.Close()
	}()
	return r, nil
}

// awaitReady waits until the replica is ready (/readyz).
func (r *replica) awaitReady(ctx context.Context) error {
	if err := r.AwaitReady(ctx); err != nil {
		return fmt.Errorf("replica %d: %w", r.n, err)
	}
	return nil
}

// stop stops the replica (SIGTERM, SIGKILL after grace) and collects the
// process's resource use.
func (r *replica) stop(grace time.Duration) {
	r.vmHWMKiB = procStatusKiB(r.Cmd.Process.Pid, "VmHWM")
	start := time.Now()
	_ = r.Stop(grace) // the exit code says how it went
	r.stopTook = time.Since(start)
	ps := r.Cmd.ProcessState
	r.exitCode = ps.ExitCode()
	r.cpu = (ps.UserTime() + ps.SystemTime()).Seconds()
	if ru, ok := ps.SysUsage().(*syscall.Rusage); ok {
		r.maxRSSKiB = ru.Maxrss // KiB on Linux
	}
}

// cpuNow is the replica's CPU seconds so far (0 once it exited).
func (r *replica) cpuNow() float64 { return procCPU(r.Cmd.Process.Pid) }

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
