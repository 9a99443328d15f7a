package redisstore

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/hbrbot/hbrbot"
)

// Durability is how a batch's submitting mark is made to survive a crash
// or a failover before UpgradeBackupClients is called: the mark is what
// keeps a batch from being submitted twice.
type Durability string

const (
	// DurabilityAuto: a replica when the server has one, else the
	// append-only file when the server can wait for it (WAITAOF, Redis
	// 7.2+), else none (with a warning at start).
	DurabilityAuto Durability = "auto"
	// DurabilityNone: the write is trusted as it lands.
	DurabilityNone Durability = "none"
	// DurabilityReplica: WAIT for a replica to acknowledge the write.
	DurabilityReplica Durability = "replica"
	// DurabilityAOF: WAITAOF for the write to be fsynced locally.
	DurabilityAOF Durability = "aof"
)

// durableWait bounds the wait for a replica or the disk.
const durableWait = 2 * time.Second

// SaveBatchDurable is SaveBatch whose write is then made durable as the
// store's durability says, on the same connection (WAIT and WAITAOF count
// the writes of their own connection) to the server that holds the batch:
// the single server, Sentinel's master, or on a Cluster the master of
// hbrbot's one slot. ErrNotDurable: written, but not acknowledged by a
// replica or the disk in time.
func (s *Store) SaveBatchDurable(ctx context.Context, l hbrbot.Lease, b hbrbot.BatchStatus, next hbrbot.Next) (hbrbot.Lease, error) {
	mode := s.Durability()
	if mode == DurabilityNone {
		return s.SaveBatch(ctx, l, b, next)
	}
	c, err := s.master(ctx)
	if err != nil {
		return l, fmt.Errorf("save batch %s: %w", b.Key(), err)
	}
	conn := c.Conn()
	defer conn.Close()
	after, err := s.saveBatchOn(ctx, conn, l, b, next)
	if err != nil {
		return after, err
	}
	timeout := strconv.FormatInt(durableWait.Milliseconds(), 10)
	switch mode {
	case DurabilityReplica:
		n, err := conn.Do(ctx, "WAIT", 1, timeout).Int()
		if err != nil || n < 1 {
			return after, fmt.Errorf("save batch %s: no replica acknowledged it within %s (%v): %w", b.Key(), durableWait, err, hbrbot.ErrNotDurable)
		}
	case DurabilityAOF:
		res, err := conn.Do(ctx, "WAITAOF", 1, 0, timeout).Int64Slice()
		if err != nil || len(res) == 0 || res[0] < 1 {
			return after, fmt.Errorf("save batch %s: not fsynced to the append-only file within %s (%v): %w", b.Key(), durableWait, err, hbrbot.ErrNotDurable)
		}
	}
	return after, nil
}

// master is the client of the server that holds every key of hbrbot's:
// the client itself for one server (or a Sentinel group's master), the
// master of the keys' one slot ({h}) for a Cluster. A write and the WAIT
// that follows it go to one connection of it.
func (s *Store) master(ctx context.Context) (*redis.Client, error) {
	switch c := s.rdb.(type) {
	case *redis.Client:
		return c, nil
	case *redis.ClusterClient:
		m, err := c.MasterForKey(ctx, Prefix)
		if err != nil {
			return nil, fmt.Errorf("the cluster's master of %s: %w", Prefix, err)
		}
		return m, nil
	default:
		return nil, fmt.Errorf("a %T cannot wait for its writes", s.rdb)
	}
}

// Durability is the durability in force (auto resolved at Configure).
func (s *Store) Durability() Durability {
	if d, _ := s.durability.Load().(Durability); d != "" {
		return d
	}
	return DurabilityNone
}

// Configure checks what can be checked of the server's settings, chooses
// the durability for want (auto: what the server offers), and returns
// plain warnings about settings that break exactly-once. A managed Redis
// may refuse CONFIG: that is said, not guessed.
func (s *Store) Configure(ctx context.Context, want Durability) (Durability, []string, error) {
	var warnings []string
	srv, err := s.master(ctx) // on a Cluster, the one that holds the keys
	if err != nil {
		return "", nil, fmt.Errorf("redis: %w", err)
	}
	info, err := srv.Info(ctx, "replication", "persistence", "server").Result()
	if err != nil {
		return "", nil, fmt.Errorf("redis INFO: %w", err)
	}
	field := func(name string) string {
		for _, line := range strings.Split(info, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), name+":"); ok {
				return v
			}
		}
		return ""
	}
	replicas, _ := strconv.Atoi(field("connected_slaves"))
	aof := field("aof_enabled") == "1"
	waitaof := versionAtLeast(field("redis_version"), 7, 2)

	cfg := map[string]string{}
	for _, k := range []string{"appendfsync", "maxmemory-policy"} {
		v, err := srv.ConfigGet(ctx, k).Result()
		if err != nil {
			warnings = append(warnings, fmt.Sprintf("cannot read Redis's %s (CONFIG refused: %v): check it by hand (maxmemory-policy must be noeviction)", k, err))
			continue
		}
		cfg[k] = v[k]
	}
	if p, ok := cfg["maxmemory-policy"]; ok && p != "noeviction" {
		warnings = append(warnings, fmt.Sprintf("Redis maxmemory-policy is %s: under memory pressure it may evict a batch or a request, which the bot then reports as lost; set noeviction", p))
	}

	got := want
	switch {
	case want == DurabilityAuto && replicas > 0:
		got = DurabilityReplica
	case want == DurabilityAuto && aof && waitaof:
		got = DurabilityAOF
	case want == DurabilityAuto:
		got = DurabilityNone
		warnings = append(warnings, "Redis has no replica and no append-only file it can wait for (WAITAOF needs 7.2): a crash can lose a submitting mark and the bot may then submit a batch twice; give Redis a replica or appendonly yes")
	case want == DurabilityReplica && replicas == 0:
		warnings = append(warnings, "HBRBOT_REDIS_DURABILITY=replica but Redis has no connected replica: no batch will be submitted until one is")
	case want == DurabilityAOF && (!aof || !waitaof):
		warnings = append(warnings, "HBRBOT_REDIS_DURABILITY=aof but Redis cannot wait for its append-only file (appendonly yes and Redis 7.2+ needed): no batch will be submitted")
	}
	if got == DurabilityNone && aof && cfg["appendfsync"] == "everysec" && want == DurabilityAuto {
		warnings = append(warnings, "Redis appendfsync is everysec: a crash may lose the last second of writes")
	}
	s.durability.Store(got)
	return got, warnings, nil
}

// versionAtLeast reports whether a "7.2.4" version is at least major.minor.
func versionAtLeast(v string, major, minor int) bool {
	parts := strings.SplitN(strings.TrimSpace(v), ".", 3)
	if len(parts) < 2 {
		return false
	}
	ma, _ := strconv.Atoi(parts[0])
	mi, _ := strconv.Atoi(parts[1])
	return ma > major || ma == major && mi >= minor
}

// Ready checks Redis takes writes: a short-lived probe key, so that a
// read-only replica (after a failover) or a full server shows on /readyz,
// not only a failed PING.
func (s *Store) Ready(ctx context.Context) error {
	if err := s.rdb.Set(ctx, key("ready"), "1", 10*time.Second).Err(); err != nil {
		return fmt.Errorf("redis does not take writes: %w", err)
	}
	return nil
}
