package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hbrbot/hbrbot"
	"github.com/hbrbot/hbrbot/hbrtest"
	"github.com/hbrbot/hbrbot/internal/botproc"
	"github.com/hbrbot/hbrbot/internal/redistest"
	"github.com/hbrbot/hbrbot/redisstore"
	"github.com/hbrbot/hbrbot/slacktest"
)

var (
	soakJobs  = flag.Int("soak.jobs", 30, "commands the chaos soak sends (full size: 200)")
	soakKills = flag.Int("soak.kills", 4, "replicas the chaos soak kills with SIGKILL (full size: 20)")
	soakSeed  = flag.Int64("soak.seed", 0, "seed of the chaos soak's choices; 0 picks one, printed for a rerun")
)

// soakWindow is how many approved batches the soak keeps unreported at
// once: a stream, not one burst.
const soakWindow = 10

// TestChaosSoak runs two replicas of the real binary as child processes
// against the fakes and a Redis of its own, streams commands and approvals
// at them (with second clicks and redelivered envelopes), and meanwhile
// kills a replica with SIGKILL at moments picked by events (right after
// the k-th UpgradeBackupClients call, started or final report) and starts
// a new one, and once stops and restarts Redis. At the end every approved
// batch must have exactly one final report, no ID may have been submitted
// twice, no table shared twice, no acknowledged command lost, and a batch
// whose answer was lost (its replica died mid-submission) must be reported
// with verified outcomes, never "outcome unknown".
func TestChaosSoak(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos soak: builds the binary and kills it repeatedly")
	}
	began := time.Now()
	seed := *soakSeed
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	t.Logf("seed %d (rerun: -soak.seed=%d -soak.jobs=%d -soak.kills=%d)", seed, seed, *soakJobs, *soakKills)
	rng := rand.New(rand.NewPCG(uint64(seed), 0x50a4))
	ctx, cancel := context.WithTimeout(context.Background(),
		2*time.Minute+time.Duration(*soakJobs)*time.Second+time.Duration(*soakKills)*10*time.Second)
	defer cancel()

	s := newSoak(t, ctx)
	reqs, totalBatches := s.plan(rng)
	events := planChaos(rng, *soakKills, totalBatches)
	for range 2 {
		s.slots = append(s.slots, s.startChild())
	}

	// The stream of commands and clicks; the chaos below runs meanwhile.
	var quiet sync.Mutex // held by the driver per command, by a Redis outage
	driverDone := make(chan struct{})
	var lostCommands int
	go func() {
		defer close(driverDone)
		lostCommands = s.drive(reqs, &quiet)
	}()
	defer func() { // the driver must not outlive the test, even a failed one
		cancel()
		<-driverDone
	}()

	// Once the stream is done and no batch is scheduled, no event can come:
	// the chaos still waiting for one is called off.
	chaosCtx, stopChaos := context.WithCancel(ctx)
	defer stopChaos()
	go func() {
		select {
		case <-driverDone:
		case <-chaosCtx.Done():
			return
		}
		if s.awaitIdle(chaosCtx) == nil {
			stopChaos()
		}
	}()
	redisRestarts := 0
	for _, ev := range events {
		if err := s.awaitEvent(chaosCtx, ev); err != nil {
			t.Logf("chaos: %s after %s #%d called off: the soak ran out of work", ev.action, ev.on, ev.at)
			continue
		}
		switch ev.action {
		case "kill":
			s.killAndReplace(rng.IntN(len(s.slots)), ev)
		case "redis":
			s.redisOutage(&quiet, ev)
			redisRestarts++
		}
	}
	stopChaos()
	select {
	case <-driverDone:
	case <-ctx.Done():
		t.Fatalf("the command stream did not finish: %v", ctx.Err())
	}
	if redisRestarts == 0 { // called off: Redis restarts once all the same
		s.redisOutage(&quiet, chaosEvent{action: "redis", on: "end"})
		redisRestarts++
	}

	// Clicks acknowledged by a replica that died before acting on them
	// (or refused while Redis was down) leave requests pending: their
	// approvers click again, as people would.
	reclicks, err := s.settle(reqs)
	if err != nil {
		t.Errorf("the soak did not settle: %v", err) // what is missing is counted below
	}

	// What happened, counted from the fakes' records.
	actx, acancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer acancel()
	started, finals := threadReports(s.slack)
	approved := map[string]*replicaRequest{} // batch key -> request
	var approvedBatches int
	for _, r := range reqs {
		if r.id == "" {
			continue
		}
		req, err := s.store.Request(actx, r.id)
		if err != nil {
			t.Fatalf("request %s: %v", r.id, err)
		}
		if req.State != hbrbot.RequestApproved {
			t.Errorf("request %s (%s) ended %s, want approved", r.id, r.ids[0], req.State)
			continue
		}
		for b := range r.batches {
			approved[r.batchKey(b)] = r
			approvedBatches++
		}
	}
	var dupFinals, dupStarted, lost, unknown, resolved []string
	for k := range approved {
		switch n := len(finals[k]); {
		case n == 0:
			lost = append(lost, k)
		case n > 1:
			dupFinals = append(dupFinals, k)
		}
		if len(started[k]) > 1 {
			dupStarted = append(dupStarted, k)
		}
		if len(finals[k]) > 0 && strings.Contains(text(finals[k][0]), "answer to UpgradeBackupClients was lost") {
			resolved = append(resolved, k)
		}
		// The report's verdict, not the SDK error it quotes ("…: outcome
		// unknown)").
		if len(finals[k]) > 0 && strings.Contains(text(finals[k][0]), "outcome unknown:") {
			unknown = append(unknown, k)
			if len(started[k]) > 0 {
				t.Errorf("batch %s: reported started (HBR task known) and then outcome unknown", k)
			}
		}
	}
	// Every ID of an approved request is named in one of its final reports,
	// or in the CSV table a large job's report comes with.
	for _, r := range reqs {
		if r.id == "" || approved[r.batchKey(0)] == nil {
			continue
		}
		var ms []slacktest.Message
		for b := range r.batches {
			ms = append(ms, finals[r.batchKey(b)]...)
		}
		if missing := unreported(s.slack, ms, r.ids); len(missing) > 0 {
			t.Errorf("request %s: no final report names %s", r.id, missing[0])
		}
	}
	var phantom []string
	for k, ms := range finals {
		if approved[k] == nil {
			phantom = append(phantom, fmt.Sprintf("%s (%d)", k, len(ms)))
		}
	}
	for k := range started {
		if approved[k] == nil {
			phantom = append(phantom, k+" (started)")
		}
	}
	// An UpgradeBackupClients call HBR acted on (all but the answers that
	// prove nothing ran) submits its IDs.
	submitted := map[string]int{}
	for _, c := range s.hbr.Calls("UpgradeBackupClients") {
		if c.Code == "ServiceUnavailable" || strings.HasPrefix(c.Code, "Throttling") {
			continue
		}
		for _, id := range callIDs(t, c) {
			submitted[id]++
		}
	}
	var dupIDs []string
	for id, n := range submitted {
		if n > 1 {
			dupIDs = append(dupIDs, fmt.Sprintf("%s×%d", id, n))
		}
	}
	nFinals := 0
	for _, ms := range finals {
		nFinals += len(ms)
	}
	// Of the batches reported "outcome unknown", how many HBR did start.
	jobOf := map[string]bool{}
	for _, j := range s.hbr.Jobs() {
		for _, id := range slices.Concat(j.InstanceIDs, j.ClientIDs) {
			jobOf[id] = true
		}
	}
	unknownStarted := 0
	for _, k := range slices.Concat(unknown, resolved) {
		report := text(finals[k][0]) // lists the batch's IDs
		for _, id := range approved[k].ids {
			if jobOf[id] && strings.Contains(report, "`"+id+"`") {
				unknownStarted++
				break
			}
		}
	}

	dupFiles := s.duplicateFiles()
	s.stopChildren()
	elapsed := time.Since(began).Round(100 * time.Millisecond)
	summary := fmt.Sprintf("soak: jobs=%d batches=%d reports=%d duplicate_reports=%d duplicate_submissions=%d lost=%d restarts=%d redis_restarts=%d unknown=%d unknown_resolved=%d lost_commands=%d duplicate_files=%d elapsed=%s"+
		" (seed=%d kills_planned=%d approved_batches=%d unknown_started_by_hbr=%d hbr_jobs=%d upgrade_calls=%d describe_calls=%d thread_lookups=%d duplicate_started=%d reclicks=%d)",
		len(reqs), totalBatches, nFinals, len(dupFinals), len(dupIDs), len(lost), s.restarts, redisRestarts, len(unknown), len(resolved), lostCommands, len(dupFiles), elapsed,
		seed, *soakKills, approvedBatches, unknownStarted, len(s.hbr.Jobs()), len(s.hbr.Calls("UpgradeBackupClients")), len(s.hbr.Calls("DescribeTask")),
		len(s.slack.Calls("conversations.replies")), len(dupStarted), reclicks)
	t.Log(summary)
	fmt.Println(summary)

	sort.Strings(dupFinals)
	sort.Strings(lost)
	sort.Strings(dupIDs)
	if len(dupFinals) > 0 {
		t.Errorf("batches with more than one final report: %v", dupFinals)
	}
	if len(dupIDs) > 0 {
		t.Errorf("IDs submitted more than once: %v", dupIDs)
	}
	if len(lost) > 0 {
		t.Errorf("approved batches without a final report: %v", lost)
	}
	if len(unknown) > 0 {
		t.Errorf("batches whose answer was lost, reported without verified outcomes: %v", unknown)
	}
	if len(dupFiles) > 0 {
		t.Errorf("table files shared more than once: %v", dupFiles)
	}
	if lostCommands > 0 {
		t.Errorf("%d acknowledged commands never got their card", lostCommands)
	}
	if len(dupStarted) > 0 {
		t.Errorf("batches with more than one started reply: %v", dupStarted)
	}
	if len(phantom) > 0 {
		t.Errorf("reports of batches never approved: %v", phantom)
	}
	for _, k := range slices.Concat(dupFinals, lost, dupStarted) {
		s.logHistory(strings.Split(k, ".")[0])
	}
	s.checkLogs()
}

