// Package app is the hbrbot program: it reads the configuration and wires
// the packages together. cmd/hbrbot runs it; cmd/hbrbot-demo runs it
// in-process against the fakes.
package app

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"
	"github.com/slack-go/slack"
	"golang.org/x/sync/errgroup"

	"github.com/hbrbot/hbrbot/bot"
	"github.com/hbrbot/hbrbot/config"
	"github.com/hbrbot/hbrbot/hbr"
	"github.com/hbrbot/hbrbot/health"
	"github.com/hbrbot/hbrbot/metrics"
	"github.com/hbrbot/hbrbot/policy"
	"github.com/hbrbot/hbrbot/redisstore"
	"github.com/hbrbot/hbrbot/upgrade"
)

// Version is set by cmd/hbrbot from its -ldflags "-X main.version=...".
var Version = "dev"

// shutdownGrace bounds the work finished after a stop signal: the contract
// promises an exit within 10 s.
const shutdownGrace = 8 * time.Second

// Run is the whole program: ctx ending is the stop signal.
func Run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 1 {
		switch {
		case args[1] == "audit":
			return runAudit(ctx, args[2:], getenv, stdout, stderr)
		case args[1] == "healthcheck":
			return runHealthcheck(ctx, args[2:], getenv, stdout, stderr)
		case isHelp(args[1]):
			writeHelp(stdout)
			return nil
		}
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { writeHelp(stderr) }
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *showVersion {
		fmt.Fprintln(stdout, "hbrbot", versionString())
		return nil
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q: hbrbot takes its configuration from the environment (hbrbot help)", fs.Args())
	}

	cfg, err := config.Load(getenv, ".env")
	if err != nil {
		return fmt.Errorf("%w\n%s", err, config.Hint)
	}
	log := newLogger(stderr, cfg)
	redis.SetLogger(redisLogger{log})
	rules, err := loadRules(cfg)
	if err != nil {
		return err
	}
	log.Info("starting", "version", versionString(), "config", cfg)
	if cfg.DryRun {
		log.Warn("HBRBOT_DRY_RUN is on: UpgradeBackupClients is never called")
	}
	if anyoneApproves(rules) {
		log.Warn("some channels name no approvers: any member of the home organisation may approve there (set HBRBOT_APPROVERS or the policy file's approvers)")
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	met := metrics.New(reg)

	rdb, embedded, closeRedis, err := redisstore.Connect(cfg.RedisURL, cfg.RedisMode)
	if err != nil {
		return err
	}
	defer closeRedis()
	if embedded {
		log.Warn("REDIS_URL is unset: using an in-process store; all state is lost when hbrbot exits and replicas cannot share it")
	}
	store := redisstore.New(rdb)
	configureDurability(ctx, store, redisstore.Durability(cfg.RedisDurability), log)

	endpoint := cfg.HBREndpoint
	if endpoint.Host == "hbr."+cfg.Region+".aliyuncs.com" {
		endpoint = nil // the default: each region's own endpoint
	}
	hbrClient, err := hbr.New(hbr.Options{Region: cfg.Region, Endpoint: endpoint,
		AccessKeyID: cfg.AccessKeyID, AccessKeySecret: cfg.AccessKeySecret, SecurityToken: cfg.SecurityToken,
		Timeout: 7 * time.Second, RetryFor: 30 * time.Second, Concurrency: 32, Logger: log,
		Limiter: redisstore.NewRateLimiter(rdb, "hbr", cfg.HBRRateLimit, log), Observe: met.HBRCall,
		Budget: redisstore.NewActionBudget(rdb, cfg.HBRRateLimits, log)})
	if err != nil {
		return err
	}

	api := slack.New(cfg.SlackBotToken, slack.OptionAppLevelToken(cfg.SlackAppToken), slack.OptionAPIURL(cfg.SlackAPIURL),
		slack.OptionLog(stdLogger(log, "slack-go")))
	trust := bot.NewTrust(api, cfg.AllowedTeams)
	messenger := bot.NewMessenger(api, met, trust)
	svc := upgrade.New(store, redisstore.NewFloodgate(rdb), hbrClient, messenger, upgrade.Settings{
		DefaultRegion: cfg.Region, RequestTTL: cfg.RequestTTL, DryRun: cfg.DryRun, Rules: rules,
		UserCommands: cfg.UserCommands, ChannelCommands: cfg.ChannelCommands, UserPending: cfg.UserPending,
	}, upgrade.Options{
		PollInterval: cfg.PollInterval, Adaptive: cfg.PollPolicy == "adaptive", MinPollInterval: cfg.PollMinInterval, MaxPollInterval: cfg.PollMaxInterval,
		TaskTimeout: cfg.TaskTimeout, Lease: cfg.Lease, Logger: log, Observer: met,
		// Progress redraws share chat.update's Tier-3 budget (~50 a minute)
		// with card updates, so they take at most 30 a minute together.
		ProgressBudget: redisstore.NewRateLimiter(rdb, "slack-progress", 30, log),
	})
	slackBot := bot.New(api, svc, messenger, trust, log, met)
	wireDurableIntake(slackBot, svc)

	httpHandler := health.Handler(reg,
		health.Check{Name: "slack", Fn: func(context.Context) error {
			if !slackBot.Connected() {
				return errors.New("socket mode not connected")
			}
			return nil
		}},
		health.Check{Name: "redis", Fn: store.Ready},
	)
	srv := &http.Server{Handler: httpHandler, ReadHeaderTimeout: 5 * time.Second}
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen on HBRBOT_HTTP_ADDR %s: %w", cfg.HTTPAddr, err)
	}
	log.Info("http listening", "addr", ln.Addr().String())
	// The profiler has its own address (loopback by default), never the
	// main port a Service exposes.
	var pprofSrv *http.Server
	var pprofLn net.Listener
	if cfg.PProf {
		if pprofLn, err = net.Listen("tcp", cfg.PProfAddr); err != nil {
			return fmt.Errorf("listen on HBRBOT_PPROF_ADDR %s: %w", cfg.PProfAddr, err)
		}
		pprofSrv = &http.Server{Handler: health.Profiling(), ReadHeaderTimeout: 5 * time.Second}
		log.Warn("profiler listening", "addr", pprofLn.Addr().String())
	}

	// Work goes on past the stop signal only as long as the grace period.
	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http: %w", err)
		}
		return nil
	})
	if pprofSrv != nil {
		g.Go(func() error {
			if err := pprofSrv.Serve(pprofLn); !errors.Is(err, http.ErrServerClosed) {
				return fmt.Errorf("profiler: %w", err)
			}
			return nil
		})
		g.Go(func() error {
			<-gctx.Done()
			return pprofSrv.Close()
		})
	}
	g.Go(func() error {
		if err := slackBot.Run(gctx); err != nil {
			var bad *bot.TokenRefusedError
			if errors.As(err, &bad) {
				return &tokenError{variable: "SLACK_BOT_TOKEN", method: "auth.test", answer: bad.Answer}
			}
			if te := refusedToken(err, "SLACK_APP_TOKEN", "apps.connections.open"); te != nil {
				return te
			}
			return fmt.Errorf("slack: %w", err)
		}
		return nil
	})
	g.Go(func() error { return svc.Scheduler.Run(gctx) })
	g.Go(func() error { return reloadOnHangup(gctx, cfg, svc, log) })
	g.Go(func() error {
		<-gctx.Done()
		timer := time.AfterFunc(shutdownGrace, cancelWork)
		defer timer.Stop()
		shutdownCtx, cancel := context.WithTimeout(workCtx, shutdownGrace)
		defer cancel()
		return srv.Shutdown(shutdownCtx)
	})
	err = g.Wait()
	log.Info("stopped", "err", err)
	return err
}

