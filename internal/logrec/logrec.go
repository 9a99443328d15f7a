// Package logrec is a slog.Handler for unit tests that keeps every record
// it is handed: to count a package's warnings, or to see that it logged
// the one thing it promises to log. End-to-end tests do not wait on log
// lines; they wait on the bot's events (Slack, HBR, the audit stream,
// metrics).
package logrec

import (
	"context"
	"log/slog"
	"strings"
	"sync"
)

// Handler records what it is handed, attributes aside. The zero value is
// ready; share it by pointer.
type Handler struct {
	mu      sync.Mutex
	recs    []slog.Record
	changed chan struct{} // closed and replaced on every record
}

// Enabled is true for every level: a test sees everything.
func (h *Handler) Enabled(context.Context, slog.Level) bool { return true }

// Handle keeps r.
func (h *Handler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.recs = append(h.recs, r.Clone())
	if h.changed != nil {
		close(h.changed)
		h.changed = nil
	}
	return nil
}

// WithAttrs and WithGroup return h itself: records are kept by message.
func (h *Handler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *Handler) WithGroup(string) slog.Handler      { return h }

// Records are the records so far, in order.
func (h *Handler) Records() []slog.Record {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]slog.Record(nil), h.recs...)
}

// Count is how many records at level have a message containing substr.
func (h *Handler) Count(level slog.Level, substr string) int {
	n := 0
	for _, r := range h.Records() {
		if r.Level == level && strings.Contains(r.Message, substr) {
			n++
		}
	}
	return n
}

// Wait blocks until there are at least n records, or ctx ends, and
// returns the records so far.
func (h *Handler) Wait(ctx context.Context, n int) ([]slog.Record, error) {
	for {
		h.mu.Lock()
		if len(h.recs) >= n {
			out := append([]slog.Record(nil), h.recs...)
			h.mu.Unlock()
			return out, nil
		}
		if h.changed == nil {
			h.changed = make(chan struct{})
		}
		ch := h.changed
		h.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return h.Records(), ctx.Err()
		}
	}
}
