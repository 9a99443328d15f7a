// Package upgrade runs the workflow of an HBR client upgrade, in three
// parts that change for different reasons:
//
//   - Intake turns slash commands and button clicks into requests and
//     decisions, and answers each with a typed Notice (package bot words it);
//   - Jobs moves each approved batch through its states (submitted, polled,
//     reported), one method per state, each saying what comes next;
//   - Scheduler claims due work from the schedule all replicas share and
//     hands it to the part that runs it.
//
// Each part talks to Slack, HBR and Redis through the small interfaces
// beside it, so the package depends on no adapter.
package upgrade

import (
	"context"
	"log/slog"
	"time"

	"github.com/hbrbot/hbrbot"
	"github.com/hbrbot/hbrbot/policy"
)

// HBR is the part of the HBR API the workflow calls.
type HBR interface {
	UpgradeBackupClients(ctx context.Context, region string, t hbrbot.Targets, cross *hbrbot.CrossAccount) (hbrbot.Submission, error)
	DescribeTask(ctx context.Context, region, taskID string) (hbrbot.Task, error)
	DescribeBackupClients(ctx context.Context, region string, t hbrbot.Targets, cross *hbrbot.CrossAccount) ([]hbrbot.ClientInfo, error)
}

// Observer is told what the workflow does, for metrics.
type Observer interface {
	Click(result string)
	CommandRefused(rule string)
	JobFinished(final string, duration, reportLag time.Duration)
	RedisError()
	WorkStarted()
	WorkDone()
	// StateLost: scheduled work found its request or batch missing.
	StateLost(kind string)
}

type noObserver struct{}

func (noObserver) Click(string)                                     {}
func (noObserver) CommandRefused(string)                            {}
func (noObserver) JobFinished(string, time.Duration, time.Duration) {}
func (noObserver) RedisError()                                      {}
func (noObserver) WorkStarted()                                     {}
func (noObserver) WorkDone()                                        {}
func (noObserver) StateLost(string)                                 {}

// Store is the shared state all replicas work from: the union of what
// the parts use.
type Store interface {
	intakeStore
	intakeItemStore
	jobStore
	progressStore
	scheduleStore
}

// Chat is how the workflow speaks in Slack: the union of what the parts
// use.
type Chat interface {
	Cards
	Reporter
	ProgressReplies
}

// Settings are what requests default to, and the rules they follow.
type Settings struct {
	DefaultRegion string
	RequestTTL    time.Duration
	// DryRun: no request ever calls UpgradeBackupClients.
	DryRun bool
	// Rules per channel; replaced on SIGHUP with Intake.SetRules.
	Rules policy.Set
	// Flood limits: upgrade commands a minute per user and per channel,
	// requests awaiting approval per user; 0: none.
	UserCommands, ChannelCommands, UserPending int
}

// Options tune the job tracking.
type Options struct {
	// PollInterval is the wait before a job's first DescribeTask call,
	// and with a fixed policy between any two.
	PollInterval time.Duration
	// Adaptive schedules the next poll at the job's predicted end, from the
	// progress it reported, no sooner than MinPollInterval and, below
	// trustedProgress, no later than MaxPollInterval.
	Adaptive        bool
	MinPollInterval time.Duration
	MaxPollInterval time.Duration
	TaskTimeout     time.Duration
	// Lease is how long a replica owns a work item it claimed; a replica
	// that dies holding one delays that item by at most this long.
	Lease time.Duration
	// Workers is how many work items one replica runs at once.
	Workers int
	// ShutdownGrace bounds the work finished after Run's context ends.
	ShutdownGrace time.Duration
	// SubmitTimeout is the most one UpgradeBackupClients call may take,
	// rate-limit wait included (default 10s): a submission's lease is
	// extended to cover it, so it never outlives its lease.
	SubmitTimeout time.Duration
	Observer      Observer
	// ProgressEvery is the least time between two updates of a request's
	// progress reply (default 5s); ProgressBudget, when set, bounds them
	// across all requests (Slack's chat.update is Tier 3).
	ProgressEvery  time.Duration
	ProgressBudget Budget
	Logger         *slog.Logger
	Now            func() time.Time
}

