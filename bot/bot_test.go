package bot

import (
	"context"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hbrbot/hbrbot/internal/logrec"
)

// TestSpawnBoundsWork: work behind acks runs at most maxHandlers at a time,
// and waiting work runs when a slot frees.
func TestSpawnBoundsWork(t *testing.T) {
	b := &Bot{log: slog.New(slog.DiscardHandler), handlers: make(chan struct{}, 2)}
	release := make(chan struct{})
	started := make(chan struct{}, 3)
	var running, peak, done atomic.Int32
	work := func(context.Context) {
		n := running.Add(1)
		for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
		}
		started <- struct{}{}
		<-release
		running.Add(-1)
		done.Add(1)
	}
	for range 3 {
		b.spawn(context.Background(), work)
	}
	<-started
	<-started
	release <- struct{}{} // one ends: the third takes its slot
	<-started
	close(release)
	b.inflight.Wait()
	if p, d := peak.Load(), done.Load(); p != 2 || d != 3 {
		t.Errorf("peak concurrency %d, finished %d; want 2 and 3", p, d)
	}
}

// TestSpawnDropsWaitingWorkOnStop: work still waiting for a turn when the
// bot stops is dropped (and logged), never started.
func TestSpawnDropsWaitingWorkOnStop(t *testing.T) {
	logs := &logrec.Handler{}
	b := &Bot{log: slog.New(logs), handlers: make(chan struct{}, 1)}
	ctx, stop := context.WithCancel(context.Background())
	hold, held := make(chan struct{}), make(chan struct{})
	b.spawn(ctx, func(context.Context) { close(held); <-hold })
	<-held
	var ran atomic.Bool
	b.spawn(ctx, func(context.Context) { ran.Store(true) })
	stop()
	// The drop is logged, and only the log says it happened: wait for it
	// before the held work ends and frees the slot.
	wctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	recs, err := logs.Wait(wctx, 1)
	if err != nil || !strings.Contains(recs[0].Message, "dropped before its turn") {
		t.Errorf("log %v (%v), want the drop", recs, err)
	}
	close(hold)
	b.inflight.Wait()
	if ran.Load() {
		t.Error("work waiting for its turn ran after the bot stopped")
	}
}

// TestTakeTurnPrefersAFreeSlot: with a slot free, a stopped bot still runs
// the work it acked.
func TestTakeTurnPrefersAFreeSlot(t *testing.T) {
	b := &Bot{log: slog.New(slog.DiscardHandler), handlers: make(chan struct{}, 1)}
	ctx, stop := context.WithCancel(context.Background())
	stop()
	for range 20 { // a select would pick at random between two ready cases
		if !b.takeTurn(ctx) {
			t.Fatal("takeTurn refused a free slot because the bot stopped")
		}
		<-b.handlers
	}
}
