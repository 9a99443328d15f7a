// Package redistest gives tests a Redis of their own:
//   - with HBRBOT_TEST_REDIS_URL set (CI starts one server), a database of
//     that server, flushed for the test;
//   - else a real redis-server child process on a free loopback port when
//     one is on PATH;
//   - else an in-process miniredis.
//
// With HBRBOT_REQUIRE_REDIS=1 (CI) a missing redis-server fails the test
// instead of falling back. Tests that stop and restart Redis use StartOwn.
package redistest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/hbrbot/hbrbot/internal/botproc"
	"github.com/hbrbot/hbrbot/internal/redisproc"
)

// Server is a Redis server for one test.
type Server struct {
	Addr string // host:port
	Real bool   // a redis-server process, not miniredis
	DB   int    // the database the test owns

	t     testing.TB
	cmd   *exec.Cmd
	dir   string
	port  int
	extra []string // more redis-server arguments
	mini  *miniredis.Miniredis
}

// URL is the redis:// URL of the test's database.
func (s *Server) URL() string { return "redis://" + s.Addr + "/" + strconv.Itoa(s.DB) }

// Client is a go-redis client for the test's database, closed with the test.
func (s *Server) Client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.Addr, DB: s.DB})
	s.t.Cleanup(func() { c.Close() })
	return c
}

// Start gives the test a Redis database, on the shared server when there
// is one.
func Start(t testing.TB) *Server {
	t.Helper()
	if url := os.Getenv("HBRBOT_TEST_REDIS_URL"); url != "" {
		return shared(t, url)
	}
	return StartOwn(t)
}

// shared takes one of databases 1..15 of the server at url for the test,
// exclusively (a lock key in database 0, released when the test ends: the
// packages' tests run in parallel), and flushes it.
func shared(t testing.TB, url string) *Server {
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatalf("HBRBOT_TEST_REDIS_URL: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := redis.NewClient(&redis.Options{Addr: opts.Addr})
	t.Cleanup(func() { c.Close() })
	token := fmt.Sprintf("%d-%d", os.Getpid(), time.Now().UnixNano())
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		for db := 1; db <= 15; db++ {
			lock := fmt.Sprintf("redistest:lock:%d", db)
			ok, err := c.SetNX(ctx, lock, token, 10*time.Minute).Result()
			if err != nil {
				t.Fatalf("shared redis at %s: %v", opts.Addr, err)
			}
			if !ok {
				continue
			}
			t.Cleanup(func() {
				// Release only our own lock.
				if v, _ := c.Get(context.Background(), lock).Result(); v == token {
					c.Del(context.Background(), lock)
				}
			})
			s := &Server{Addr: opts.Addr, Real: true, DB: db, t: t}
			if err := s.Client().FlushDB(ctx).Err(); err != nil {
				t.Fatalf("flush db %d: %v", db, err)
			}
			return s
		}
		select { // every database is taken: wait for a test to end
		case <-ctx.Done():
			t.Fatalf("no free database on the shared redis at %s", opts.Addr)
		case <-tick.C:
		}
	}
}

// StartOwn starts a server for this test alone, stopped when it ends.
func StartOwn(t testing.TB) *Server {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("HBRBOT_REQUIRE_REDIS") == "1" {
			t.Fatalf("HBRBOT_REQUIRE_REDIS=1 but redis-server is not on PATH: %v", err)
		}
		m := miniredis.RunT(t)
		return &Server{Addr: m.Addr(), t: t, mini: m}
	}
	return startProcess(t)
}

// startProcess starts a redis-server child process with extra arguments.
func startProcess(t testing.TB, extra ...string) *Server {
	t.Helper()
	s := &Server{Real: true, t: t, dir: t.TempDir(), extra: extra}
	var err error
	for range 5 { // a free port can be taken between picking and binding
		if s.port, err = botproc.FreePort(); err != nil {
			continue
		}
		if err = s.start(); err == nil {
			t.Cleanup(s.Stop)
			return s
		}
	}
	t.Fatalf("start redis-server: %v", err)
	return nil
}

