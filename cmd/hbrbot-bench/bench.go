package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/sync/errgroup"

	"github.com/hbrbot/hbrbot/hbrtest"
	"github.com/hbrbot/hbrbot/internal/botproc"
	"github.com/hbrbot/hbrbot/slacktest"
)

// Options configure one bench run.
type Options struct {
	Replicas int
	// Commands slash commands are sent, at most InFlight at a time (sent
	// and not yet decided). The first ones are approved, enough to create
	// Jobs HBR jobs; any left over are cancelled.
	Commands int
	InFlight int
	// ApproveOnPost clicks a card as soon as it is posted, before a
	// deferred look-up lands (by default the approver waits to see the
	// versions).
	ApproveOnPost bool
	// Jobs HBR jobs are tracked. With more jobs than commands, a command
	// names 100 IDs per job (the bot splits it); else each approved command
	// names IDsPerJob IDs.
	Jobs      int
	IDsPerJob int
	// Job durations are uniform in [MinDuration, MaxDuration], drawn from
	// Seed: two runs with one seed track the same jobs.
	MinDuration, MaxDuration time.Duration
	Seed                     uint64
	// Model is how jobs last: "wall" (a set time, whatever the polling;
	// see hbrProxy) or "steps" (hbrtest's script, one step per
	// DescribeTask: duration/interval steps).
	Model string

	// PollInterval is HBRBOT_POLL_INTERVAL. Policy, when set, is
	// HBRBOT_POLL_POLICY; MinInterval, when set, HBRBOT_POLL_MIN_INTERVAL.
	PollInterval time.Duration
	Policy       string
	MinInterval  time.Duration
	// HBRRateLimit is HBRBOT_HBR_RATE_LIMIT (calls a minute, all replicas).
	HBRRateLimit int
	// HBRRateLimits, when set, is HBRBOT_HBR_RATE_LIMITS (each action's
	// budget); empty: the bot's defaults (480 each).
	HBRRateLimits string
	// Quota, when positive, makes hbrtest enforce HBR's flow control:
	// Quota calls per action per rolling minute, Throttling.User beyond.
	Quota int
	// Lease is HBRBOT_LEASE.
	Lease time.Duration
	// Env is more KEY=VALUE for every replica; they win over the above.
	Env []string

	// Bot is a prebuilt hbrbot binary; empty builds ./cmd/hbrbot.
	Bot string
	// Timeout bounds the run; 0 picks one from the durations.
	Timeout time.Duration
	// Progress receives progress lines; nil discards them.
	Progress io.Writer
	// KeepDir keeps the work directory (bot logs) and names it in Result.
	KeepDir bool
	// ProfileDir, when set, receives Go profiles of replica 1 (it runs
	// with HBRBOT_PPROF): a CPU profile and an execution trace of the
	// command phase (commands.cpu.pprof, commands.trace), and once every job
	// has started a heap profile (jobs.heap.pprof) and a CPU profile of the
	// steady polling window (polling.cpu.pprof).
	ProfileDir string
}

// Small is the preset for CI: it finishes well within a minute on two
// cores.
func Small() Options {
	return Options{Replicas: 2, Commands: 20, InFlight: 20, Jobs: 40, IDsPerJob: 100,
		MinDuration: time.Second, MaxDuration: 4 * time.Second, Seed: 1, Model: "wall",
		PollInterval: 500 * time.Millisecond, HBRRateLimit: 6000, Lease: 5 * time.Second,
		// Far above the bot's defaults: the preset measures the bot, fast.
		HBRRateLimits: "DescribeTask=6000,UpgradeBackupClients=6000,DescribeBackupClients=6000"}
}

// Defaults are the flags' defaults: 200 commands and 1000 jobs, a run of
// about three minutes. The interval is 15s, not the bot's 10s: 1000 jobs
// polled every 10s need 6000 calls a minute, the most HBRBOT_HBR_RATE_LIMIT
// allows, and the limiter would then set the pace.
func Defaults() Options {
	return Options{Replicas: 1, Commands: 200, InFlight: 200, Jobs: 1000, IDsPerJob: 100,
		MinDuration: 30 * time.Second, MaxDuration: 150 * time.Second, Seed: 1, Model: "wall",
		PollInterval: 15 * time.Second, HBRRateLimit: 6000, Lease: 5 * time.Second}
}

