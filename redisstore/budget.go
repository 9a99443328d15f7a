package redisstore

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/time/rate"
)

// PenaltyFor is how long an action runs at a reduced rate after HBR
// throttled it: each throttling (at most one a PenaltyStep apart) halves
// the action's rate again, down to an eighth, for every replica; PenaltyFor
// after the last one the rate is whole again.
const (
	PenaltyFor  = 30 * time.Second
	PenaltyStep = 2 * time.Second
	maxPenalty  = 3
	// penaltyFresh is how long a replica trusts the penalty it read.
	penaltyFresh = time.Second
)

// The shared word that calls which move jobs wait: a key each replica
// whose Moves calls wait sets for movesFor, renewed at most every
// movesEvery; every replica reads it at most every movesFresh.
const (
	movesFor   = time.Second
	movesEvery = 250 * time.Millisecond
	movesFresh = 100 * time.Millisecond
)

// ActionBudget is a budget per HBR action that all replicas share: one
// GCRA limiter (RateLimiter) per action, slowed by a shared penalty key
// when HBR answers Throttling. Actions without a budget are not limited
// here.
type ActionBudget struct {
	rdb      redis.UniversalClient
	limiters map[string]*RateLimiter
	log      *slog.Logger

	penalty   sharedReads[int]  // halvings, per action
	movesRead sharedReads[bool] // whether Moves wait anywhere, per action

	mu        sync.Mutex
	informs   map[string]*RateLimiter // the Informs share of each action, while Moves wait
	movesSaid map[string]time.Time    // when this replica last said its Moves wait
}

// sharedReads keeps what this replica last read of a shared key, per
// action, trusted for fresh.
type sharedReads[T any] struct {
	fresh time.Duration
	mu    sync.Mutex
	m     map[string]sharedRead[T]
}

type sharedRead[T any] struct {
	v  T
	at time.Time
}

// get is the value read within fresh, or else read (given what was
// known) now.
func (s *sharedReads[T]) get(action string, read func(known T) T) T {
	s.mu.Lock()
	r, ok := s.m[action]
	s.mu.Unlock()
	if ok && time.Since(r.at) < s.fresh {
		return r.v
	}
	v := read(r.v)
	s.set(action, v)
	return v
}

func (s *sharedReads[T]) set(action string, v T) {
	s.mu.Lock()
	if s.m == nil {
		s.m = map[string]sharedRead[T]{}
	}
	s.m[action] = sharedRead[T]{v: v, at: time.Now()}
	s.mu.Unlock()
}

// NewActionBudget allows each action perMinute[action] calls a minute, all
// replicas together.
func NewActionBudget(rdb redis.UniversalClient, perMinute map[string]int, log *slog.Logger) *ActionBudget {
	b := &ActionBudget{rdb: rdb, limiters: map[string]*RateLimiter{}, log: log,
		penalty: sharedReads[int]{fresh: penaltyFresh}, movesRead: sharedReads[bool]{fresh: movesFresh},
		informs: map[string]*RateLimiter{}, movesSaid: map[string]time.Time{}}
	for action, n := range perMinute {
		l := NewRateLimiter(rdb, "hbr:"+action, n, log)
		// HBR counts calls per rolling minute: a burst of a fifth of the
		// rate keeps any minute within rate + burst (576 of 600 at the
		// default 480), while a batch of submissions goes at once.
		burst := max(1, n/5)
		l.limit.Burst = burst
		l.local = rate.NewLimiter(rate.Limit(float64(n)/60), burst)
		l.slowdown = func(ctx context.Context) int { return b.Penalty(ctx, action) }
		b.limiters[action] = l
	}
	return b
}

// Wait blocks until a call of action may go, or ctx ends.
func (b *ActionBudget) Wait(ctx context.Context, action string) error {
	l := b.limiters[action]
	if l == nil {
		return nil
	}
	return l.Wait(ctx)
}

func keyPenalty(action string) string { return Prefix + "hbr-penalty:" + action }

