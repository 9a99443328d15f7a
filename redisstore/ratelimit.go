package redisstore

import (
	"context"
	"log/slog"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
	"golang.org/x/time/rate"
)

// RateLimiter spaces calls out so that all replicas together stay under one
// budget: a GCRA limiter (github.com/go-redis/redis_rate) on a key they
// share. When Redis cannot be reached it falls back to a limiter of its own
// at the same rate, so an outage never unleashes a burst.
type RateLimiter struct {
	limiter *redis_rate.Limiter
	key     string
	limit   redis_rate.Limit
	local   *rate.Limiter
	log     *slog.Logger
	// turn lets one waiter of this replica at a time ask Redis; the rest
	// queue behind it in order. Without it, N waiters would all wake at
	// RetryAfter, one would win and N-1 ask again: N² scripts in a burst.
	turn chan struct{}
	// At high rates one script per call costs more than the call: a
	// replica takes up to grant calls' budget at once (about 100ms worth)
	// and hands it out locally until it is used or stale.
	grant   int
	granted int
	staleAt time.Time
	// slowdown, when set, says by how many halvings the rate is cut now
	// (a shared penalty after HBR throttled; see ActionBudget).
	slowdown func(ctx context.Context) int
}

// grantStale bounds how long budget taken from Redis may wait unused:
// budget used late would make a burst above the rate.
const grantStale = 200 * time.Millisecond

// NewRateLimiter allows perMinute calls a minute under name, with bursts of
// about two seconds' worth.
func NewRateLimiter(rdb redis.UniversalClient, name string, perMinute int, log *slog.Logger) *RateLimiter {
	burst := max(1, perMinute/30)
	return &RateLimiter{
		limiter: redis_rate.NewLimiter(rdb),
		// redis_rate prepends "rate:"; the hash tag keeps Cluster happy.
		key:   Prefix + "ratelimit:" + name,
		limit: redis_rate.Limit{Rate: perMinute, Period: time.Minute, Burst: burst},
		local: rate.NewLimiter(rate.Limit(float64(perMinute)/60), burst),
		log:   log,
		turn:  make(chan struct{}, 1),
		grant: max(1, perMinute/600),
	}
}

// Wait blocks until a call may go, or ctx ends. Waiters of one replica
// are served in turn.
func (l *RateLimiter) Wait(ctx context.Context) error {
	select {
	case l.turn <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-l.turn }()
	// Only the waiter holding the turn touches granted and staleAt.
	if l.granted > 0 && time.Now().Before(l.staleAt) {
		l.granted--
		return nil
	}
	for {
		limit, grant := l.limit, l.grant
		if l.slowdown != nil {
			if n := l.slowdown(ctx); n > 0 {
				limit.Rate, limit.Burst = max(1, limit.Rate>>n), max(1, limit.Burst>>n)
				grant = max(1, grant>>n)
			}
		}
		res, err := l.limiter.AllowAtMost(ctx, l.key, limit, grant)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			l.log.WarnContext(ctx, "shared rate limit unavailable; limiting locally", "err", err)
			return l.local.Wait(ctx)
		}
		if res.Allowed > 0 {
			l.granted, l.staleAt = res.Allowed-1, time.Now().Add(grantStale)
			return nil
		}
		t := time.NewTimer(res.RetryAfter)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
}

// Allow takes a call's budget if there is some now; else it says how long
// until there is. Without Redis it answers from the local limiter.
func (l *RateLimiter) Allow(ctx context.Context) (bool, time.Duration) {
	res, err := l.limiter.Allow(ctx, l.key, l.limit)
	if err != nil {
		r := l.local.Reserve()
		if d := r.Delay(); d > 0 {
			r.Cancel()
			return false, d
		}
		return true, 0
	}
	return res.Allowed > 0, res.RetryAfter
}