// soak is the chaos soak's world: the fakes, Redis, and the replicas.
type soak struct {
	t     *testing.T
	ctx   context.Context
	slack *slacktest.Server
	hbr   *hbrtest.Server
	redis *redistest.Server
	store *redisstore.Store
	bin   string
	dir   string   // the replicas' working directory
	env   []string // what every replica gets, but HBRBOT_HTTP_ADDR

	hangAt, throttleAt int // commands before which HBR hangs once, throttles

	slots    []*child // the running replicas
	all      []*child // every replica started, in order
	restarts int
}

// child is one replica process.
type child struct {
	*botproc.Proc
	name string
	logs *syncBuffer // its whole log, for the checks at the end
}

func newSoak(t *testing.T, ctx context.Context) *soak {
	h := newHarness(t, map[string]string{
		"HBRBOT_POLL_INTERVAL": "100ms",
		"HBRBOT_LEASE":         "5s",
		// A submission whose answer was lost is verified this long after it
		// began (HBR's jobs end within 15 minutes; the fake's within seconds).
		"HBRBOT_TASK_TIMEOUT":   "10s",
		"HBRBOT_HBR_RATE_LIMIT": "6000",
		// One test user sends every command: the flood limits have their own test.
		"HBRBOT_USER_COMMANDS": "10000", "HBRBOT_CHANNEL_COMMANDS": "10000", "HBRBOT_USER_PENDING": "10000",
	})
	h.redis = redistest.StartOwn(t) // stopped and restarted once
	h.env["REDIS_URL"] = h.redis.URL()
	s := &soak{t: t, ctx: ctx, slack: h.slack, hbr: h.hbr, redis: h.redis,
		store: redisstore.New(h.redis.Client()), dir: t.TempDir()}
	for k, v := range h.env {
		if k != "HBRBOT_HTTP_ADDR" {
			s.env = append(s.env, k+"="+v)
		}
	}
	s.bin = botBinary(t)
	return s
}