// start runs redis-server on s.port and returns once it accepts commands.
func (s *Server) start() error {
	s.Addr = "127.0.0.1:" + strconv.Itoa(s.port)
	// appendonly (redisproc's default): a restarted server keeps its data,
	// as in production; fsync always, so a kill -9 loses nothing.
	cmd, err := redisproc.Start(context.Background(), "redis-server", s.dir, s.port,
		append([]string{"--appendfsync", "always"}, s.extra...)...)
	if err != nil {
		return err
	}
	s.cmd = cmd
	return nil
}

// Stop stops the server (kill -9 for a real one); Restart brings it back on
// the same port with its data.
func (s *Server) Stop() {
	if s.cmd == nil && s.mini == nil {
		s.t.Fatal("redistest: Stop on a shared server; use StartOwn")
	}
	if s.mini != nil {
		s.mini.Close()
		return
	}
	if s.cmd != nil && s.cmd.ProcessState == nil {
		s.cmd.Process.Kill()
		s.cmd.Wait()
	}
}

// Restart starts a stopped server again on the same address.
func (s *Server) Restart() {
	s.t.Helper()
	if s.mini != nil {
		if err := s.mini.Restart(); err != nil {
			s.t.Fatalf("restart miniredis: %v", err)
		}
		return
	}
	var err error
	for range 50 { // the port may linger briefly after a kill
		if err = s.start(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.t.Fatalf("restart redis-server: %v", err)
}

// Cluster is a Redis Cluster of three masters on loopback.
type Cluster struct {
	Nodes []*Server
}

// URL is REDIS_URL for REDIS_MODE=cluster: one node, the others as addr=.
func (c *Cluster) URL() string {
	u := "redis://" + c.Nodes[0].Addr + "?addr=" + c.Nodes[1].Addr + "&addr=" + c.Nodes[2].Addr
	return u
}

// Client is a cluster client, closed with the test.
func (c *Cluster) Client(t testing.TB) *redis.ClusterClient {
	var addrs []string
	for _, n := range c.Nodes {
		addrs = append(addrs, n.Addr)
	}
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	t.Cleanup(func() { cc.Close() })
	return cc
}

// StartCluster starts three redis-server processes with cluster mode on,
// splits the 16384 slots between them and waits for the cluster to be ok.
// Without redis-server it skips the test, unless HBRBOT_REQUIRE_REDIS=1.
func StartCluster(t testing.TB) *Cluster {
	t.Helper()
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("HBRBOT_REQUIRE_REDIS") == "1" {
			t.Fatalf("HBRBOT_REQUIRE_REDIS=1 but redis-server is not on PATH: %v", err)
		}
		t.Skip("redis-server is not on PATH: no cluster to test against")
	}
	c := &Cluster{}
	for range 3 {
		c.Nodes = append(c.Nodes, startProcess(t, clusterNodeArgs...))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var clients []*redis.Client
	for i, n := range c.Nodes {
		cl := n.Client()
		clients = append(clients, cl)
		lo, hi := clusterSlots(i)
		if err := cl.ClusterAddSlotsRange(ctx, lo, hi).Err(); err != nil {
			t.Fatalf("cluster addslots on %s: %v", n.Addr, err)
		}
	}
	for _, n := range c.Nodes[1:] {
		host, port, _ := net.SplitHostPort(n.Addr)
		if err := clients[0].ClusterMeet(ctx, host, port).Err(); err != nil {
			t.Fatalf("cluster meet %s: %v", n.Addr, err)
		}
	}
	// Gossip takes a moment: there is no event to wait for, so ask.
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		ok := true
		for _, cl := range clients {
			info, err := cl.ClusterInfo(ctx).Result()
			if err != nil || !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_known_nodes:3") {
				ok = false
				break
			}
		}
		if ok {
			return c
		}
		select {
		case <-ctx.Done():
			t.Fatalf("cluster did not become ok: %v", ctx.Err())
		case <-tick.C:
		}
	}
}

// clusterNodeArgs are the redis-server arguments of a cluster node.
var clusterNodeArgs = []string{"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000"}