func (o Options) validate() error {
	var errs []error
	check := func(ok bool, format string, args ...any) {
		if !ok {
			errs = append(errs, fmt.Errorf(format, args...))
		}
	}
	check(o.Replicas >= 1, "replicas must be at least 1")
	check(o.Commands >= 1, "commands must be at least 1")
	check(o.InFlight >= 1, "inflight must be at least 1")
	check(o.Jobs >= 1, "jobs must be at least 1")
	check(o.IDsPerJob >= 1 && o.IDsPerJob <= 100, "ids-per-job must be between 1 and 100")
	check(o.Jobs <= 100*o.Commands, "at most 100 jobs per command (HBRBOT_MAX_TARGETS caps a command at 10000 IDs)")
	check(o.MinDuration > 0 && o.MaxDuration >= o.MinDuration, "durations: need 0 < min <= max")
	check(o.Model == "wall" || o.Model == "steps", "model must be wall or steps")
	check(o.PollInterval >= 100*time.Millisecond, "poll interval must be at least 100ms (the bot's minimum)")
	check(o.Policy == "" || o.Policy == "fixed" || o.Policy == "adaptive", "policy must be fixed or adaptive")
	check(o.Lease >= 5*time.Second, "lease must be at least 5s (the bot's minimum)")
	check(o.HBRRateLimit >= 1 && o.HBRRateLimit <= 60000, "hbr-rate-limit must be between 1 and 60000")
	check(o.Quota >= 0, "quota must not be negative")
	for _, kv := range o.Env {
		k, _, ok := strings.Cut(kv, "=")
		check(ok && k != "", "env %q is not KEY=VALUE", kv)
	}
	return errors.Join(errs...)
}

// plan is the seeded scenario: who sends what, and how long each job runs.
type plan struct {
	cmds      []cmdPlan
	jobs      []jobPlan
	byFirstID map[string]int // a job's first instance ID -> its index
	maxIDs    int            // most IDs in one command
}

type cmdPlan struct {
	channel string
	ids     []string
	jobs    []int // indexes into plan.jobs
	approve bool
}

type jobPlan struct {
	cmd      int
	firstID  string
	ids      int
	duration time.Duration
}

func makePlan(o Options) plan {
	p := plan{byFirstID: map[string]int{}}
	rng := rand.New(rand.NewPCG(o.Seed, o.Seed^0x9e3779b97f4a7c15))
	span := int64(o.MaxDuration - o.MinDuration)
	jobsOf := func(i int) int {
		if o.Jobs >= o.Commands {
			n := o.Jobs / o.Commands
			if i < o.Jobs%o.Commands {
				n++
			}
			return n
		}
		if i < o.Jobs {
			return 1
		}
		return 0
	}
	perJob := o.IDsPerJob
	if o.Jobs > o.Commands {
		perJob = 100 // a command of several jobs fills all but its last
	}
	for i := range o.Commands {
		c := cmdPlan{channel: fmt.Sprintf("C0B%05d", i)}
		n := jobsOf(i)
		c.approve = n > 0
		if n == 0 {
			c.ids = []string{fmt.Sprintf("i-b%05dx", i)} // cancelled: never submitted
		}
		for k := range n {
			j := jobPlan{cmd: i, ids: perJob}
			if span > 0 {
				j.duration = o.MinDuration + time.Duration(rng.Int64N(span+1))
			} else {
				j.duration = o.MinDuration
			}
			for m := range perJob {
				c.ids = append(c.ids, fmt.Sprintf("i-b%05dj%03dn%03d", i, k, m))
			}
			j.firstID = c.ids[k*perJob]
			p.byFirstID[j.firstID] = len(p.jobs)
			c.jobs = append(c.jobs, len(p.jobs))
			p.jobs = append(p.jobs, j)
		}
		p.maxIDs = max(p.maxIDs, len(c.ids))
		p.cmds = append(p.cmds, c)
	}
	return p
}

