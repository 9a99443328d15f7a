package logrec

import (
	"context"
	"log/slog"
	"testing"
	"time"
)

func TestHandler(t *testing.T) {
	h := &Handler{}
	log := slog.New(h).With("k", "v").WithGroup("g")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got := make(chan []slog.Record, 1)
	go func() {
		recs, err := h.Wait(ctx, 2)
		if err != nil {
			t.Error(err)
		}
		got <- recs
	}()
	log.Warn("retrying the call")
	log.Info("retrying, but at info")
	log.Warn("gave up")
	recs := <-got
	if len(recs) < 2 || recs[0].Message != "retrying the call" || recs[1].Message != "retrying, but at info" {
		t.Errorf("Wait(2) = %v", recs)
	}
	if n := h.Count(slog.LevelWarn, "retrying"); n != 1 {
		t.Errorf("Count(WARN, retrying) = %d, want 1", n)
	}
	if n := len(h.Records()); n != 3 {
		t.Errorf("%d records, want 3", n)
	}
	short, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := h.Wait(short, 4); err == nil {
		t.Error("Wait for a fourth record returned without it")
	}
}
