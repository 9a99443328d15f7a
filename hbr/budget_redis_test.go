package hbr_test

import (
	"context"
	"errors"
	"log/slog"
	"runtime"
	"testing"
	"time"

	"github.com/hbrbot/hbrbot/internal/redistest"
	"github.com/hbrbot/hbrbot/redisstore"
)

// TestActionBudget: redisstore.ActionBudget (the shared per-action
// budget; here because redisstore's own tests are being reworked) keeps
// one budget per action for all replicas, and a throttling halves the
// action's rate for every replica until it expires.
func TestActionBudget(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	log := slog.New(slog.DiscardHandler)
	// One call a minute (a burst of one): the second call of an action
	// cannot go within the test.
	limits := map[string]int{"DescribeTask": 1, "UpgradeBackupClients": 1}
	replica1 := redisstore.NewActionBudget(rdb, limits, log)
	replica2 := redisstore.NewActionBudget(srv.Client(), limits, log)
	ctx := context.Background()

	blocked := func(b *redisstore.ActionBudget, action string) bool {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		err := b.Wait(wctx, action)
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Wait(%s): %v", action, err)
		}
		return err != nil
	}
	steps := []struct {
		name        string
		replica     *redisstore.ActionBudget
		action      string
		wantBlocked bool
	}{
		{"first DescribeTask goes", replica1, "DescribeTask", false},
		{"the budget is spent, on this replica", replica1, "DescribeTask", true},
		{"and on the other", replica2, "DescribeTask", true},
		{"another action has its own budget", replica2, "UpgradeBackupClients", false},
		{"an action without a budget is not limited here", replica2, "DescribeBackupClients", false},
		{"nor is it twice", replica2, "DescribeBackupClients", false},
	}
	for _, st := range steps {
		if got := blocked(st.replica, st.action); got != st.wantBlocked {
			t.Errorf("%s: blocked %v, want %v", st.name, got, st.wantBlocked)
		}
	}

	// Throttling: shared, at most one halving a step, and it expires.
	if got := redisstore.NewActionBudget(rdb, limits, log).Penalty(ctx, "DescribeTask"); got != 0 {
		t.Fatalf("penalty before any throttling = %d", got)
	}
	replica1.Throttled(ctx, "DescribeTask")
	replica1.Throttled(ctx, "DescribeTask") // the same burst: no second halving
	// Another replica (a fresh one: a replica trusts the penalty it read
	// for a second).
	if got := redisstore.NewActionBudget(rdb, limits, log).Penalty(ctx, "DescribeTask"); got != 1 {
		t.Errorf("other replica's penalty = %d, want 1", got)
	}
	if got := replica2.Penalty(ctx, "UpgradeBackupClients"); got != 0 {
		t.Errorf("penalty of another action = %d, want 0", got)
	}
	ttl, err := rdb.PTTL(ctx, redisstore.Prefix+"hbr-penalty:DescribeTask").Result()
	if err != nil || ttl <= 0 || ttl > redisstore.PenaltyFor {
		t.Errorf("penalty TTL %v (%v), want in (0, %v]: it recovers", ttl, err, redisstore.PenaltyFor)
	}
	// A throttling more than a step after the last halves again (here the
	// key is aged by hand), at most to an eighth.
	for want := 2; want <= 4; want++ {
		rdb.PExpire(ctx, redisstore.Prefix+"hbr-penalty:DescribeTask", redisstore.PenaltyFor-redisstore.PenaltyStep-time.Second)
		replica1.Throttled(ctx, "DescribeTask")
		if got, w := replica1.Penalty(ctx, "DescribeTask"), min(want, 3); got != w {
			t.Errorf("penalty after %d throttlings = %d, want %d", want, got, w)
		}
	}
	// Expired: whole again (a fresh replica reads Redis).
	rdb.Del(ctx, redisstore.Prefix+"hbr-penalty:DescribeTask")
	if got := redisstore.NewActionBudget(rdb, limits, log).Penalty(ctx, "DescribeTask"); got != 0 {
		t.Errorf("penalty after expiry = %d, want 0", got)
	}
}

// TestInformsYieldAcrossReplicas: while calls that move jobs wait on one
// replica, the calls that only inform, on any replica, go at their share
// of the action's budget; once none waits, at once again.
func TestInformsYieldAcrossReplicas(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	log := slog.New(slog.DiscardHandler)
	const action = "DescribeBackupClients"
	// 120 a minute: the Informs share (a quarter, 30 a minute) has a
	// burst of one.
	limits := map[string]int{action: 120}
	ctx := context.Background()
	turnBlocked := func(b *redisstore.ActionBudget) bool {
		t.Helper()
		wctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
		defer cancel()
		err := b.InformsTurn(wctx, action, 4)
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("InformsTurn: %v", err)
		}
		return err != nil
	}
	other := redisstore.NewActionBudget(rdb, limits, log)
	for i := range 5 {
		if turnBlocked(other) {
			t.Fatalf("informs call %d held back while no Moves wait", i+1)
		}
	}

	redisstore.NewActionBudget(rdb, limits, log).MovesWaiting(action)
	key := redisstore.Prefix + "hbr-moves-waiting:" + action
	deadline := time.Now().Add(5 * time.Second)
	for n, _ := rdb.Exists(ctx, key).Result(); n == 0; n, _ = rdb.Exists(ctx, key).Result() {
		if time.Now().After(deadline) {
			t.Fatal("the replica whose Moves wait never said so")
		}
		runtime.Gosched()
	}
	if ttl := rdb.PTTL(ctx, key).Val(); ttl <= 0 || ttl > time.Second {
		t.Errorf("the word that Moves wait lasts %v, want (0, 1s]: it lapses once they stop", ttl)
	}
	// A replica that has only Informs waiting (fresh: it trusts what it
	// read for 100ms).
	informsOnly := redisstore.NewActionBudget(rdb, limits, log)
	if turnBlocked(informsOnly) {
		t.Error("the first informs call while Moves wait: blocked, want its share's burst")
	}
	if !turnBlocked(informsOnly) {
		t.Error("the second informs call within 300ms while Moves wait: went, want held to its share")
	}
	rdb.Del(ctx, key) // lapsed
	if turnBlocked(redisstore.NewActionBudget(rdb, limits, log)) {
		t.Error("informs call held back after the Moves stopped waiting")
	}
}