// startChild starts a replica and returns once it is ready: connected to
// Slack (the fake has its socket) and to Redis.
func (s *soak) startChild() *child {
	t := s.t
	t.Helper()
	c := &child{name: fmt.Sprintf("replica-%02d", len(s.all)+1), logs: &syncBuffer{}}
	var err error
	c.Proc, err = botproc.Start(botproc.Config{Bin: s.bin, Env: s.env, Dir: s.dir, Stderr: c.logs})
	if err != nil {
		t.Fatalf("%s: %v", c.name, err)
	}
	t.Cleanup(func() { c.Kill() })
	s.all = append(s.all, c)
	if err := c.AwaitReady(s.ctx); err != nil {
		t.Fatalf("%s not ready: %v", c.name, err)
	}
	return c
}

// killAndReplace kills the replica in slot with SIGKILL and starts a new
// one in its place.
func (s *soak) killAndReplace(slot int, ev chaosEvent) {
	s.t.Helper()
	old := s.slots[slot]
	if err := old.Kill(); err != nil {
		s.t.Fatalf("kill %s: %v", old.name, err)
	}
	s.slots[slot] = s.startChild()
	s.restarts++
	s.t.Logf("chaos: killed %s after %s #%d; %s took its place", old.name, ev.on, ev.at, s.slots[slot].name)
}

