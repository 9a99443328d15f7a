package redisstore

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

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
	stale := approval(r, "U0CAROL", t0)
	if err := s.ChangeRequest(ctx, r.ID, approval(r, "U0BOB", t0)); err != nil {
		t.Fatalf("ChangeRequest on cluster: %v", err)
	}
	if err := s.ChangeRequest(ctx, r.ID, stale); !errors.Is(err, hbrbot.ErrConflict) {
		t.Errorf("stale ChangeRequest on cluster = %v, want ErrConflict", err)
	}
	if got := mustRequest(t, ctx, s, r.ID); got.State != hbrbot.RequestApproved || got.DecidedBy != "U0BOB" {
		t.Fatalf("request on cluster = %s by %s, want approved by U0BOB", got.State, got.DecidedBy)
	}
	if bs, err := s.Batches(ctx, r.ID); err != nil || len(bs) != 3 {
		t.Fatalf("Batches on cluster = %d, %v; want 3", len(bs), err)
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
		b := mustStatus(t, ctx, s, l.Work.ID)
		b.State = hbrbot.BatchFinished
		if _, err := s.SaveBatch(ctx, l, b, hbrbot.End()); err != nil {
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
// calls through together than the budget allows, whether they ask Redis
// for each call or take the budget in grants.
func TestRateLimiterShared(t *testing.T) {
	tests := []struct {
		name      string
		perMinute int // bursts of perMinute/30
		each      int // calls per limiter
		minTook   time.Duration
	}{
		// 2 a second, bursts of 4: ten calls take at least 3s.
		{"a script a call", 120, 5, 2 * time.Second},
		// 100 a second, bursts of 200, grants of 10: 400 calls take at
		// least 2s.
		{"grants", 6000, 200, 1500 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, rdb := newStore(t)
			ctx := testCtx(t)
			limiters := []*RateLimiter{
				NewRateLimiter(rdb, "shared", tt.perMinute, slog.New(slog.DiscardHandler)),
				NewRateLimiter(rdb, "shared", tt.perMinute, slog.New(slog.DiscardHandler)),
			}
			start := time.Now()
			var calls atomic.Int64
			var wg sync.WaitGroup
			for _, l := range limiters {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range tt.each {
						if err := l.Wait(ctx); err != nil {
							t.Error(err)
							return
						}
						calls.Add(1)
					}
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			// A slow machine only takes longer. Allowed: the burst plus the
			// rate over the time, plus a grant each.
			burst, grant := tt.perMinute/30, max(1, tt.perMinute/600)
			allowed := int64(burst + int(elapsed.Seconds()*float64(tt.perMinute)/60) + 2*grant)
			if n := calls.Load(); n != int64(2*tt.each) || n > allowed {
				t.Errorf("%d calls in %v; at most %d allowed", n, elapsed, allowed)
			}
			if elapsed < tt.minTook {
				t.Errorf("%d calls took %v: the limiters did not share one budget (want ≥ %v)", 2*tt.each, elapsed, tt.minTook)
			}
		})
	}
}

// countingHook counts the commands a client sends.
type countingHook struct{ n atomic.Int64 }

func (h *countingHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *countingHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}
func (h *countingHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

// TestRateLimiterQueuesWaiters: a burst of waiters on one replica is served
// in turn, each asking Redis about once, instead of all of them asking
// again every time the budget frees one call (which made the ack path of a
// 200-command burst wait on a saturated Redis pool).
func TestRateLimiterQueuesWaiters(t *testing.T) {
	tests := []struct {
		name               string
		perMinute, waiters int
		maxCommands        int64
	}{
		// 20 a second, bursts of 40: the last 40 wait about 2s. Each
		// waiter asks once when its turn comes, and again after each
		// RetryAfter it is told (about once: the budget frees one call at
		// a time). A herd asks hundreds of times more.
		{"one call a script", 1200, 80, 3 * 80},
		// 1000 a second: a script takes 100 calls' budget at once.
		{"budget taken in grants", 60000, 1000, 30},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, rdb := newStore(t)
			hook := &countingHook{}
			rdb.AddHook(hook)
			ctx := testCtx(t)
			l := NewRateLimiter(rdb, "queue", tt.perMinute, slog.New(slog.DiscardHandler))
			var wg sync.WaitGroup
			for range tt.waiters {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if err := l.Wait(ctx); err != nil {
						t.Error(err)
					}
				}()
			}
			wg.Wait()
			if n := hook.n.Load(); n > tt.maxCommands {
				t.Errorf("%d waiters sent %d Redis commands; want at most %d", tt.waiters, n, tt.maxCommands)
			}
		})
	}
}
