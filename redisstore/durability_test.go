package redisstore

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hbrbot/hbrbot"
	"github.com/hbrbot/hbrbot/internal/redistest"
	"github.com/redis/go-redis/v9"
)

// TestConfigureDurability: at start the bot reads what it can of Redis
// and says plainly what breaks exactly-once; a durability it cannot have
// stops submissions (SaveBatchDurable fails) rather than trusting the
// write.
func TestConfigureDurability(t *testing.T) {
	rdb, s := ownRealStore(t, "miniredis has no INFO replication, CONFIG or WAIT")
	ctx := testCtx(t)

	got, warnings, err := s.Configure(ctx, DurabilityAuto)
	if err != nil || got != DurabilityNone || !strings.Contains(strings.Join(warnings, "\n"), "no replica and no append-only file") {
		t.Errorf("auto on a lone Redis without AOF: %s, %q, %v; want none with a warning", got, warnings, err)
	}
	if err := rdb.ConfigSet(ctx, "maxmemory-policy", "volatile-lru").Err(); err != nil {
		t.Fatal(err)
	}
	if _, warnings, _ = s.Configure(ctx, DurabilityNone); !strings.Contains(strings.Join(warnings, "\n"), "volatile-lru") {
		t.Errorf("an evicting policy not warned about: %q", warnings)
	}

	// Asked for a replica it does not have: the mark is written, and said
	// not durable, so the batch is not submitted.
	if got, warnings, _ = s.Configure(ctx, DurabilityReplica); got != DurabilityReplica || len(warnings) == 0 {
		t.Errorf("replica without one: %s, %q", got, warnings)
	}
	l, _, batch := leasedBatch(t, ctx, s, "rdur", base(), time.Minute)
	b := batch.BatchStatus
	b.State = hbrbot.BatchSubmitting
	start := time.Now()
	_, err = s.SaveBatchDurable(ctx, l, b, hbrbot.Hold())
	if !errors.Is(err, hbrbot.ErrNotDurable) {
		t.Errorf("SaveBatchDurable without a replica = %v, want ErrNotDurable", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Errorf("the wait for a replica was not bounded")
	}
	if st, _ := s.BatchStatus(ctx, "rdur.0"); st.State != hbrbot.BatchSubmitting {
		t.Errorf("the mark was not written: %s", st.State)
	}
}

// TestReadyNeedsWrites: a Redis that stopped taking writes (a read-only
// replica after a failover) is not ready, though it answers PING.
func TestReadyNeedsWrites(t *testing.T) {
	rdb, s := ownRealStore(t, "miniredis has no REPLICAOF")
	ctx := testCtx(t)
	if err := s.Ready(ctx); err != nil {
		t.Fatalf("a writable Redis not ready: %v", err)
	}
	if err := rdb.Do(ctx, "REPLICAOF", "127.0.0.1", "1").Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Do(ctx, "REPLICAOF", "NO", "ONE") })
	if err := s.Ping(ctx); err != nil {
		t.Fatalf("PING: %v", err)
	}
	if err := s.Ready(ctx); err == nil || !strings.Contains(err.Error(), "READONLY") {
		t.Errorf("Ready on a read-only replica = %v, want a READONLY error", err)
	}
}

// TestDurableOnCluster: on a Redis Cluster the submitting mark is written
// and waited for on one connection to the master of hbrbot's slot, as on
// a single server: auto picks WAIT once that master has a replica, the
// write is then on the replica when SaveBatchDurable returns, and with
// the replica stalled the mark is not durable, so the batch is not
// submitted.
func TestDurableOnCluster(t *testing.T) {
	cluster := redistest.StartCluster(t)
	s := New(cluster.Client(t))
	ctx := testCtx(t)

	// No replica, and Redis 7.0 has no WAITAOF: none, with the warning a
	// lone server gets; asked for a replica, the mark is not durable.
	got, warnings, err := s.Configure(ctx, DurabilityAuto)
	if err != nil || got != DurabilityNone || !strings.Contains(strings.Join(warnings, "\n"), "no replica and no append-only file") {
		t.Errorf("auto on a cluster without replicas: %s, %q, %v; want none with a warning", got, warnings, err)
	}
	if got, _, err = s.Configure(ctx, DurabilityReplica); err != nil || got != DurabilityReplica {
		t.Fatalf("replica on a cluster: %s, %v", got, err)
	}
	l, _, batch := leasedBatch(t, ctx, s, "cdur", base(), time.Minute)
	b := batch.BatchStatus
	b.State = hbrbot.BatchSubmitting
	if _, err := s.SaveBatchDurable(ctx, l, b, hbrbot.Hold()); !errors.Is(err, hbrbot.ErrNotDurable) {
		t.Errorf("SaveBatchDurable without a replica = %v, want ErrNotDurable", err)
	}

	// A replica of the slot's master: auto waits for it.
	master := cluster.MasterOf(t, Prefix)
	replica := cluster.AddReplica(t, master)
	got, warnings, err = s.Configure(ctx, DurabilityAuto)
	if err != nil || got != DurabilityReplica || len(warnings) != 0 {
		t.Fatalf("auto on a cluster whose master has a replica: %s, %q, %v; want replica, no warning", got, warnings, err)
	}
	b.Polls = 1 // a change to see on the replica
	if _, err := s.SaveBatchDurable(ctx, l, b, hbrbot.Hold()); err != nil {
		t.Fatalf("SaveBatchDurable with a replica: %v", err)
	}
	conn := replica.Client().Conn()
	defer conn.Close()
	if err := conn.ReadOnly(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	raw, err := conn.Get(ctx, keyBatch(b.Key())).Bytes()
	var onReplica hbrbot.BatchStatus
	if err == nil {
		err = json.Unmarshal(raw, &onReplica)
	}
	if err != nil || onReplica.State != hbrbot.BatchSubmitting || onReplica.Polls != 1 {
		t.Errorf("the mark on the replica once durable: %s polls %d (%v); want submitting, polls 1", onReplica.State, onReplica.Polls, err)
	}

	// The replica stalls: the wait for it is bounded, and fails. It has
	// acknowledged every earlier write first, so a WAIT on any connection
	// but the one that wrote the mark would return at once.
	master.AwaitAcked(t)
	replica.Pause()
	start := time.Now()
	_, err = s.SaveBatchDurable(ctx, l, b, hbrbot.Hold())
	replica.Resume()
	if !errors.Is(err, hbrbot.ErrNotDurable) {
		t.Errorf("SaveBatchDurable with the replica stalled = %v, want ErrNotDurable", err)
	}
	if time.Since(start) > 10*time.Second {
		t.Errorf("the wait for a stalled replica was not bounded")
	}
}

// ownRealStore is a store on a redis-server of the test's own (skipped
// with why when only miniredis is at hand), and its client.
func ownRealStore(t *testing.T, why string) (*redis.Client, *Store) {
	t.Helper()
	srv := redistest.StartOwn(t)
	if !srv.Real {
		t.Skip("needs a redis-server: " + why)
	}
	rdb := srv.Client()
	return rdb, New(rdb)
}
