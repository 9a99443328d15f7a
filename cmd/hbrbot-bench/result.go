package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/hbrbot/hbrbot/hbrtest"
	"github.com/hbrbot/hbrbot/slacktest"
)

// Result is what one run measured.
type Result struct {
	Options Options

	// Figures the comparison and the tests read.
	AckP50, AckP99            time.Duration // every envelope (commands and clicks)
	LagP50, LagP99, LagMax    float64       // report lag, in poll intervals
	CallsPerJob, MinPerJob    float64       // DescribeTask calls per job, and duration/interval
	RedisCmdsPerPoll          float64       // all Redis commands (scripts' included) / DescribeTask calls
	BotCPUSeconds             float64
	PeakRSSMiB                float64
	TrackingRSSMiB            float64 // VmRSS while every job is tracked
	RedisBytesPerTrackedJob   float64
	RedisStateBytesPerJob     float64 // keys but the audit stream, by MEMORY USAGE
	Jobs, FinalReports        int
	CardsWithoutLookup        int
	Throttled                 int      // HBR calls answered Throttling*
	Problems                  []string // broken promises (duplicates, missing reports, ...)
	WorkDir                   string   // with Options.KeepDir
	lines                     []kv
	callsByJob, minCallsByJob []float64
}

type kv struct{ k, v string }

func (r *Result) add(k string, format string, args ...any) {
	r.lines = append(r.lines, kv{k, fmt.Sprintf(format, args...)})
}

// Print writes the result as "key: value" lines.
func (r *Result) Print(w io.Writer) {
	for _, l := range r.lines {
		fmt.Fprintf(w, "%s: %s\n", l.k, l.v)
	}
}

