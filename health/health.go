// Package health serves the operational endpoints: /healthz (the process
// is alive), /readyz (it can do its work) and /metrics (Prometheus).
package health

import (
	"context"
	"fmt"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Check is one readiness condition; nil means ready.
type Check struct {
	Name string
	Fn   func(ctx context.Context) error
}

// checkTimeout bounds the readiness checks together.
const checkTimeout = 1500 * time.Millisecond

// Handler serves the endpoints. Readiness runs every check, with a short
// timeout, and names the failing ones.
func Handler(reg prometheus.Gatherer, checks ...Check) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), checkTimeout)
		defer cancel()
		// Every check at once, each given up at the timeout: a client that
		// does not heed its context (go-redis looking for unreachable
		// Sentinels) must not hold the probe past the kubelet's patience.
		errs := make([]chan error, len(checks))
		for i, c := range checks {
			errs[i] = make(chan error, 1)
			go func() { errs[i] <- c.Fn(ctx) }()
		}
		var failed []string
		for i, c := range checks {
			var err error
			select {
			case err = <-errs[i]:
			case <-ctx.Done():
				err = fmt.Errorf("no answer within %s", checkTimeout)
			}
			if err != nil {
				failed = append(failed, c.Name+": "+err.Error())
			}
		}
		if len(failed) > 0 {
			http.Error(w, "not ready\n"+strings.Join(failed, "\n"), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	return mux
}

// Profiling serves net/http/pprof's handlers under /debug/pprof/, on its
// own address (HBRBOT_PPROF_ADDR). It is opt-in (HBRBOT_PPROF): profiles
// name code, not data, but the endpoint lets anyone who reaches it spend
// the bot's CPU.
func Profiling() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}
