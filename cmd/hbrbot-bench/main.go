// Command hbrbot-bench is a load benchmark of hbrbot. It builds the real
// bot (./cmd/hbrbot), runs replicas of it as child processes against the
// in-tree fakes (slacktest, hbrtest) and a redis-server child process, and
// drives them: slash commands with their approvals, many at a time, then
// many HBR jobs tracked at once. It prints what it measured as "key: value"
// lines:
//
//	go run ./cmd/hbrbot-bench -replicas 2 -commands 200 -jobs 1000 -interval 10s
//	go run ./cmd/hbrbot-bench -small                  # CI size, under a minute
//	go run ./cmd/hbrbot-bench -small -compare         # fixed vs adaptive polling
//
// It needs redis-server on PATH and the Go toolchain (to build the bot).
// Everything listens on 127.0.0.1. Nothing reaches Slack or Alibaba Cloud.
//
// Job durations: hbrtest advances a job one step per DescribeTask, which
// cannot compare poll policies; by default (-model wall) a proxy in front
// of hbrtest makes each job run for its seeded wall-clock duration (see
// proxy.go). -model steps uses hbrtest's scripts (duration/interval steps)
// as they are.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	code, err := mainErr(ctx, os.Args[1:], os.Stdout, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "hbrbot-bench:", err)
	}
	os.Exit(code)
}

type envFlag []string

func (e *envFlag) String() string     { return strings.Join(*e, ",") }
func (e *envFlag) Set(v string) error { *e = append(*e, v); return nil }

// mainErr parses the flags, runs, prints and says the exit code: 0 all
// well, 1 a run with problems (broken promises), 2 bad flags or a failure.
func mainErr(ctx context.Context, args []string, stdout, stderr io.Writer) (int, error) {
	fs := flag.NewFlagSet("hbrbot-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	d := Defaults()
	small := fs.Bool("small", false, "CI preset: 2 replicas, 20 commands, 40 jobs of 1-4s, 500ms interval (flags given explicitly still win)")
	compare := fs.Bool("compare", false, "run the same seeded jobs with -policy fixed, then adaptive, and compare")
	quiet := fs.Bool("q", false, "no progress lines on stderr")
	var o Options
	var env envFlag
	fs.IntVar(&o.Replicas, "replicas", d.Replicas, "bot replicas (child processes)")
	fs.IntVar(&o.Commands, "commands", d.Commands, "slash commands (each approved, or cancelled when jobs run out)")
	fs.IntVar(&o.InFlight, "inflight", d.InFlight, "commands in flight at once (sent, not yet decided)")
	fs.BoolVar(&o.ApproveOnPost, "approve-on-post", false, "approve a card as soon as it is posted, before a deferred look-up lands (default: once it shows the versions)")
	fs.IntVar(&o.Jobs, "jobs", d.Jobs, "HBR jobs tracked (more jobs than commands: 100 IDs a job)")
	fs.IntVar(&o.IDsPerJob, "ids-per-job", d.IDsPerJob, "IDs per job when there are no more jobs than commands")
	fs.DurationVar(&o.MinDuration, "min-duration", d.MinDuration, "shortest job")
	fs.DurationVar(&o.MaxDuration, "max-duration", d.MaxDuration, "longest job")
	fs.Uint64Var(&o.Seed, "seed", d.Seed, "seed of the job durations")
	fs.StringVar(&o.Model, "model", d.Model, "job durations: wall (set time, via a proxy) or steps (hbrtest script steps)")
	fs.DurationVar(&o.PollInterval, "interval", d.PollInterval, "HBRBOT_POLL_INTERVAL")
	fs.StringVar(&o.Policy, "policy", "", "HBRBOT_POLL_POLICY: fixed or adaptive (empty: the bot's default)")
	fs.DurationVar(&o.MinInterval, "min-interval", 0, "HBRBOT_POLL_MIN_INTERVAL (0: the bot's default)")
	fs.IntVar(&o.HBRRateLimit, "hbr-rate-limit", d.HBRRateLimit, "HBRBOT_HBR_RATE_LIMIT, calls a minute for all replicas (the bot allows at most 60000)")
	fs.DurationVar(&o.Lease, "lease", d.Lease, "HBRBOT_LEASE (at least 5s)")
	fs.StringVar(&o.HBRRateLimits, "hbr-rate-limits", d.HBRRateLimits, "HBRBOT_HBR_RATE_LIMITS, ACTION=N,... (empty: the bot's defaults, 480 each)")
	fs.IntVar(&o.Quota, "quota", 0, "make the fake HBR enforce its flow control: calls per action per rolling minute (HBR: 600; 0: none)")
	fs.Var(&env, "env", "KEY=VALUE for every replica (repeatable); wins over the bench's own settings")
	fs.StringVar(&o.Bot, "bot", "", "a prebuilt hbrbot binary (default: go build ./cmd/hbrbot)")
	fs.DurationVar(&o.Timeout, "timeout", 0, "bound on one run (default: longest job + 30 intervals + 2m)")
	fs.BoolVar(&o.KeepDir, "keep", false, "keep the work directory with the bot logs")
	fs.StringVar(&o.ProfileDir, "profile", "", "save Go profiles of replica 1 here (CPU and trace of the commands, heap and CPU of the polling)")
	if err := fs.Parse(args); err != nil {
		return 2, nil
	}
	if fs.NArg() > 0 {
		return 2, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *small {
		s := Small()
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		pick := func(name string, dst *int, v int) {
			if !set[name] {
				*dst = v
			}
		}
		pickD := func(name string, dst *time.Duration, v time.Duration) {
			if !set[name] {
				*dst = v
			}
		}
		pick("replicas", &o.Replicas, s.Replicas)
		pick("commands", &o.Commands, s.Commands)
		pick("inflight", &o.InFlight, s.InFlight)
		pick("jobs", &o.Jobs, s.Jobs)
		pickD("min-duration", &o.MinDuration, s.MinDuration)
		pickD("max-duration", &o.MaxDuration, s.MaxDuration)
		pickD("interval", &o.PollInterval, s.PollInterval)
		if !set["hbr-rate-limits"] {
			o.HBRRateLimits = s.HBRRateLimits
		}
	}
	o.Env = env
	if !*quiet {
		o.Progress = stderr
	}
	if *compare {
		rs, err := Compare(ctx, o)
		for _, r := range rs {
			fmt.Fprintf(stdout, "\n# policy %s\n", r.Options.Policy)
			r.Print(stdout)
		}
		if err != nil {
			return 2, err
		}
		fmt.Fprintln(stdout, "\n# comparison")
		PrintComparison(stdout, rs)
		for _, r := range rs {
			if len(r.Problems) > 0 {
				return 1, nil
			}
		}
		return 0, nil
	}
	r, err := Run(ctx, o)
	if err != nil {
		return 2, err
	}
	fmt.Fprintln(stdout)
	r.Print(stdout)
	if len(r.Problems) > 0 {
		return 1, nil
	}
	return 0, nil
}