// redisOutage kills Redis (between commands), waits until every replica
// notices (its /readyz fails), and restarts it with its data.
func (s *soak) redisOutage(quiet *sync.Mutex, ev chaosEvent) {
	s.t.Helper()
	quiet.Lock()
	defer quiet.Unlock()
	s.redis.Stop()
	for _, c := range s.slots {
		if err := c.AwaitReadyz(s.ctx, http.StatusServiceUnavailable); err != nil {
			s.t.Fatalf("%s still ready with Redis down: %v", c.name, err)
		}
	}
	s.redis.Restart()
	for _, c := range s.slots {
		if err := c.AwaitReady(s.ctx); err != nil {
			s.t.Fatalf("%s did not recover from the Redis outage: %v", c.name, err)
		}
	}
	s.t.Logf("chaos: Redis stopped and restarted after %s #%d", ev.on, ev.at)
}

// stopChildren stops the replicas as an orchestrator would (SIGTERM);
// each must exit 0 within the contract's 10 s (15 s, for a slow machine).
func (s *soak) stopChildren() {
	var wg sync.WaitGroup
	for _, c := range s.slots {
		wg.Go(func() {
			if err := c.Stop(15 * time.Second); err != nil {
				s.t.Errorf("%s after SIGTERM: %v", c.name, err)
			}
		})
	}
	wg.Wait()
}

// checkLogs fails on a panic or data race in any replica.
func (s *soak) checkLogs() {
	for _, c := range s.all {
		l := c.logs.all()
		for _, bad := range []string{"WARNING: DATA RACE", "panic:", "fatal error:"} {
			if i := strings.Index(l, bad); i >= 0 {
				s.t.Errorf("%s: %s\n%s", c.name, bad, l[i:min(len(l), i+4000)])
			}
		}
	}
}

// logHistory logs every replica's lines about a request, for diagnosis.
func (s *soak) logHistory(requestID string) {
	for _, c := range s.all {
		var lines []string
		for _, l := range strings.Split(c.logs.all(), "\n") {
			if strings.Contains(l, requestID) {
				lines = append(lines, l)
			}
		}
		if len(lines) > 0 {
			s.t.Logf("%s about %s:\n%s", c.name, requestID, strings.Join(lines, "\n"))
		}
	}
}

