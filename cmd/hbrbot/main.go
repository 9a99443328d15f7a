// Command hbrbot is the Slack bot that upgrades Alibaba Cloud Backup (HBR)
// clients after an explicit approval. It only wires the packages together.
package main

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

// version is set at build time: -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "hbrbot:", err)
		os.Exit(1)
	}
}

// shutdownGrace bounds the work finished after a stop signal: the contract
// promises an exit within 10 s.
const shutdownGrace = 8 * time.Second

// run is the whole program: ctx ending is the stop signal.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 1 && args[1] == "audit" {
		return runAudit(ctx, args[2:], getenv, stdout, stderr)
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if *showVersion {
		fmt.Fprintln(stdout, "hbrbot", version)
		return nil
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q: hbrbot takes its configuration from the environment", fs.Args())
	}

	cfg, err := config.Load(getenv, ".env")
	if err != nil {
		return err
	}
	var handler slog.Handler = slog.NewJSONHandler(stderr, &slog.HandlerOptions{Level: cfg.LogLevel})
	if cfg.LogFormat == "text" {
		handler = slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: cfg.LogLevel})
	}
	log := slog.New(handler)
	rules, err := loadRules(cfg)
	if err != nil {
		return err
	}
	log.Info("starting", "version", version, "config", cfg)
	if cfg.DryRun {
		log.Warn("HBRBOT_DRY_RUN is on: UpgradeBackupClients is never called")
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

	endpoint := cfg.HBREndpoint
	if endpoint.Host == "hbr."+cfg.Region+".aliyuncs.com" {
		endpoint = nil // the default: each region's own endpoint
	}
	hbrClient, err := hbr.New(hbr.Options{Region: cfg.Region, Endpoint: endpoint,
		AccessKeyID: cfg.AccessKeyID, AccessKeySecret: cfg.AccessKeySecret, SecurityToken: cfg.SecurityToken,
		Timeout: 7 * time.Second, RetryFor: 30 * time.Second, Concurrency: 16, Logger: log,
		Limiter: redisstore.NewRateLimiter(rdb, "hbr", cfg.HBRRateLimit, log), Observe: met.HBRCall,
		Budget: redisstore.NewActionBudget(rdb, cfg.HBRRateLimits, log)})
	if err != nil {
		return err
	}

	api := slack.New(cfg.SlackBotToken, slack.OptionAppLevelToken(cfg.SlackAppToken), slack.OptionAPIURL(cfg.SlackAPIURL))
	messenger := bot.NewMessenger(api, met)
	svc := upgrade.New(store, hbrClient, messenger, upgrade.Settings{
		DefaultRegion: cfg.Region, RequestTTL: cfg.RequestTTL, DryRun: cfg.DryRun, Rules: rules,
	}, upgrade.Options{
		PollInterval: cfg.PollInterval, Adaptive: cfg.PollPolicy == "adaptive", MinPollInterval: cfg.PollMinInterval, MaxPollInterval: cfg.PollMaxInterval,
		TaskTimeout: cfg.TaskTimeout, Lease: cfg.Lease, Logger: log, Observer: met,
		// Progress redraws share chat.update's Tier-3 budget (~50 a minute)
		// with card updates, so they take at most 30 a minute together.
		ProgressBudget: redisstore.NewRateLimiter(rdb, "slack-progress", 30, log),
	})
	slackBot := bot.New(api, svc, messenger, log, met)

	httpHandler := health.Handler(reg,
		health.Check{Name: "slack", Fn: func(context.Context) error {
			if !slackBot.Connected() {
				return errors.New("socket mode not connected")
			}
			return nil
		}},
		health.Check{Name: "redis", Fn: store.Ping},
	)
	if cfg.PProf {
		httpHandler = health.WithProfiling(httpHandler)
	}
	srv := &http.Server{Handler: httpHandler, ReadHeaderTimeout: 5 * time.Second}
	ln, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("listen on HBRBOT_HTTP_ADDR %s: %w", cfg.HTTPAddr, err)
	}
	log.Info("http listening", "addr", ln.Addr().String())

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
	g.Go(func() error {
		if err := slackBot.Run(gctx); err != nil {
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