func (o Options) withDefaults() Options {
	if o.PollInterval <= 0 {
		o.PollInterval = 10 * time.Second
	}
	if o.MinPollInterval <= 0 || o.MinPollInterval > o.PollInterval {
		o.MinPollInterval = o.PollInterval
	}
	if o.MaxPollInterval < o.PollInterval {
		o.MaxPollInterval = o.PollInterval
	}
	if o.TaskTimeout <= 0 {
		o.TaskTimeout = 20 * time.Minute
	}
	if o.Lease <= 0 {
		o.Lease = time.Minute
	}
	if o.Workers <= 0 {
		o.Workers = 128 // steps wait on HBR, Slack and Redis, not on the CPU
	}
	if o.SubmitTimeout <= 0 {
		o.SubmitTimeout = 10 * time.Second
	}
	if o.ShutdownGrace <= 0 {
		o.ShutdownGrace = 7 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Observer == nil {
		o.Observer = noObserver{}
	}
	if o.ProgressEvery <= 0 {
		o.ProgressEvery = 5 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Service is the whole workflow, wired: the Intake the bot hands commands
// and clicks to, and the Scheduler that runs the work they lead to.
type Service struct {
	*Intake
	Scheduler *Scheduler
	// Durable stores commands and clicks before their ack.
	Durable *Durable
}

// New wires the three parts on one store and one chat. Scheduler.Run must
// be running for approved work to proceed.
func New(store Store, flood Floodgate, h HBR, chat Chat, p Settings, o Options) *Service {
	o = o.withDefaults()
	sched := NewScheduler(store, o)
	aud := auditor{store: store, log: o.Logger, now: o.Now}
	progress := newProgress(store, chat, o)
	jobs := newJobs(store, h, chat, progress, aud, sched.Kick, o)
	intake := newIntake(store, h, chat, p, aud, sched.Kick, o)
	intake.limits = limits{gate: flood, settings: p, now: o.Now}
	sched.Handle(hbrbot.WorkBatch, jobs.Advance)
	sched.Handle(hbrbot.WorkProgress, progress.Show)
	requests := requestWork{Intake: intake, lookups: make(chan struct{}, max(1, o.Workers/4))}
	sched.Handle(hbrbot.WorkExpiry, requests.Expire)
	sched.Handle(hbrbot.WorkCardSync, requests.SyncCard)
	sched.Handle(hbrbot.WorkLookup, requests.LookUp)
	durable := newDurable(intake, store, o)
	sched.Handle(hbrbot.WorkCommand, durable.Run)
	sched.Handle(hbrbot.WorkClick, durable.Run)
	return &Service{Intake: intake, Scheduler: sched, Durable: durable}
}

// storeTimeout bounds the Redis work behind one click or command, so that
// with Redis down the user hears so well within 5 s.
const storeTimeout = 2500 * time.Millisecond

// auditStore keeps the audit trail.
type auditStore interface {
	AppendAudit(ctx context.Context, rec hbrbot.AuditRecord) error
}

// auditor writes audit records to the log and to the audit stream.
type auditor struct {
	store auditStore
	log   *slog.Logger
	now   func() time.Time
}

func (a auditor) record(ctx context.Context, rec hbrbot.AuditRecord) {
	if rec.Time.IsZero() {
		rec.Time = a.now()
	}
	attrs := []any{"event", rec.Event, "request", rec.RequestID, "actor", rec.Actor, "channel", rec.Channel}
	for k, v := range rec.Fields {
		attrs = append(attrs, k, v)
	}
	level := slog.LevelInfo
	if rec.Event == hbrbot.AuditHBRCall && rec.Fields["action"] == "DescribeTask" && rec.Fields["error_code"] == "" {
		level = slog.LevelDebug // every poll: the stream keeps it, the log need not
	}
	a.log.Log(ctx, level, "audit", attrs...)
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
	defer cancel()
	if err := a.store.AppendAudit(actx, rec); err != nil {
		a.log.WarnContext(ctx, "audit stream unavailable; the log line above is the record", "err", err)
	}
}