// collected is everything run gathered, for collect.
type collected struct {
	dir        string
	reps       []*replica
	tap        *slackTap
	proxy      *hbrProxy
	hbr        *hbrtest.Server
	slack      *slacktest.Server
	states     []*cmdState
	s0, s1, sw redisSnap
	s2         redisSnap
	haveWindow bool
	profiles   string // directory of the Go profiles, if any
	mem        memoryByClass
	// trackingRSSKiB is the largest replica's VmRSS when memory was read.
	trackingRSSKiB int64
	trackedAtMem   int
	trackedAtS1    int

	began, decidedAt, ended time.Time
	cpu0, cpuDecided        float64
	redisCPU, selfCPU       float64
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1fms", float64(d)/float64(time.Millisecond)) }

func durs(xs []float64, q float64) time.Duration {
	return time.Duration(percentile(xs, q) * float64(time.Second))
}

func collect(o Options, p plan, c collected) *Result {
	r := &Result{Options: o, Jobs: len(p.jobs)}
	if o.KeepDir {
		r.WorkDir = c.dir
	}
	interval := o.PollInterval
	policy := o.Policy
	if policy == "" {
		policy = "(bot default)"
	}
	minInterval := "(bot default)"
	if o.MinInterval > 0 {
		minInterval = o.MinInterval.String()
	}

	r.add("replicas", "%d", o.Replicas)
	r.add("commands", "%d (%d in flight, %d approved)", len(p.cmds), o.InFlight, countApproved(p))
	r.add("jobs", "%d (%d IDs each)", len(p.jobs), p.jobs[0].ids)
	r.add("job_durations", "uniform %s..%s, seed %d, model %s", o.MinDuration, o.MaxDuration, o.Seed, o.Model)
	r.add("poll_interval", "%s", interval)
	r.add("poll_policy", "%s", policy)
	r.add("poll_min_interval", "%s", minInterval)
	r.add("hbr_rate_limit", "%d/min (demand at one poll per interval: %.0f/min)", o.HBRRateLimit,
		float64(len(p.jobs))*float64(time.Minute)/float64(interval))
	r.add("wall_seconds", "%.1f (commands %.1f)", c.ended.Sub(c.began).Seconds(), c.decidedAt.Sub(c.began).Seconds())

	// Acks, as the fake measured them: first delivery to ack.
	slash, click := map[string]bool{}, map[string]bool{}
	var cardLat, postLat, decideLat, startLat []float64
	deferred, noLookup := 0, 0
	for _, st := range c.states {
		s := c.tap.cmdCopy(st)
		postLat = append(postLat, s.postedAt.Sub(s.sentAt).Seconds())
		if s.deferred {
			deferred++
		}
		if s.noLookup {
			noLookup++
		}
		slash[s.slashEnv] = true
		click[s.clickEnv] = true
		cardLat = append(cardLat, s.cardAt.Sub(s.sentAt).Seconds())
		decideLat = append(decideLat, s.decidedAt.Sub(s.clickAt).Seconds())
		if !s.startedAt.IsZero() {
			startLat = append(startLat, s.startedAt.Sub(s.clickAt).Seconds())
		}
	}
	var slashLat, clickLat, allLat []float64
	acked := map[string]bool{}
	redelivered := 0
	for _, a := range c.slack.Acks() {
		if acked[a.EnvelopeID] {
			continue
		}
		acked[a.EnvelopeID] = true
		if a.RetryAttempt > 0 {
			redelivered++
		}
		switch {
		case slash[a.EnvelopeID]:
			if os.Getenv("BENCH_DEBUG_ACKS") != "" {
				fmt.Fprintf(os.Stderr, "ACK %s sent=%s lat=%s\n", a.At.Format("05.000000"), a.At.Add(-a.Latency).Format("05.000000"), a.Latency)
			}
			slashLat = append(slashLat, a.Latency.Seconds())
		case click[a.EnvelopeID]:
			clickLat = append(clickLat, a.Latency.Seconds())
		default:
			continue
		}
		allLat = append(allLat, a.Latency.Seconds())
	}
	r.AckP50, r.AckP99 = durs(allLat, 0.5), durs(allLat, 0.99)
	r.add("ack_latency_p50", "%s", ms(r.AckP50))
	r.add("ack_latency_p99", "%s", ms(r.AckP99))
	r.add("ack_latency_max", "%s", ms(durs(allLat, 1)))
	r.add("ack_latency_commands_p50_p99", "%s %s", ms(durs(slashLat, 0.5)), ms(durs(slashLat, 0.99)))
	r.add("ack_latency_clicks_p50_p99", "%s %s", ms(durs(clickLat, 0.5)), ms(durs(clickLat, 0.99)))
	if n := len(slash) + len(click) - len(slashLat) - len(clickLat); n > 0 {
		r.Problems = append(r.Problems, fmt.Sprintf("%d envelopes never acknowledged", n))
	}
	r.add("envelopes_redelivered", "%d", redelivered)
	r.add("card_latency_p50_p99", "%s %s (command -> card showing its look-up)", ms(durs(cardLat, 0.5)), ms(durs(cardLat, 0.99)))
	r.add("card_posted_p50_p99", "%s %s (command -> card posted, perhaps still looking up)", ms(durs(postLat, 0.5)), ms(durs(postLat, 0.99)))
	r.add("cards_lookup_deferred", "%d of %d (posted at once, redrawn when the look-up landed)", deferred, len(c.states))
	r.add("cards_without_lookup", "%d", noLookup)
	r.CardsWithoutLookup = noLookup
	r.add("decision_shown_p50_p99", "%s %s", ms(durs(decideLat, 0.5)), ms(durs(decideLat, 0.99)))
	r.add("approve_to_started_report_p50_p99", "%s %s", ms(durs(startLat, 0.5)), ms(durs(startLat, 0.99)))

	// Jobs: the proxy's view, and the reports.
	counts := c.tap.counts()
	recs, order, _ := c.proxy.snapshot()
	scripts := map[string]int{}
	if o.Model == "steps" {
		for _, j := range c.hbr.Jobs() {
			scripts[j.TaskID] = len(j.Script)
		}
	}
	minGap := interval / 2
	if policy != "fixed" {
		lo := max(interval/5, 100*time.Millisecond)
		if o.MinInterval > 0 {
			lo = o.MinInterval
		}
		minGap = lo / 2
	}
	var lags, pollLags, afterPoll []float64
	var totalCalls, totalMin float64
	early, afterEnd, unknownJobs := 0, 0, 0
	perJob := map[int]int{}
	for _, id := range order {
		rec := recs[id]
		if rec.job < 0 {
			unknownJobs++
			continue
		}
		perJob[rec.job]++
		calls := float64(len(rec.describes))
		least := rec.duration.Seconds() / interval.Seconds()
		observable := rec.due
		if o.Model == "steps" {
			least = float64(scripts[id])
			observable = rec.terminalAt
		}
		r.callsByJob = append(r.callsByJob, calls)
		r.minCallsByJob = append(r.minCallsByJob, least)
		totalCalls += calls
		totalMin += least
		for i := 1; i < len(rec.describes); i++ {
			if rec.describes[i].Sub(rec.describes[i-1]) < minGap {
				early++
			}
		}
		if !rec.terminalAt.IsZero() {
			for _, t := range rec.describes {
				if t.After(rec.terminalAt) {
					afterEnd++
				}
			}
		}
		if at, ok := counts.finalAt[id]; ok && !observable.IsZero() {
			lags = append(lags, at.Sub(observable).Seconds()/interval.Seconds())
			if o.Model != "steps" && !rec.terminalAt.IsZero() {
				pollLags = append(pollLags, rec.terminalAt.Sub(observable).Seconds()/interval.Seconds())
				afterPoll = append(afterPoll, at.Sub(rec.terminalAt).Seconds()/interval.Seconds())
			}
		}
	}
	r.FinalReports = len(counts.finals)
	r.LagP50, r.LagP99, r.LagMax = percentile(lags, 0.5), percentile(lags, 0.99), percentile(lags, 1)
	n := float64(max(len(r.callsByJob), 1))
	r.CallsPerJob, r.MinPerJob = totalCalls/n, totalMin/n
	r.add("report_lag_p50", "%.2f intervals (%s)", r.LagP50, ms(time.Duration(r.LagP50*float64(interval))))
	r.add("report_lag_p99", "%.2f intervals (%s)", r.LagP99, ms(time.Duration(r.LagP99*float64(interval))))
	r.add("report_lag_max", "%.2f intervals", r.LagMax)
	if len(pollLags) > 0 {
		// Where the lag is: finding the end (polling), or after it (the
		// verification and the report).
		r.add("report_lag_parts_p50_p99", "job end -> the poll that saw it %.2f %.2f; that poll -> report %.2f %.2f intervals",
			percentile(pollLags, 0.5), percentile(pollLags, 0.99), percentile(afterPoll, 0.5), percentile(afterPoll, 0.99))
	}
	r.add("describe_calls", "%d", int(totalCalls))
	r.add("describe_calls_per_job", "%.2f", r.CallsPerJob)
	if o.Model == "steps" {
		r.add("describe_min_per_job", "%.2f (script length)", r.MinPerJob)
	} else {
		r.add("describe_min_per_job", "%.2f (duration / interval)", r.MinPerJob)
	}
	r.add("describe_calls_vs_min", "%.2fx", totalCalls/math.Max(totalMin, 1e-9))
	r.add("describe_too_soon", "%d (gaps under %s between polls of one job)", early, minGap)
	r.add("describe_after_end", "%d (polls of a job after one saw it end)", afterEnd)

	// Broken promises.
	upgrades := len(c.hbr.Calls(hbrtest.ActionUpgradeBackupClients))
	r.add("upgrade_calls", "%d", upgrades)
	if upgrades != len(p.jobs) {
		r.Problems = append(r.Problems, fmt.Sprintf("%d UpgradeBackupClients calls for %d jobs", upgrades, len(p.jobs)))
	}
	for j, k := range perJob {
		if k > 1 {
			r.Problems = append(r.Problems, fmt.Sprintf("job %d submitted %d times", j, k))
		}
	}
	if unknownJobs > 0 {
		r.Problems = append(r.Problems, fmt.Sprintf("%d HBR jobs the bench did not plan", unknownJobs))
	}
	dupFinal, dupStarted := 0, 0
	for _, k := range counts.finals {
		if k > 1 {
			dupFinal++
		}
	}
	for _, k := range counts.started {
		if k > 1 {
			dupStarted++
		}
	}
	if dupFinal > 0 {
		r.Problems = append(r.Problems, fmt.Sprintf("%d jobs with more than one final report", dupFinal))
	}
	if dupStarted > 0 {
		r.Problems = append(r.Problems, fmt.Sprintf("%d jobs with more than one started report", dupStarted))
	}
	if missing := len(p.jobs) - len(counts.finals); missing > 0 {
		r.Problems = append(r.Problems, fmt.Sprintf("%d jobs without a final report", missing))
	}
	if len(counts.notDone) > 0 {
		var sample string
		for _, t := range counts.notDone {
			sample = t
			break
		}
		r.Problems = append(r.Problems, fmt.Sprintf("%d final reports not \"completed\", e.g. %q", len(counts.notDone), sample))
	}
	if counts.told > 0 {
		r.Problems = append(r.Problems, fmt.Sprintf("%d private messages to users, e.g. %q", counts.told, counts.toldText))
	}
	r.add("final_reports", "%d (duplicates %d)", len(counts.finals), dupFinal)
	r.add("slack_errors", "%s", fmtCounts(counts.failed))

	// Redis.
	polls := float64(max(c.s2.describe, 1))
	all := float64(c.s2.total() - c.s0.total())
	r.RedisCmdsPerPoll = all / polls
	r.add("redis_cmds_per_poll", "%.1f (all commands incl. inside scripts, whole run / DescribeTask calls)", r.RedisCmdsPerPoll)
	scripts2 := float64(c.s2.cmds["evalsha"]+c.s2.cmds["eval"]-c.s0.cmds["evalsha"]-c.s0.cmds["eval"]) / polls
	r.add("redis_scripts_per_poll", "%.2f", scripts2)
	if c.haveWindow && c.sw.describe-c.s1.describe >= 20 {
		wp := float64(c.sw.describe - c.s1.describe)
		r.add("redis_cmds_per_poll_steady", "%.1f over %d polls in %s: %s", float64(c.sw.total()-c.s1.total())/wp,
			c.sw.describe-c.s1.describe, c.sw.at.Sub(c.s1.at).Round(time.Millisecond), perPoll(c.s1, c.sw, wp))
	} else {
		r.add("redis_cmds_per_poll_steady", "n/a (no polling-only window: jobs end too soon after the last one starts)")
	}
	if c.trackedAtS1 > 0 {
		r.RedisBytesPerTrackedJob = float64(c.s1.memory-c.s0.memory) / float64(c.trackedAtS1)
	}
	r.add("redis_memory_per_tracked_job", "%.0f B (used_memory +%.1f MiB with %d jobs tracked, requests and cards included)",
		r.RedisBytesPerTrackedJob, float64(c.s1.memory-c.s0.memory)/(1<<20), c.trackedAtS1)
	if n := c.trackedAtMem; n > 0 && len(c.mem.bytes) > 0 {
		state := float64(c.mem.total("audit")) / float64(n)
		r.RedisStateBytesPerJob = state
		r.add("redis_memory_by_key_per_tracked_job", "%s (MEMORY USAGE, %d jobs tracked)", c.mem.perJob(n), n)
		r.add("redis_state_per_tracked_job", "%.0f B without the audit stream, %.0f B an ID (%d IDs a job)",
			state, state/float64(p.jobs[0].ids), p.jobs[0].ids)
	}
	r.add("redis_memory_after", "+%.1f MiB, %d keys (retention: ended jobs stay)", float64(c.s2.memory-c.s0.memory)/(1<<20), c.s2.keys)
	r.add("redis_cpu_seconds", "%.2f", c.redisCPU)

	// The bot's processes.
	var cpu, hwm, maxrss float64
	var stopMax time.Duration
	var exits []string
	levels := map[string]int{}
	warnMsgs := map[string]int{}
	for _, rep := range c.reps {
		cpu += rep.cpu
		hwm = math.Max(hwm, float64(rep.vmHWMKiB)/1024)
		maxrss = math.Max(maxrss, float64(rep.maxRSSKiB)/1024)
		stopMax = max(stopMax, rep.stopTook)
		exits = append(exits, fmt.Sprint(rep.exitCode))
		if rep.exitCode != 0 {
			r.Problems = append(r.Problems, fmt.Sprintf("replica %d exited %d after SIGTERM", rep.n, rep.exitCode))
		}
		lv, problems := logCounts(rep.logPath)
		for k, v := range lv {
			levels[k] += v
		}
		for k, v := range problems {
			warnMsgs[k] += v
		}
	}
	if stopMax > 10*time.Second {
		r.Problems = append(r.Problems, fmt.Sprintf("a replica took %s to stop (contract: 10 s)", stopMax.Round(time.Millisecond)))
	}
	r.BotCPUSeconds, r.PeakRSSMiB = cpu, hwm
	r.add("bot_cpu_seconds", "%.2f total, %.2f per replica (commands phase %.2f)", cpu, cpu/float64(len(c.reps)), c.cpuDecided-c.cpu0)
	r.add("bot_cpu_ms_per_poll", "%.2f (after the commands phase)", 1000*(cpu-c.cpuDecided)/polls)
	// ru_maxrss of an exec'd child also counts the RSS of the process it
	// was forked from (Linux keeps the pre-exec high-water mark): this
	// bench's own. VmHWM is the bot's alone.
	r.add("bot_peak_rss", "%.1f MiB VmHWM, largest replica (rusage maxrss %.1f MiB, which may count this bench's RSS at fork)", hwm, maxrss)
	if c.trackingRSSKiB > 0 {
		r.TrackingRSSMiB = float64(c.trackingRSSKiB) / 1024
		r.add("bot_rss_tracking", "%.1f MiB VmRSS, largest replica, with %d jobs tracked (the peak may come from the command burst)", r.TrackingRSSMiB, c.trackedAtMem)
	}
	r.add("bot_stop", "max %s, exit codes %s", stopMax.Round(time.Millisecond), strings.Join(exits, ","))
	r.add("bot_log_lines", "%s", fmtCounts(levels))
	if len(warnMsgs) > 0 {
		r.add("bot_warnings", "%s", fmtCounts(warnMsgs))
	}
	r.add("bench_process_cpu_seconds", "%.2f (the fakes and this driver)", c.selfCPU)
	quotaLines(r, o, p, c)
	lookupLines(r, c)
	if r.WorkDir != "" {
		r.add("work_dir", "%s", r.WorkDir)
	}
	r.add("problems", "%d", len(r.Problems))
	for i, pr := range r.Problems {
		r.add(fmt.Sprintf("problem_%d", i+1), "%s", pr)
	}
	if c.profiles != "" {
		r.add("profiles", "%s (go tool pprof -top <file>; go tool trace commands.trace)", c.profiles)
	}
	return r
}

func countApproved(p plan) int {
	n := 0
	for _, c := range p.cmds {
		if c.approve {
			n++
		}
	}
	return n
}

// perPoll lists the commands run between a and b, per poll, most first.
func perPoll(a, b redisSnap, polls float64) string {
	type cnt struct {
		name string
		n    float64
	}
	var cs []cnt
	for name, v := range b.cmds {
		if d := v - a.cmds[name]; d > 0 {
			cs = append(cs, cnt{name, float64(d) / polls})
		}
	}
	sort.Slice(cs, func(i, j int) bool { return cs[i].n > cs[j].n || cs[i].n == cs[j].n && cs[i].name < cs[j].name })
	var parts []string
	for _, c := range cs {
		if c.n >= 0.05 {
			parts = append(parts, fmt.Sprintf("%s %.2f", c.name, c.n))
		}
	}
	return strings.Join(parts, ", ")
}

func fmtCounts(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	keys := slices.Sorted(maps.Keys(m))
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}

// PrintComparison writes the policies side by side.
func PrintComparison(w io.Writer, rs []*Result) {
	for _, r := range rs {
		p := r.Options.Policy
		fmt.Fprintf(w, "%s_describe_calls_per_job: %.2f (min %.2f)\n", p, r.CallsPerJob, r.MinPerJob)
		fmt.Fprintf(w, "%s_report_lag_p50: %.2f intervals\n", p, r.LagP50)
		fmt.Fprintf(w, "%s_report_lag_p99: %.2f intervals\n", p, r.LagP99)
		fmt.Fprintf(w, "%s_redis_cmds_per_poll: %.1f\n", p, r.RedisCmdsPerPoll)
		fmt.Fprintf(w, "%s_bot_cpu_seconds: %.2f\n", p, r.BotCPUSeconds)
		fmt.Fprintf(w, "%s_problems: %d\n", p, len(r.Problems))
	}
	if len(rs) == 2 && rs[0].CallsPerJob > 0 {
		fmt.Fprintf(w, "adaptive_vs_fixed_calls: %.2fx\n", rs[1].CallsPerJob/rs[0].CallsPerJob)
	}
}

// quotaLines says, per HBR action, the calls made and throttled, and how
// the time to the last report compares with the bound the quota sets: for
// each action, the calls it needs at least (a submission and a poll per
// job; a look-up before each card and after each job, in pages of 99
// IDs) divided by its quota (HBR's 600 a minute when -quota is not set).
func quotaLines(r *Result, o Options, p plan, c collected) {
	quota := o.Quota
	if quota <= 0 {
		quota = 600
	}
	preflightIDs, verifyIDs := 0, 0
	for _, cmd := range p.cmds {
		preflightIDs += len(cmd.ids)
	}
	for _, j := range p.jobs {
		verifyIDs += j.ids
	}
	pages := func(n int) int { return (n + 98) / 99 }
	need := map[string]int{
		hbrtest.ActionUpgradeBackupClients:  len(p.jobs),
		hbrtest.ActionDescribeTask:          len(p.jobs),
		hbrtest.ActionDescribeBackupClients: pages(preflightIDs) + pages(verifyIDs),
	}
	var bound time.Duration
	binding := ""
	for _, action := range []string{hbrtest.ActionUpgradeBackupClients, hbrtest.ActionDescribeTask, hbrtest.ActionDescribeBackupClients} {
		made, throttled := len(c.hbr.Calls(action)), c.hbr.Throttled(action)
		r.Throttled += throttled
		b := time.Duration(float64(need[action]) / float64(quota) * float64(time.Minute))
		r.add("hbr_calls_"+action, "%d made, %d throttled (needs at least %d: %.1fs at %d/min)", made, throttled, need[action], b.Seconds(), quota)
		if b > bound {
			bound, binding = b, action
		}
	}
	quotaText := "none enforced"
	if o.Quota > 0 {
		quotaText = fmt.Sprintf("%d/min per action, enforced by the fake", o.Quota)
	}
	r.add("hbr_quota", "%s", quotaText)
	counts := c.tap.counts()
	if !counts.final.IsZero() {
		last := counts.final.Sub(c.began)
		ratio := last.Seconds() / bound.Seconds()
		r.add("last_report_vs_bound", "%.1fs against %.1fs (%s at %d/min; longest job %s): %.2fx", last.Seconds(), bound.Seconds(), binding, quota, o.MaxDuration, ratio)
	}
	if o.Quota > 0 && r.Throttled > 0 {
		r.Problems = append(r.Problems, fmt.Sprintf("%d HBR calls throttled under the quota", r.Throttled))
	}
}

// lookupLines says how the DescribeBackupClients calls were spent: each
// ID needs two asks (its pre-flight and its verification); more is a
// look-up made again, fewer than 99 IDs a call a page not shared.
func lookupLines(r *Result, c collected) {
	asked := map[string]int{}
	calls, ids, short := 0, 0, 0
	for _, call := range c.hbr.Calls(hbrtest.ActionDescribeBackupClients) {
		n := 0
		for _, k := range []string{"InstanceIds", "ClientIds"} {
			var v []string
			if json.Unmarshal([]byte(call.Params.Get(k)), &v) == nil {
				for _, id := range v {
					asked[id]++
				}
				n += len(v)
			}
		}
		calls++
		ids += n
		if n < 99 {
			short++
		}
	}
	if calls == 0 {
		return
	}
	byCount := map[int]int{}
	for _, k := range asked {
		byCount[min(k, 4)]++
	}
	r.add("describe_clients_ids", "%d asked in %d calls (%.1f a call, %d calls under 99); IDs asked once %d, twice %d, 3 times %d, 4+ %d",
		ids, calls, float64(ids)/float64(calls), short, byCount[1], byCount[2], byCount[3], byCount[4])
}
