package main

import (
	"bytes"
	"context"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestSmallPreset runs the CI preset end to end (build, replicas, fakes,
// Redis) so the bench cannot rot, and checks the bot kept its promises
// under it.
func TestSmallPreset(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the bot and runs replicas for ~10 s")
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		if os.Getenv("HBRBOT_REQUIRE_REDIS") == "1" {
			t.Fatalf("HBRBOT_REQUIRE_REDIS=1 but redis-server is not on PATH: %v", err)
		}
		t.Skip("redis-server is not on PATH")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	o := Small()
	var progress bytes.Buffer
	o.Progress = &progress
	o.Timeout = 2 * time.Minute // generous for -race on a slow machine
	o.ProfileDir = t.TempDir()
	r, err := Run(ctx, o)
	if err != nil {
		t.Fatalf("%v\nprogress:\n%s", err, progress.String())
	}
	var out strings.Builder
	r.Print(&out)
	t.Logf("\n%s", out.String())

	for _, p := range r.Problems {
		t.Errorf("problem: %s", p)
	}
	if r.FinalReports != o.Jobs {
		t.Errorf("%d final reports, want %d", r.FinalReports, o.Jobs)
	}
	// The contract: every envelope acknowledged within 3 s.
	if r.AckP99 <= 0 || r.AckP99 > 3*time.Second {
		t.Errorf("ack p99 %s, want in (0, 3s]", r.AckP99)
	}
	if math.IsNaN(r.LagP99) || r.LagP99 < 0 {
		t.Errorf("report lag p99 %v intervals: not measured", r.LagP99)
	}
	if r.CallsPerJob < 1 || r.MinPerJob <= 0 {
		t.Errorf("describe calls per job %.2f (min %.2f): not measured", r.CallsPerJob, r.MinPerJob)
	}
	if r.RedisCmdsPerPoll <= 0 || r.BotCPUSeconds <= 0 || r.PeakRSSMiB <= 0 || r.RedisBytesPerTrackedJob <= 0 {
		t.Errorf("resource figures missing: redis/poll %.1f, cpu %.2f s, rss %.1f MiB, redis B/job %.0f",
			r.RedisCmdsPerPoll, r.BotCPUSeconds, r.PeakRSSMiB, r.RedisBytesPerTrackedJob)
	}
	if r.RedisStateBytesPerJob <= 0 || r.TrackingRSSMiB <= 0 {
		t.Errorf("memory figures missing: redis state B/job %.0f, RSS while tracking %.1f MiB", r.RedisStateBytesPerJob, r.TrackingRSSMiB)
	}
	// The profiles of replica 1 (HBRBOT_PPROF), readable by go tool pprof.
	for _, name := range []string{"commands.cpu.pprof", "commands.trace", "jobs.heap.pprof", "polling.cpu.pprof"} {
		fi, err := os.Stat(filepath.Join(o.ProfileDir, name))
		if err != nil || fi.Size() == 0 {
			t.Errorf("profile %s: %v (size %d)", name, err, sizeOf(fi))
		}
	}
	for _, key := range []string{"ack_latency_p50", "ack_latency_p99", "report_lag_p50", "report_lag_p99",
		"describe_calls_per_job", "describe_min_per_job", "redis_cmds_per_poll", "bot_cpu_seconds",
		"bot_peak_rss", "redis_memory_per_tracked_job", "redis_memory_by_key_per_tracked_job",
		"redis_state_per_tracked_job", "bot_rss_tracking", "profiles"} {
		if !strings.Contains(out.String(), "\n"+key+": ") && !strings.HasPrefix(out.String(), key+": ") {
			t.Errorf("output lacks %q", key)
		}
	}
}

func sizeOf(fi os.FileInfo) int64 {
	if fi == nil {
		return 0
	}
	return fi.Size()
}

func TestPlanIsSeeded(t *testing.T) {
	o := Defaults()
	a, b := makePlan(o), makePlan(o)
	if len(a.jobs) != o.Jobs || len(a.cmds) != o.Commands {
		t.Fatalf("plan has %d jobs and %d commands, want %d and %d", len(a.jobs), len(a.cmds), o.Jobs, o.Commands)
	}
	for i := range a.jobs {
		if a.jobs[i] != b.jobs[i] {
			t.Fatalf("job %d differs between two plans of one seed: %+v, %+v", i, a.jobs[i], b.jobs[i])
		}
		if d := a.jobs[i].duration; d < o.MinDuration || d > o.MaxDuration {
			t.Errorf("job %d lasts %s, outside [%s, %s]", i, d, o.MinDuration, o.MaxDuration)
		}
	}
	o.Seed++
	c := makePlan(o)
	if slices.EqualFunc(a.jobs, c.jobs, func(x, y jobPlan) bool { return x == y }) {
		t.Error("another seed gave the same durations")
	}
	// 1000 jobs over 200 commands: 5 jobs of 100 IDs each, and the bot
	// splits a command at 100, so job k starts at ID k*100.
	for _, cmd := range a.cmds {
		if len(cmd.ids) != 500 || len(cmd.jobs) != 5 || !cmd.approve {
			t.Fatalf("command %s: %d IDs, %d jobs, approve %v; want 500, 5, true", cmd.channel, len(cmd.ids), len(cmd.jobs), cmd.approve)
		}
		for k, j := range cmd.jobs {
			if a.jobs[j].firstID != cmd.ids[k*100] {
				t.Fatalf("job %d starts at %s, want %s", j, a.jobs[j].firstID, cmd.ids[k*100])
			}
		}
	}
	// Fewer jobs than commands: the rest are cancelled.
	o = Defaults()
	o.Commands, o.Jobs, o.IDsPerJob = 10, 4, 7
	p := makePlan(o)
	approved := 0
	for _, cmd := range p.cmds {
		if cmd.approve {
			approved++
			if len(cmd.ids) != 7 {
				t.Errorf("approved command with %d IDs, want 7", len(cmd.ids))
			}
		}
	}
	if approved != 4 || len(p.jobs) != 4 {
		t.Errorf("%d approved commands and %d jobs, want 4 and 4", approved, len(p.jobs))
	}
}

func TestSteps(t *testing.T) {
	s := steps(2500*time.Millisecond, time.Second)
	if len(s) != 4 || s[len(s)-1].Description != "completed" || s[0].Progress != 0 {
		t.Errorf("steps(2.5s, 1s) = %+v: want 3 running steps from 0%% and a completed one", s)
	}
	if s := steps(time.Millisecond, time.Second); len(s) != 2 {
		t.Errorf("a job shorter than an interval has %d steps, want 2", len(s))
	}
}

func TestPercentile(t *testing.T) {
	xs := []float64{5, 1, 4, 2, 3, 6, 7, 8, 9, 10}
	if p := percentile(xs, 0.5); p != 5 {
		t.Errorf("p50 = %v, want 5", p)
	}
	if p := percentile(xs, 0.99); p != 10 {
		t.Errorf("p99 = %v, want 10", p)
	}
	if !math.IsNaN(percentile(nil, 0.5)) {
		t.Error("percentile of nothing is not NaN")
	}
}

func TestFlags(t *testing.T) {
	var out, errOut bytes.Buffer
	code, err := mainErr(context.Background(), []string{"-replicas", "0"}, &out, &errOut)
	if code != 2 || err == nil || !strings.Contains(err.Error(), "replicas") {
		t.Errorf("-replicas 0: code %d, err %v; want 2 and an error naming replicas", code, err)
	}
	code, _ = mainErr(context.Background(), []string{"-nope"}, &out, &errOut)
	if code != 2 {
		t.Errorf("unknown flag: code %d, want 2", code)
	}
	code, err = mainErr(context.Background(), []string{"-policy", "sometimes"}, &out, &errOut)
	if code != 2 || err == nil {
		t.Errorf("-policy sometimes: code %d, err %v; want 2 and an error", code, err)
	}
}

func TestKeyClass(t *testing.T) {
	for _, tt := range []struct{ key, want string }{
		{"hbrbot:{h}:batch:r1.0", "batch"},
		{"hbrbot:{h}:bspec:r1.0", "bspec"},
		{"hbrbot:{h}:due", "due"},
		{"hbrbot:{h}:audit", "audit"},
		{"rate:hbrbot:{h}:ratelimit:hbr", "other"},
	} {
		if got := keyClass(tt.key); got != tt.want {
			t.Errorf("keyClass(%q) = %q, want %q", tt.key, got, tt.want)
		}
	}
	m := memoryByClass{bytes: map[string]int64{"audit": 3000, "batch": 1000}, keys: map[string]int{"audit": 1, "batch": 2}}
	if got := m.total("audit"); got != 1000 {
		t.Errorf("total without audit = %d, want 1000", got)
	}
	if got, want := m.perJob(2), "audit 1500 B (1 keys), batch 500 B (2 keys)"; got != want {
		t.Errorf("perJob = %q, want %q", got, want)
	}
}

func TestLogCounts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bot.log")
	log := `{"time":"t","level":"INFO","msg":"audit","event":"x"}
{"time":"t","level":"WARN","msg":"preflight look-up failed","err":"e"}
{"time":"t","level":"WARN","msg":"preflight look-up failed"}
{"time":"t","level":"ERROR","msg":"store request"}
not json at all
`
	if err := os.WriteFile(path, []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	levels, problems := logCounts(path)
	if levels["INFO"] != 1 || levels["WARN"] != 2 || levels["ERROR"] != 1 || len(levels) != 3 {
		t.Errorf("levels = %v", levels)
	}
	if problems["WARN preflight look-up failed"] != 2 || problems["ERROR store request"] != 1 || len(problems) != 2 {
		t.Errorf("problems = %v", problems)
	}
}