// loadRules builds the per-channel rules: the environment's as the default,
// overlaid by the policy file when there is one.
func loadRules(cfg config.Config) (policy.Set, error) {
	base := policy.Rules{
		Approvers: cfg.Approvers, Requesters: cfg.Requesters, RequiredApprovals: cfg.RequiredApprovals,
		AllowSelfApproval: cfg.AllowSelfApproval, MaxTargets: cfg.MaxTargets, CrossAccount: true,
	}
	if cfg.PolicyFile != "" {
		return policy.LoadFile(cfg.PolicyFile, base, cfg.MaxTargets)
	}
	set := policy.Set{Channels: map[string]policy.Rules{}}
	if len(cfg.AllowedChannels) == 0 {
		set.Default = &base
	}
	for _, ch := range cfg.AllowedChannels {
		set.Channels[ch] = base
	}
	return set, nil
}

// reloadOnHangup reloads the policy file on SIGHUP; a bad file is logged
// and the rules in force stay.
func reloadOnHangup(ctx context.Context, cfg config.Config, svc *upgrade.Service, log *slog.Logger) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-hup:
			rules, err := loadRules(cfg)
			if err != nil {
				log.Error("policy reload failed; keeping the rules in force", "err", err)
				continue
			}
			svc.SetRules(rules)
			log.Info("policy reloaded", "file", cfg.PolicyFile)
		}
	}
}

// anyoneApproves reports whether some channel's rules name no approvers.
func anyoneApproves(set policy.Set) bool {
	if set.Default != nil && len(set.Default.Approvers) == 0 {
		return true
	}
	for _, r := range set.Channels {
		if len(r.Approvers) == 0 {
			return true
		}
	}
	return false
}

// configureTimeout bounds the check of Redis's settings at start: a client
// looking for unreachable Sentinels does not heed its context.
const configureTimeout = 5 * time.Second

// configureDurability checks Redis's settings and chooses how submitting
// marks are made durable, logging what breaks exactly-once. Unanswered in
// time, the bot goes on and says so (the marks are then trusted as they
// land).
func configureDurability(ctx context.Context, store *redisstore.Store, want redisstore.Durability, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(ctx, configureTimeout)
	defer cancel()
	type answer struct {
		got      redisstore.Durability
		warnings []string
		err      error
	}
	done := make(chan answer, 1)
	go func() {
		got, warnings, err := store.Configure(ctx, want)
		done <- answer{got, warnings, err}
	}()
	var a answer
	select {
	case a = <-done:
	case <-ctx.Done():
		a.err = fmt.Errorf("no answer within %s", configureTimeout)
	}
	if a.err != nil {
		log.Warn("could not check Redis's settings; the submitting mark is trusted as it lands", "err", a.err)
		return
	}
	log.Info("redis durability", "wanted", want, "using", a.got)
	for _, w := range a.warnings {
		log.Warn(w)
	}
}