func keyMovesWaiting(action string) string { return Prefix + "hbr-moves-waiting:" + action }

// MovesWaiting tells every replica that calls of action which move jobs
// wait here, for movesFor; written in the background, at most every
// movesEvery.
func (b *ActionBudget) MovesWaiting(action string) {
	if b.limiters[action] == nil {
		return
	}
	now := time.Now()
	b.mu.Lock()
	if now.Sub(b.movesSaid[action]) < movesEvery {
		b.mu.Unlock()
		return
	}
	b.movesSaid[action] = now
	b.mu.Unlock()
	b.movesRead.set(action, true) // this replica knows at once
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := b.rdb.Set(ctx, keyMovesWaiting(action), "1", movesFor).Err(); err != nil {
			b.log.WarnContext(ctx, "say that HBR calls which move jobs wait", "action", action, "err", err)
		}
	}()
}

// InformsTurn lets an Informs call of action queue: at once, unless calls
// that move jobs wait on some replica; then at 1/share of the action's
// rate, all replicas together, so a replica with only Informs waiting
// does not spend the budget the others' Moves wait for.
func (b *ActionBudget) InformsTurn(ctx context.Context, action string, share int) error {
	l := b.limiters[action]
	if l == nil || !b.movesWaitAnywhere(ctx, action) {
		return nil
	}
	b.mu.Lock()
	il := b.informs[action]
	if il == nil {
		il = NewRateLimiter(b.rdb, "hbr-informs:"+action, max(1, l.limit.Rate/max(1, share)), b.log)
		il.slowdown = l.slowdown
		b.informs[action] = il
	}
	b.mu.Unlock()
	return il.Wait(ctx)
}

// movesWaitAnywhere reads the shared word that Moves calls of action wait
// (at most every movesFresh; what was known when Redis cannot be read).
func (b *ActionBudget) movesWaitAnywhere(ctx context.Context, action string) bool {
	return b.movesRead.get(action, func(known bool) bool {
		n, err := b.rdb.Exists(ctx, keyMovesWaiting(action)).Result()
		if err != nil {
			return known
		}
		return n > 0
	})
}

// penaltyScript raises an action's penalty by one halving (at most
// ARGV[3]) unless it was raised less than a step ago, and keeps it for
// ARGV[1] ms. It returns the level.
var penaltyScript = redis.NewScript(`
local level = tonumber(redis.call('GET', KEYS[1]) or '0')
local ttl = redis.call('PTTL', KEYS[1])
if level == 0 or ttl < tonumber(ARGV[1]) - tonumber(ARGV[2]) then
  level = math.min(level + 1, tonumber(ARGV[3]))
  redis.call('SET', KEYS[1], level, 'PX', ARGV[1])
end
return level
`)

// Throttled halves action's rate for every replica for PenaltyFor.
func (b *ActionBudget) Throttled(ctx context.Context, action string) {
	if b.limiters[action] == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	level, err := penaltyScript.Run(ctx, b.rdb, []string{keyPenalty(action)},
		PenaltyFor.Milliseconds(), PenaltyStep.Milliseconds(), maxPenalty).Int()
	if err != nil {
		b.log.WarnContext(ctx, "record HBR throttling", "action", action, "err", err)
		level = 1
	}
	b.log.WarnContext(ctx, "HBR throttled an action: slowing it down for every replica", "action", action,
		"rate_divided_by", 1<<level, "for", PenaltyFor)
	b.penalty.set(action, level)
}

// Penalty is by how many halvings action's rate is cut now (read from
// Redis at most once a second per replica).
func (b *ActionBudget) Penalty(ctx context.Context, action string) int {
	return b.penalty.get(action, func(known int) int {
		v, err := b.rdb.Get(ctx, keyPenalty(action)).Result()
		switch {
		case err == nil:
			level, _ := strconv.Atoi(v)
			return level
		case err != redis.Nil:
			return known // Redis unreachable: keep what was known
		}
		return 0
	})
}