// MasterOf is the node that serves key's slot.
func (c *Cluster) MasterOf(t testing.TB, key string) *Server {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	slot, err := c.Nodes[0].Client().ClusterKeySlot(ctx, key).Result()
	if err != nil {
		t.Fatalf("cluster keyslot %s: %v", key, err)
	}
	for i := range c.Nodes { // as StartCluster split them
		if lo, hi := clusterSlots(i); int(slot) >= lo && int(slot) <= hi {
			return c.Nodes[i]
		}
	}
	t.Fatalf("no node serves slot %d", slot)
	return nil
}

// clusterSlots is the range of slots StartCluster gives its i-th node.
func clusterSlots(i int) (lo, hi int) {
	const slots = 16384
	return i * slots / 3, (i+1)*slots/3 - 1
}

// AddReplica starts a node as a replica of master (one of Nodes) and
// returns once master counts it as a connected, in-sync replica: WAIT on
// master is then answered by it.
func (c *Cluster) AddReplica(t testing.TB, master *Server) *Server {
	t.Helper()
	r := startProcess(t, clusterNodeArgs...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	mc, rc := master.Client(), r.Client()
	id, err := mc.ClusterMyID(ctx).Result()
	if err != nil {
		t.Fatalf("cluster myid of %s: %v", master.Addr, err)
	}
	host, port, _ := net.SplitHostPort(master.Addr)
	if err := rc.ClusterMeet(ctx, host, port).Err(); err != nil {
		t.Fatalf("cluster meet %s: %v", master.Addr, err)
	}
	// Gossip and the initial sync take a moment: there is no event to
	// wait for, so ask.
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	replicating := false
	for {
		if !replicating {
			// REPLICATE needs the master known to the new node first.
			replicating = rc.Do(ctx, "CLUSTER", "REPLICATE", id).Err() == nil
		}
		info, err := mc.Info(ctx, "replication").Result()
		if replicating && err == nil && strings.Contains(info, "connected_slaves:1") && strings.Contains(info, "state=online") {
			return r
		}
		select {
		case <-ctx.Done():
			t.Fatalf("%s did not become a replica of %s: %v (replication: %q)", r.Addr, master.Addr, ctx.Err(), info)
		case <-tick.C:
		}
	}
}

// AwaitAcked waits until every replica of s has acknowledged every write
// s has taken so far (replicas acknowledge about once a second): a WAIT
// on any connection that wrote before then returns at once.
func (s *Server) AwaitAcked(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c := s.Client()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		info, err := c.Info(ctx, "replication").Result()
		if err == nil && replicasAcked(info) {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the replicas of %s did not catch up: %v (%q)", s.Addr, ctx.Err(), info)
		case <-tick.C:
		}
	}
}

// replicasAcked reads INFO replication: is every replica's acknowledged
// offset at the master's?
func replicasAcked(info string) bool {
	var master int64 = -1
	var acked []int64
	for _, line := range strings.Split(info, "\n") {
		line = strings.TrimSpace(line)
		if v, ok := strings.CutPrefix(line, "master_repl_offset:"); ok {
			master, _ = strconv.ParseInt(v, 10, 64)
		}
		if strings.HasPrefix(line, "slave") && strings.Contains(line, "offset=") {
			for _, f := range strings.Split(line[strings.IndexByte(line, ':')+1:], ",") {
				if v, ok := strings.CutPrefix(f, "offset="); ok {
					n, _ := strconv.ParseInt(v, 10, 64)
					acked = append(acked, n)
				}
			}
		}
	}
	if master < 0 || len(acked) == 0 {
		return false
	}
	for _, n := range acked {
		if n < master {
			return false
		}
	}
	return true
}

// Pause stops a real server with SIGSTOP: connections stay open and
// commands hang, as with a Redis stalled by a fork or a slow disk. Resume
// lets it go on.
func (s *Server) Pause() {
	s.t.Helper()
	if s.cmd == nil || s.cmd.Process == nil {
		s.t.Skip("redistest: Pause needs a real redis-server (StartOwn)")
	}
	if err := s.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		s.t.Fatalf("pause redis-server: %v", err)
	}
}

// Resume undoes Pause (SIGCONT).
func (s *Server) Resume() {
	s.t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		s.t.Fatalf("resume redis-server: %v", err)
	}
}
