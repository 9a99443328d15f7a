// Package redisproc runs redis-server as a child process: for the test
// servers (internal/redistest) and the load benchmark (cmd/hbrbot-bench).
package redisproc

import (
	"bufio"
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// readyTimeout bounds how long a server may take to accept connections.
const readyTimeout = 10 * time.Second

// Start runs path (redis-server) on 127.0.0.1:port with its data in dir,
// append-only and without snapshots, as in production, plus extra
// arguments. It returns once the server accepts connections; on failure
// the error carries what the server printed.
func Start(ctx context.Context, path, dir string, port int, extra ...string) (*exec.Cmd, error) {
	args := append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--dir", dir, "--save", "", "--appendonly", "yes"}, extra...)
	cmd := exec.Command(path, args...)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	ready := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(out)
		var log []string
		for sc.Scan() {
			line := sc.Text()
			log = append(log, line)
			if strings.Contains(line, "Ready to accept connections") {
				ready <- nil
				for sc.Scan() { // drain so the server never blocks on stdout
				}
				return
			}
		}
		ready <- fmt.Errorf("redis-server exited: %s", strings.Join(log, "\n"))
	}()
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	select {
	case err := <-ready:
		if err != nil {
			_ = cmd.Wait()
			return nil, err
		}
		return cmd, nil
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("redis-server not ready: %w", ctx.Err())
	}
}
