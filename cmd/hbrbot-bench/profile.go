package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"
)

// profiler fetches Go profiles from replica 1 (HBRBOT_PPROF) into a
// directory, for `go tool pprof` and `go tool trace`.
type profiler struct {
	dir  string
	addr string
	wg   sync.WaitGroup
	mu   sync.Mutex
	errs []error
	// cpu serializes CPU profiles: the runtime takes one at a time.
	cpu sync.Mutex
}

func newProfiler(dir, addr string) (*profiler, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("profile directory: %w", err)
	}
	return &profiler{dir: dir, addr: addr}, nil
}

// fetch saves /debug/pprof/<path> as name, in the background. A CPU profile
// or a trace covers `seconds` from now.
func (p *profiler) fetch(ctx context.Context, path string, seconds int, name string) {
	if p == nil {
		return
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		if path == "profile" {
			p.cpu.Lock()
			defer p.cpu.Unlock()
		}
		if err := p.get(ctx, path, seconds, name); err != nil {
			p.mu.Lock()
			p.errs = append(p.errs, fmt.Errorf("profile %s: %w", name, err))
			p.mu.Unlock()
		}
	}()
}

func (p *profiler) get(ctx context.Context, path string, seconds int, name string) error {
	url := fmt.Sprintf("http://%s/debug/pprof/%s", p.addr, path)
	if seconds > 0 {
		url += fmt.Sprintf("?seconds=%d", seconds)
	}
	ctx, cancel := context.WithTimeout(ctx, time.Duration(seconds)*time.Second+30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("%s: %s", resp.Status, body)
	}
	f, err := os.Create(filepath.Join(p.dir, name))
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// wait waits for every fetch and returns the profiles' paths as a note.
func (p *profiler) wait() (string, error) {
	if p == nil {
		return "", nil
	}
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.errs) > 0 {
		return "", p.errs[0]
	}
	return p.dir, nil
}