// steps is the hbrtest script of a job in the steps model: about
// duration/interval polls that see it running, then one that sees it done.
func steps(d, interval time.Duration) []hbrtest.Step {
	k := max(1, int(math.Round(float64(d)/float64(interval))))
	script := make([]hbrtest.Step, 0, k+1)
	for s := range k {
		script = append(script, hbrtest.Step{Progress: s * 100 / k, Description: hbrtest.TaskCreated})
	}
	return append(script, hbrtest.Step{Progress: 100, Description: hbrtest.TaskCompleted})
}

// redisSnap is one INFO reading.
type redisSnap struct {
	at       time.Time
	cmds     map[string]int64 // commandstats calls, INFO excluded
	memory   int64            // used_memory
	cpu      float64          // used_cpu_user + used_cpu_sys
	keys     int64
	describe int // DescribeTask calls seen by the proxy then
}

func (s redisSnap) total() int64 {
	var n int64
	for _, v := range s.cmds {
		n += v
	}
	return n
}

func readRedis(ctx context.Context, rdb *redis.Client) (redisSnap, error) {
	info, err := rdb.Info(ctx, "memory", "cpu", "commandstats", "keyspace").Result()
	if err != nil {
		return redisSnap{}, fmt.Errorf("redis INFO: %w", err)
	}
	s := redisSnap{at: time.Now(), cmds: map[string]int64{}}
	for _, line := range strings.Split(info, "\n") {
		line = strings.TrimSpace(line)
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		switch {
		case k == "used_memory":
			s.memory, _ = strconv.ParseInt(v, 10, 64)
		case k == "used_cpu_user" || k == "used_cpu_sys":
			f, _ := strconv.ParseFloat(v, 64)
			s.cpu += f
		case strings.HasPrefix(k, "cmdstat_"):
			name := strings.TrimPrefix(k, "cmdstat_")
			if name == "info" {
				continue
			}
			calls, _, _ := strings.Cut(strings.TrimPrefix(v, "calls="), ",")
			s.cmds[name], _ = strconv.ParseInt(calls, 10, 64)
		case k == "db0":
			keys, _, _ := strings.Cut(strings.TrimPrefix(v, "keys="), ",")
			s.keys, _ = strconv.ParseInt(keys, 10, 64)
		}
	}
	return s, nil
}

// Run builds the bot (unless Options.Bot is set) and runs one bench.
func Run(ctx context.Context, o Options) (*Result, error) {
	o, dir, cleanup, err := prepare(ctx, o)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	return run(ctx, o, dir)
}

