package health_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/hbrbot/hbrbot/health"
)

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	body, _ := io.ReadAll(rec.Result().Body)
	return rec.Code, string(body)
}

func TestEndpoints(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "hbrbot_test_total", Help: "test"})
	reg.MustRegister(c)
	c.Inc()
	redisDown := errors.New("dial tcp 127.0.0.1:6379: connection refused")
	var redisErr error
	h := health.Handler(reg,
		health.Check{Name: "slack", Fn: func(context.Context) error { return nil }},
		health.Check{Name: "redis", Fn: func(context.Context) error { return redisErr }},
	)
	tests := []struct {
		name     string
		handler  http.Handler
		path     string
		redisErr error
		code     int
		contains []string
		lacks    []string
	}{
		{"alive", h, "/healthz", redisDown, 200, []string{"ok"}, nil},
		{"ready", h, "/readyz", nil, 200, []string{"ready"}, nil},
		{"not ready names the check", h, "/readyz", redisDown, 503, []string{"not ready", "redis: dial tcp"}, []string{"slack:"}},
		{"metrics", h, "/metrics", nil, 200, []string{"hbrbot_test_total 1"}, nil},
		{"no profiler on the main port", h, "/debug/pprof/", nil, 404, nil, nil},
		{"the profiler on its own", health.Profiling(), "/debug/pprof/", nil, 200, []string{"goroutine"}, nil},
		{"nothing else beside the profiler", health.Profiling(), "/metrics", nil, 404, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			redisErr = tt.redisErr
			code, body := get(t, tt.handler, tt.path)
			if code != tt.code {
				t.Errorf("GET %s = %d, want %d; body %q", tt.path, code, tt.code, body)
			}
			for _, s := range tt.contains {
				if !strings.Contains(body, s) {
					t.Errorf("GET %s body lacks %q: %q", tt.path, s, body)
				}
			}
			for _, s := range tt.lacks {
				if strings.Contains(body, s) {
					t.Errorf("GET %s body has %q: %q", tt.path, s, body)
				}
			}
		})
	}
}

// TestReadyzAnswersInTime: a check that never returns makes /readyz say
// so within its timeout, instead of holding the probe.
func TestReadyzAnswersInTime(t *testing.T) {
	stuck := make(chan struct{})
	t.Cleanup(func() { close(stuck) })
	h := health.Handler(prometheus.NewRegistry(), health.Check{Name: "redis", Fn: func(context.Context) error {
		<-stuck // ignores its context, as a client may
		return nil
	}})
	code, body := get(t, h, "/readyz")
	if code != 503 || !strings.Contains(body, "redis: no answer within") {
		t.Errorf("GET /readyz = %d %q, want 503 naming the check", code, body)
	}
}