// plan makes the commands: most with 1-5 IDs, some with 101-250 (two or
// three jobs), some naming an instance HBR refuses (alone: the call fails;
// among others: refused in InstanceStatuses). It queues a varied script
// for every HBR job to come.
func (s *soak) plan(rng *rand.Rand) ([]*replicaRequest, int) {
	reqs := make([]*replicaRequest, *soakJobs)
	total := 0
	for i := range reqs {
		r := &replicaRequest{}
		switch x := rng.IntN(100); {
		case x < 5:
			id := fmt.Sprintf("i-s%04dbad", i)
			s.hbr.SetInstance(id, hbrtest.Instance{Invalid: hbrtest.InstanceNotRunning})
			r.ids = []string{id}
		default:
			n := 1 + rng.IntN(5)
			if x < 15 {
				n = 101 + rng.IntN(150)
			}
			for k := range n {
				prefix := "i"
				if k > 0 && rng.IntN(3) == 0 {
					prefix = "c"
				}
				r.ids = append(r.ids, fmt.Sprintf("%s-s%04dn%03d", prefix, i, k))
				// The fleet exists before any job: a look-up finds every
				// client, whether or not a job ever reached HBR.
				s.hbr.SetInstance(fmt.Sprintf("i-s%04dn%03d", i, k), hbrtest.Instance{})
			}
			if n > 2 && rng.IntN(10) == 0 {
				id := fmt.Sprintf("i-s%04dbad", i)
				s.hbr.SetInstance(id, hbrtest.Instance{Invalid: hbrtest.CloudAssistNotRunningOnInstance})
				r.ids[1+rng.IntN(n-1)] = id
			}
		}
		r.batches = (len(r.ids) + 99) / 100
		total += r.batches
		reqs[i] = r
	}
	s.hangAt, s.throttleAt = rng.IntN(len(reqs)), rng.IntN(len(reqs))
	for range total {
		steps := 2 + rng.IntN(14) // 2..15 DescribeTask answers
		var script []hbrtest.Step
		for j := range steps - 1 {
			p := j * 100 / (steps - 1)
			script = append(script, hbrtest.Step{Progress: p, Description: hbrtest.TaskCreated})
		}
		switch x := rng.IntN(100); {
		case x < 70:
			script = append(script, hbrtest.Step{Progress: 100, Description: hbrtest.TaskCompleted})
		case x < 80:
			script = append(script, hbrtest.Step{Progress: -1, Description: hbrtest.TaskCreated})
		case x < 90:
			script = append(script, hbrtest.Step{Progress: 60, Description: "expired", EmptyResult: true})
		case x < 95:
			script = append(script, hbrtest.Step{Progress: 30, Description: "cancelled", ObjectResult: true})
		default:
			script = append(script, hbrtest.Step{Progress: 100, Description: hbrtest.TaskCompleted, ObjectResult: true})
		}
		s.hbr.QueueJob(script...)
	}
	return reqs, total
}

// chaosEvent is a fault injected right after the at-th event of kind on
// ("upgrade": UpgradeBackupClients calls; "started", "final": reports).
type chaosEvent struct {
	action string // "kill" or "redis"
	on     string
	at     int
}

// planChaos spreads kills and one Redis outage over the soak.
func planChaos(rng *rand.Rand, kills, batches int) []chaosEvent {
	type planned struct {
		chaosEvent
		f float64
	}
	var ps []planned
	for i := range kills + 1 {
		action := "kill"
		if i == kills {
			action = "redis"
		}
		f := 0.05 + 0.8*rng.Float64()
		if action == "redis" {
			f = 0.1 + 0.4*rng.Float64() // early enough to happen mid-stream
		}
		on := []string{"upgrade", "started", "final", "ack", "upload"}[rng.IntN(5)]
		if action == "redis" {
			on = []string{"upgrade", "started", "final"}[rng.IntN(3)]
		}
		ps = append(ps, planned{chaosEvent{action: action, on: on}, f})
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].f < ps[j].f })
	var out []chaosEvent
	for _, p := range ps {
		expect := float64(batches)
		switch p.on {
		case "started":
			expect *= 0.85 // refused batches have none
		case "ack":
			expect *= 0.85 // one a command
		case "upload":
			expect *= 0.2 // only jobs of over 40 IDs have a table
		}
		p.at = max(1, int(p.f*expect))
		out = append(out, p.chaosEvent)
	}
	return out
}

