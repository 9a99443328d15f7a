package redisstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"

	"github.com/hbrbot/hbrbot"
)

// Floodgate bounds what one user or one channel may ask of the bot, all
// replicas together: commands a minute (GCRA, like the HBR budget), and
// requests awaiting approval at once.
type Floodgate struct {
	rdb     redis.UniversalClient
	limiter *redis_rate.Limiter
}

// NewFloodgate shares rdb's state with every replica.
func NewFloodgate(rdb redis.UniversalClient) *Floodgate {
	return &Floodgate{rdb: rdb, limiter: redis_rate.NewLimiter(rdb)}
}

func keyUserPending(user string) string { return key("pending", user) }

// Allow takes one command from key's budget of perMinute (bursts of the
// whole minute's worth); when none is left it says when one will be.
func (f *Floodgate) Allow(ctx context.Context, name string, perMinute int) (bool, time.Duration, error) {
	res, err := f.limiter.Allow(ctx, Prefix+"flood:"+name, redis_rate.Limit{Rate: perMinute, Period: time.Minute, Burst: perMinute})
	if err != nil {
		return false, 0, fmt.Errorf("flood limit %s: %w", name, err)
	}
	return res.Allowed > 0, res.RetryAfter, nil
}

// Pending counts user's requests still awaiting a decision, and forgets
// those decided or expired.
func (f *Floodgate) Pending(ctx context.Context, user string, now time.Time) (int, error) {
	k := keyUserPending(user)
	ids, err := f.rdb.ZRangeByScore(ctx, k, &redis.ZRangeBy{Min: "(" + msString(now), Max: "+inf"}).Result()
	if err != nil {
		return 0, fmt.Errorf("pending requests of %s: %w", user, err)
	}
	// One round trip for the states, whatever the number of requests.
	states := make([]*redis.StringCmd, len(ids))
	if len(ids) > 0 {
		p := f.rdb.Pipeline()
		for i, id := range ids {
			states[i] = p.HGet(ctx, keyRequest(id), "state")
		}
		if _, err := p.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return 0, fmt.Errorf("pending requests of %s: %w", user, err)
		}
	}
	n := 0
	var gone []any
	for i, id := range ids {
		if states[i].Val() == string(hbrbot.RequestPending) {
			n++
		} else {
			gone = append(gone, id)
		}
	}
	p := f.rdb.Pipeline()
	p.ZRemRangeByScore(ctx, k, "-inf", msString(now))
	if len(gone) > 0 {
		p.ZRem(ctx, k, gone...)
	}
	if _, err := p.Exec(ctx); err != nil {
		return 0, fmt.Errorf("pending requests of %s: %w", user, err)
	}
	return n, nil
}

// pendingTTL keeps a user's pending index a little past their last
// request's expiry.
func pendingTTL(r hbrbot.Request) time.Duration {
	return time.Until(r.ExpiresAt) + time.Hour
}
