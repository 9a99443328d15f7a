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
}

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
	}
}

// Wait blocks until a call may go, or ctx ends.
func (l *RateLimiter) Wait(ctx context.Context) error {
	for {
		res, err := l.limiter.Allow(ctx, l.key, l.limit)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			l.log.WarnContext(ctx, "shared rate limit unavailable; limiting locally", "err", err)
			return l.local.Wait(ctx)
		}
		if res.Allowed > 0 {
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
