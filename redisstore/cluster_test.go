package redisstore

import (
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/hbrbot/hbrbot"
	"github.com/hbrbot/hbrbot/internal/redistest"
)

// TestOnCluster runs the store's multi-key scripts on a real three-node
// Redis Cluster: they only work there because every key shares {h}.
func TestOnCluster(t *testing.T) {
	cluster := redistest.StartCluster(t)
	rdb := cluster.Client(t)
	s := New(rdb)
	ctx := testCtx(t)
	t0 := base()

	r := newRequest("rcluster", "C0OPS", t0, 250) // three batches
	mustCreate(t, ctx, s, r)
	got, won, err := s.Decide(ctx, r.ID, approve(r, "U0BOB", t0))
	if err != nil || !won || got.State != hbrbot.RequestApproved {
		t.Fatalf("Decide on cluster = %v, %v, %v", got.State, won, err)
	}
	first, err := s.FirstDelivery(ctx, "env-1")
	if err != nil || !first {
		t.Fatalf("FirstDelivery = %v, %v", first, err)
	}
	leases, err := s.ClaimDue(ctx, t0, 10, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if len(leases) != 4 { // three batches and the card sync
		t.Fatalf("claimed %d items, want 4: %v", len(leases), works(leases))
	}
	for _, l := range leases {
		if l.Work.Kind != hbrbot.WorkBatch {
			continue
		}
		b := mustBatch(t, ctx, s, l.Work.ID)
		b.State = hbrbot.BatchFinished
		if err := s.SaveBatch(ctx, l, b, time.Time{}); err != nil {
			t.Fatalf("SaveBatch on cluster: %v", err)
		}
	}
	if n, err := s.Scheduled(ctx); err != nil || n != 1 {
		t.Errorf("Scheduled = %d, %v; want the card sync only", n, err)
	}
	reqs, err := s.ChannelRequests(ctx, "C0OPS", 10)
	if err != nil || len(reqs) != 1 {
		t.Errorf("ChannelRequests = %d, %v", len(reqs), err)
	}
	// The shared rate limit works across the cluster's slots too.
	limiter := NewRateLimiter(rdb, "hbr", 600, slog.New(slog.DiscardHandler))
	if err := limiter.Wait(ctx); err != nil {
		t.Errorf("rate limiter on cluster: %v", err)
	}
}

// TestRateLimiterShared: two replicas' limiters on one key never let more
// calls through together than the budget allows.
func TestRateLimiterShared(t *testing.T) {
	_, rdb := newStore(t)
	ctx := testCtx(t)
	const perMinute = 120 // 2 a second, bursts of 4
	limiters := []*RateLimiter{
		NewRateLimiter(rdb, "shared", perMinute, slog.New(slog.DiscardHandler)),
		NewRateLimiter(rdb, "shared", perMinute, slog.New(slog.DiscardHandler)),
	}
	start := time.Now()
	var mu sync.Mutex
	calls := 0
	var wg sync.WaitGroup
	for _, l := range limiters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 5 {
				if err := l.Wait(ctx); err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				calls++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	// Ten calls at 2/s after a burst of 4 take at least 3 s; a slow machine
	// only takes longer. Allowed: the burst plus the rate over the time.
	allowed := 4 + int(elapsed.Seconds()*perMinute/60) + 1
	if calls != 10 || calls > allowed {
		t.Errorf("%d calls in %v; at most %d allowed", calls, elapsed, allowed)
	}
	if elapsed < 2*time.Second {
		t.Errorf("10 calls took %v: the limiters did not share one budget (want ≥ 3s)", elapsed)
	}
}