// awaitEvent waits for ev's trigger.
func (s *soak) awaitEvent(ctx context.Context, ev chaosEvent) error {
	switch ev.on {
	case "upgrade":
		_, err := s.hbr.WaitCalls(ctx, "UpgradeBackupClients", ev.at)
		return err
	case "upload": // mid-upload: the URL is given, the file not yet shared
		_, err := s.slack.WaitCalls(ctx, "files.getUploadURLExternal", ev.at, nil)
		return err
	case "ack": // a command stored and acked, its card not yet posted
		return s.awaitCommandAcks(ctx, ev.at)
	}
	_, err := s.slack.WaitCalls(ctx, "chat.postMessage", ev.at, isReport(ev.on))
	return err
}

// awaitCommandAcks waits until n commands have been acked as stored.
// The fake has no event for acks by content, so it polls its record.
func (s *soak) awaitCommandAcks(ctx context.Context, n int) error {
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	for {
		got := 0
		for _, a := range s.slack.Acks() {
			if strings.Contains(string(a.Payload), "Recorded.") {
				got++
			}
		}
		if got >= n {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// duplicateFiles counts table files shared more than once (by name: it
// names the batch).
func (s *soak) duplicateFiles() []string {
	seen := map[string]int{}
	for _, f := range s.slack.Files() {
		seen[f.Name]++
	}
	var dups []string
	for name, n := range seen {
		if n > 1 {
			dups = append(dups, fmt.Sprintf("%s×%d", name, n))
		}
	}
	sort.Strings(dups)
	return dups
}

// drive sends the commands one by one, approves each card (some twice,
// some envelopes twice), and keeps about soakWindow batches in flight. A
// command whose replica died before posting its card is lost, as in
// Slack; drive counts those. It runs outside the test goroutine: it only
// reports errors.
func (s *soak) drive(reqs []*replicaRequest, quiet *sync.Mutex) (lostCommands int) {
	clicked, written := 0, 0 // batches approved; of them, given up on
	for i, r := range reqs {
		if s.ctx.Err() != nil {
			return lostCommands
		}
		if target := clicked - soakWindow - written; target > 0 {
			if got, ok := s.awaitFinals(target); !ok {
				written += target - got // lost clicks or a slow takeover: do not wait on them again
			}
		}
		switch i {
		case s.hangAt: // HBR starts the job but never answers: outcome unknown
			s.hbr.HangNext("UpgradeBackupClients", 1, time.Minute)
		case s.throttleAt: // answers that prove nothing ran: retried
			s.hbr.FailNext("UpgradeBackupClients", 1, http.StatusServiceUnavailable, "ServiceUnavailable")
			s.hbr.FailNext("DescribeTask", 2, http.StatusBadRequest, "Throttling.User")
			// Only a takeover looks for a report already posted.
			s.slack.RateLimit("conversations.replies", 1, time.Second)
		}
		quiet.Lock()
		env := s.slack.SendSlashCommand(slacktest.SlashCommand{ChannelID: channel, UserID: requester, Text: strings.Join(r.ids, ", ")})
		if i%7 == 3 {
			s.slack.Redeliver(env)
		}
		first := "`" + r.ids[0] + "`"
		// > Slack redelivering an unacked envelope (3s), and a lease: a
		// replica killed after its ack leaves the command to another.
		cctx, cancel := context.WithTimeout(s.ctx, 20*time.Second)
		_, err := s.slack.WaitCall(cctx, "chat.postMessage", func(c slacktest.Call) bool {
			return isCard(c) && strings.Contains(c.Form.Get("blocks"), first)
		})
		cancel()
		if err != nil {
			lostCommands++
			s.t.Logf("command %d (%s): no card: %v", i, r.ids[0], err)
			quiet.Unlock()
			continue
		}
		for _, c := range cards(s.slack) {
			if strings.Contains(text(c), first) {
				r.card = c
				r.id = cardRequestID(c)
				break
			}
		}
		if r.id == "" {
			s.t.Errorf("command %d: card without a request ID", i)
			quiet.Unlock()
			continue
		}
		click := s.slack.SendBlockAction(slacktest.BlockAction{ChannelID: channel, MessageTS: r.card.TS,
			UserID: approver, ActionID: "hbr_upgrade_approve", Value: r.id})
		if i%4 == 1 {
			s.slack.SendBlockAction(slacktest.BlockAction{ChannelID: channel, MessageTS: r.card.TS,
				UserID: "U0CAROL", ActionID: "hbr_upgrade_approve", Value: r.id})
		}
		if i%5 == 2 {
			s.slack.Redeliver(click)
		}
		clicked += r.batches
		quiet.Unlock()
	}
	return lostCommands
}

// awaitFinals waits (at most a lease and then some) until n distinct
// batches have a final report, and says how many it saw.
func (s *soak) awaitFinals(n int) (int, bool) {
	ctx, cancel := context.WithTimeout(s.ctx, 12*time.Second)
	defer cancel()
	seen := map[string]bool{}
	_, err := s.slack.WaitCalls(ctx, "chat.postMessage", n, func(c slacktest.Call) bool {
		if !isReport("final")(c) {
			return false
		}
		k := reportBatch(c)
		if seen[k] {
			return false
		}
		seen[k] = true
		return true
	})
	return len(seen), err == nil
}

// reportBatch is the batch key in a report post's metadata.
func reportBatch(c slacktest.Call) string {
	var md struct {
		EventPayload map[string]string `json:"event_payload"`
	}
	json.Unmarshal([]byte(c.Form.Get("metadata")), &md)
	return md.EventPayload["batch"]
}

// cardRequestID reads the request ID from a card's Approve button.
func cardRequestID(card slacktest.Message) string {
	var blocks []struct {
		Elements []struct {
			ActionID string `json:"action_id"`
			Value    string `json:"value"`
		} `json:"elements"`
	}
	json.Unmarshal(card.Blocks, &blocks)
	for _, b := range blocks {
		for _, e := range b.Elements {
			if e.ActionID == "hbr_upgrade_approve" {
				return e.Value
			}
		}
	}
	return ""
}

// awaitIdle waits until no batch is scheduled: nothing is left to submit,
// poll or report. There is no event for that, so it polls Redis.
func (s *soak) awaitIdle(ctx context.Context) error {
	rdb := s.redis.Client()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		items, err := rdb.ZRange(ctx, redisstore.Prefix+"due", 0, -1).Result()
		if err == nil && !slices.ContainsFunc(items, func(m string) bool { return strings.HasPrefix(m, string(hbrbot.WorkBatch)+":") }) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// settle clicks Approve again on every card still pending once the work
// is done, until none is, and returns how many clicks that took.
func (s *soak) settle(reqs []*replicaRequest) (int, error) {
	t := s.t
	reclicks := 0
	for round := 0; ; round++ {
		if err := s.awaitIdle(s.ctx); err != nil {
			return reclicks, fmt.Errorf("work still scheduled: %w", err)
		}
		var pending []*replicaRequest
		for _, r := range reqs {
			if r.id == "" {
				continue
			}
			req, err := s.store.Request(s.ctx, r.id)
			if err != nil {
				return reclicks, err
			}
			if req.State == hbrbot.RequestPending {
				pending = append(pending, r)
			}
		}
		if len(pending) == 0 {
			return reclicks, nil
		}
		if round == 5 {
			return reclicks, fmt.Errorf("%d requests still pending after %d rounds of clicks", len(pending), round)
		}
		for _, r := range pending {
			t.Logf("request %s (%s) still pending: clicking Approve again", r.id, r.ids[0])
			s.logHistory(r.id)
			s.slack.SendBlockAction(slacktest.BlockAction{ChannelID: channel, MessageTS: r.card.TS,
				UserID: approver, ActionID: "hbr_upgrade_approve", Value: r.id})
			reclicks++
		}
		// Wait until each is decided (by then its batches are scheduled).
		tick := time.NewTicker(20 * time.Millisecond)
		for _, r := range pending {
			for {
				req, err := s.store.Request(s.ctx, r.id)
				if err == nil && req.State != hbrbot.RequestPending {
					break
				}
				select {
				case <-s.ctx.Done():
					tick.Stop()
					return reclicks, fmt.Errorf("request %s not decided after a second click: %w", r.id, s.ctx.Err())
				case <-tick.C:
				}
			}
		}
		tick.Stop()
	}
}

// all is the whole log, untruncated.
func (s *syncBuffer) all() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