// Compare runs the same seeded jobs with the fixed and the adaptive poll
// policy, one after the other, each against fresh fakes and a fresh Redis.
func Compare(ctx context.Context, o Options) ([]*Result, error) {
	o, dir, cleanup, err := prepare(ctx, o)
	if err != nil {
		return nil, err
	}
	defer cleanup()
	var out []*Result
	for _, policy := range []string{"fixed", "adaptive"} {
		po := o
		po.Policy = policy
		if o.ProfileDir != "" {
			po.ProfileDir = filepath.Join(o.ProfileDir, policy)
		}
		sub, err := os.MkdirTemp(dir, policy+"-*")
		if err != nil {
			return out, err
		}
		progress(po, "policy %s", policy)
		r, err := run(ctx, po, sub)
		if err != nil {
			return out, fmt.Errorf("policy %s: %w", policy, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// prepare validates o, makes the work directory and builds the bot into
// it unless o names one. cleanup removes the directory (kept with KeepDir).
func prepare(ctx context.Context, o Options) (Options, string, func(), error) {
	if err := o.validate(); err != nil {
		return o, "", nil, err
	}
	dir, err := os.MkdirTemp("", "hbrbot-bench-*")
	if err != nil {
		return o, "", nil, err
	}
	cleanup := func() {
		if !o.KeepDir {
			os.RemoveAll(dir)
		}
	}
	if o.Bot == "" {
		progress(o, "building ./cmd/hbrbot")
		if o.Bot, err = botproc.Build(ctx, dir); err != nil {
			cleanup()
			return o, "", nil, err
		}
	}
	return o, dir, cleanup, nil
}

func progress(o Options, format string, args ...any) {
	if o.Progress != nil {
		fmt.Fprintf(o.Progress, "bench: "+format+"\n", args...)
	}
}

// run is one bench in dir with a built bot.
func run(ctx context.Context, o Options, dir string) (res *Result, err error) {
	p := makePlan(o)
	timeout := o.Timeout
	if timeout == 0 {
		timeout = o.MaxDuration + 30*o.PollInterval + 2*time.Minute
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	var selfStart syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &selfStart)

	rp, err := startRedis(ctx, dir)
	if err != nil {
		return nil, err
	}
	defer rp.stop()
	rdb := redis.NewClient(&redis.Options{Addr: rp.Addr})
	defer rdb.Close()

	slack := slacktest.NewServer()
	defer slack.Close()
	var hbrOpts []hbrtest.Option
	if o.Quota > 0 {
		hbrOpts = append(hbrOpts, hbrtest.WithQuota(o.Quota))
	}
	hbr := hbrtest.NewServer(hbrOpts...)
	defer hbr.Close()
	wall := o.Model == "wall"
	if wall {
		// Every job is complete at once at the fake; the proxy makes it
		// run for its planned time.
		hbr.SetDefaultScript(hbrtest.Step{Progress: 100, Description: hbrtest.TaskCompleted})
	} else {
		// Scripts go to jobs in creation order, which the replicas decide;
		// the multiset of durations is the plan's.
		for _, j := range p.jobs {
			hbr.QueueJob(steps(j.duration, o.PollInterval)...)
		}
	}
	proxy, err := newHBRProxy(hbr.URL(), wall, func(id string) (int, time.Duration, bool) {
		j, ok := p.byFirstID[id]
		if !ok {
			return -1, 0, false
		}
		return j, p.jobs[j].duration, true
	})
	if err != nil {
		return nil, err
	}
	defer proxy.Close()

	env := []string{
		"SLACK_APP_TOKEN=xapp-test",
		"SLACK_BOT_TOKEN=xoxb-test",
		"SLACK_API_URL=" + slack.APIURL(),
		"ALIBABA_CLOUD_ACCESS_KEY_ID=" + hbrtest.DefaultAccessKeyID,
		"ALIBABA_CLOUD_ACCESS_KEY_SECRET=" + hbrtest.DefaultSecret,
		"ALIBABA_CLOUD_REGION_ID=cn-hangzhou",
		"HBR_ENDPOINT=" + proxy.URL(),
		"REDIS_URL=redis://" + rp.Addr + "/0",
		"HBRBOT_POLL_INTERVAL=" + o.PollInterval.String(),
		"HBRBOT_LEASE=" + o.Lease.String(),
		"HBRBOT_HBR_RATE_LIMIT=" + strconv.Itoa(o.HBRRateLimit),
		// The load comes from a few simulated users: not a flood to refuse.
		"HBRBOT_USER_COMMANDS=10000", "HBRBOT_CHANNEL_COMMANDS=10000", "HBRBOT_USER_PENDING=10000",
		"HBRBOT_MAX_TARGETS=" + strconv.Itoa(max(500, p.maxIDs)),
	}
	if o.MaxDuration > 15*time.Minute {
		env = append(env, "HBRBOT_TASK_TIMEOUT="+(2*o.MaxDuration).String())
	}
	if o.Policy != "" {
		env = append(env, "HBRBOT_POLL_POLICY="+o.Policy)
	}
	if o.HBRRateLimits != "" {
		env = append(env, "HBRBOT_HBR_RATE_LIMITS="+o.HBRRateLimits)
	}
	if o.MinInterval > 0 {
		env = append(env, "HBRBOT_POLL_MIN_INTERVAL="+o.MinInterval.String())
	}
	env = append(env, o.Env...)
	// Replica 1 serves the profiler, on its own loopback address.
	var pprofAddr string
	if o.ProfileDir != "" {
		if pprofAddr, err = botproc.FreeAddr(); err != nil {
			return nil, err
		}
	}

	progress(o, "starting %d replica(s), redis on %s", o.Replicas, rp.Addr)
	var reps []*replica
	defer func() {
		for _, r := range reps {
			_ = r.Kill()
		}
	}()
	for i := range o.Replicas {
		renv := env
		if i == 0 && pprofAddr != "" {
			renv = append(slices.Clip(env), "HBRBOT_PPROF=true", "HBRBOT_PPROF_ADDR="+pprofAddr)
		}
		r, err := startReplica(o.Bot, dir, i+1, renv)
		if err != nil {
			return nil, err
		}
		reps = append(reps, r)
	}
	for _, r := range reps {
		if err := r.awaitReady(ctx); err != nil {
			return nil, err
		}
	}
	if err := slack.WaitConnections(ctx, o.Replicas); err != nil {
		return nil, err
	}
	cpuOf := func() float64 {
		var s float64
		for _, r := range reps {
			s += r.cpuNow()
		}
		return s
	}

	states := make([]*cmdState, len(p.cmds))
	for i, c := range p.cmds {
		states[i] = &cmdState{channel: c.channel, posted: make(chan struct{}), cardSeen: make(chan struct{}), decided: make(chan struct{})}
	}
	tap := newSlackTap(states, len(p.jobs))
	tapCtx, stopTap := context.WithCancel(ctx)
	defer stopTap()
	tap.start(tapCtx, slack)

	s0, err := readRedis(ctx, rdb)
	if err != nil {
		return nil, err
	}
	var prof *profiler
	if o.ProfileDir != "" {
		if prof, err = newProfiler(o.ProfileDir, pprofAddr); err != nil {
			return nil, err
		}
		// The command phase lasts seconds; both cover its start.
		prof.fetch(ctx, "profile", 5, "commands.cpu.pprof")
		prof.fetch(ctx, "trace", 5, "commands.trace")
	}
	cpu0 := cpuOf()
	rs0 := rp.cpuSeconds()
	began := time.Now()

	// Phase 1: the commands and their decisions, InFlight at a time.
	progress(o, "sending %d commands (%d in flight), %d jobs", len(p.cmds), o.InFlight, len(p.jobs))
	g, gctx := errgroup.WithContext(ctx)
	sem := make(chan struct{}, o.InFlight)
	for i := range p.cmds {
		select {
		case sem <- struct{}{}:
		case <-gctx.Done():
		}
		if gctx.Err() != nil {
			break
		}
		g.Go(func() error {
			defer func() { <-sem }()
			return drive(gctx, slack, tap, p.cmds[i], states[i], o.ApproveOnPost)
		})
	}
	if err := g.Wait(); err != nil {
		return nil, fmt.Errorf("commands: %w (%s)", err, logHint(reps))
	}
	decidedAt := time.Now()
	cpuDecided := cpuOf()
	progress(o, "all %d commands decided in %s", len(p.cmds), decidedAt.Sub(began).Round(time.Millisecond))

	// Phase 2: the jobs. Memory and a steady polling window are read once
	// every job has started.
	select {
	case <-tap.allStarted:
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for every job to start: %w (%d final reports; %s)", ctx.Err(), tap.finalCount(), logHint(reps))
	}
	s1, err := readRedis(ctx, rdb)
	if err != nil {
		return nil, err
	}
	s1.describe = proxy.describeCount()
	trackedAtS1 := len(p.jobs) - tap.finalCount()
	progress(o, "all %d jobs started; %d tracked", len(p.jobs), trackedAtS1)

	// The window ends before the next job is due (wall model), at most
	// three intervals on: it holds polls, and few reports.
	window := 3 * o.PollInterval
	if wall {
		recs, _, _ := proxy.snapshot()
		for _, r := range recs {
			if left := time.Until(r.due); r.job >= 0 && left > 0 {
				window = min(window, left)
			}
		}
	}
	var sw redisSnap
	haveWindow := window >= o.PollInterval/2
	if prof != nil {
		prof.fetch(ctx, "heap", 0, "jobs.heap.pprof")
		prof.fetch(ctx, "profile", max(1, int(window.Seconds())), "polling.cpu.pprof")
	}
	if haveWindow {
		t := time.NewTimer(window)
		select {
		case <-t.C:
		case <-ctx.Done():
		}
		t.Stop()
		if sw, err = readRedis(ctx, rdb); err != nil {
			return nil, err
		}
		sw.describe = proxy.describeCount()
	}
	// Read after the window, not to disturb it; no job has ended yet when
	// there was a window.
	trackedAtMem := len(p.jobs) - tap.finalCount()
	mem, err := readMemoryByClass(ctx, rdb)
	if err != nil {
		return nil, err
	}
	var trackingRSS int64
	for _, r := range reps {
		trackingRSS = max(trackingRSS, procStatusKiB(r.Cmd.Process.Pid, "VmRSS"))
	}

	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
wait:
	for {
		select {
		case <-tap.allFinal:
			break wait
		case <-tick.C:
			progress(o, "%d/%d final reports, %d DescribeTask calls", tap.finalCount(), len(p.jobs), proxy.describeCount())
		case <-ctx.Done():
			return nil, fmt.Errorf("waiting for every final report: %w (%d/%d; %s)", ctx.Err(), tap.finalCount(), len(p.jobs), logHint(reps))
		}
	}
	s2, err := readRedis(ctx, rdb)
	if err != nil {
		return nil, err
	}
	s2.describe = proxy.describeCount()
	rs2 := rp.cpuSeconds()
	ended := time.Now()
	progress(o, "all %d final reports in %s; stopping", len(p.jobs), ended.Sub(began).Round(time.Millisecond))
	profiles, err := prof.wait()
	if err != nil {
		return nil, err
	}

	// Stop: SIGTERM, as Kubernetes does.
	var wg sync.WaitGroup
	for _, r := range reps {
		wg.Add(1)
		go func() { defer wg.Done(); r.stop(15 * time.Second) }()
	}
	wg.Wait()
	stopTap()
	var selfEnd syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &selfEnd)

	res = collect(o, p, collected{
		dir: dir, reps: reps, tap: tap, proxy: proxy, hbr: hbr, slack: slack, states: states,
		s0: s0, s1: s1, sw: sw, s2: s2, haveWindow: haveWindow, trackedAtS1: trackedAtS1,
		began: began, decidedAt: decidedAt, ended: ended, profiles: profiles,
		mem: mem, trackedAtMem: trackedAtMem, trackingRSSKiB: trackingRSS,
		cpu0: cpu0, cpuDecided: cpuDecided, redisCPU: rs2 - rs0,
		selfCPU: rusageSeconds(selfEnd) - rusageSeconds(selfStart),
	})
	return res, nil
}

func rusageSeconds(r syscall.Rusage) float64 {
	return float64(r.Utime.Sec+r.Stime.Sec) + float64(r.Utime.Usec+r.Stime.Usec)/1e6
}

// logHint names the bot logs, for error messages.
func logHint(reps []*replica) string {
	var paths []string
	for _, r := range reps {
		paths = append(paths, r.logPath)
	}
	return "bot logs: " + strings.Join(paths, ", ") + " (kept with -keep)"
}

// drive sends one command, waits for its card (showing its look-up, or
// only posted with onPost), clicks it and waits for the card to show the
// decision.
func drive(ctx context.Context, slack *slacktest.Server, tap *slackTap, c cmdPlan, st *cmdState, onPost bool) error {
	const requester, approver = "U0BREQ", "U0BAPPR"
	tap.sent(st, time.Now())
	env := slack.SendSlashCommand(slacktest.SlashCommand{ChannelID: c.channel, UserID: requester, Text: strings.Join(c.ids, " ")})
	tap.setEnv(st, env, "", time.Time{})
	card := st.cardSeen
	if onPost {
		card = st.posted
	}
	select {
	case <-card:
	case <-ctx.Done():
		return fmt.Errorf("no card in %s: %w", c.channel, ctx.Err())
	}
	var ts string
	for _, m := range slack.Messages(c.channel) {
		if m.ThreadTS == "" && !m.Ephemeral {
			ts = m.TS
			break
		}
	}
	if ts == "" {
		return fmt.Errorf("card in %s not stored", c.channel)
	}
	action, user := "hbr_upgrade_approve", approver
	if !c.approve {
		action, user = "hbr_upgrade_cancel", requester
	}
	at := time.Now()
	click := slack.SendBlockAction(slacktest.BlockAction{ChannelID: c.channel, MessageTS: ts, UserID: user, ActionID: action})
	tap.setEnv(st, "", click, at)
	select {
	case <-st.decided:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("card in %s never showed the decision: %w", c.channel, ctx.Err())
	}
}

// percentile is the nearest-rank q-quantile of xs (sorted in place).
func percentile(xs []float64, q float64) float64 {
	if len(xs) == 0 {
		return math.NaN()
	}
	slices.Sort(xs)
	i := int(math.Ceil(q*float64(len(xs)))) - 1
	return xs[min(max(i, 0), len(xs)-1)]
}
