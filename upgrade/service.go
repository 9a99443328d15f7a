// Package upgrade runs the workflow of an HBR client upgrade: a command
// becomes a request awaiting approval; an approval becomes HBR jobs; each
// job is polled until it ends and is reported once. It talks to Slack,
// HBR and Redis through the small interfaces below, so it depends on no
// adapter.
package upgrade

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hbrbot/hbrbot"
	"github.com/hbrbot/hbrbot/policy"
)

// Store is the shared state all replicas work from.
type Store interface {
	FirstDelivery(ctx context.Context, envelopeID string) (bool, error)
	CreateRequest(ctx context.Context, r hbrbot.Request) error
	SetCardTS(ctx context.Context, id, ts string) error
	Request(ctx context.Context, id string) (hbrbot.Request, error)
	Decide(ctx context.Context, id string, d hbrbot.Decision) (hbrbot.Request, bool, error)
	ChannelRequests(ctx context.Context, channel string, limit int) ([]hbrbot.Request, error)
	Batch(ctx context.Context, key string) (hbrbot.Batch, error)
	Batches(ctx context.Context, r hbrbot.Request) ([]hbrbot.Batch, error)
	ClaimDue(ctx context.Context, now time.Time, n int, lease time.Duration) ([]hbrbot.Lease, error)
	NextDue(ctx context.Context) (time.Time, bool, error)
	SaveBatch(ctx context.Context, l hbrbot.Lease, b hbrbot.Batch, next time.Time) error
	Renew(ctx context.Context, l hbrbot.Lease, b hbrbot.Batch, until time.Time) (hbrbot.Lease, error)
	Reschedule(ctx context.Context, l hbrbot.Lease, next time.Time) error
	Schedule(ctx context.Context, w hbrbot.Work, t time.Time) error
	AppendAudit(ctx context.Context, rec hbrbot.AuditRecord) error
	SetProgress(ctx context.Context, id string, state hbrbot.ReportState, ts string, at time.Time) error
	Progress(ctx context.Context, id string) (hbrbot.ReportState, time.Time, error)
	// BatchStatus is Batch without the spec (Targets and Before): what a
	// poll needs. Saving such a batch keeps the stored spec; LoadSpec
	// adds it.
	BatchStatus(ctx context.Context, key string) (hbrbot.Batch, error)
	LoadSpec(ctx context.Context, b *hbrbot.Batch) error
	// BatchStatuses reads the statuses of a request's batches, without
	// the request and without the specs.
	BatchStatuses(ctx context.Context, requestID string) ([]hbrbot.Batch, error)
}

// Budget spaces out calls that may be skipped or delayed (progress
// updates) under a rate all replicas share.
type Budget interface {
	Allow(ctx context.Context) (bool, time.Duration)
}

// HBR is the part of the HBR API the workflow calls.
type HBR interface {
	UpgradeBackupClients(ctx context.Context, region string, t hbrbot.Targets, cross *hbrbot.CrossAccount) (hbrbot.Submission, error)
	DescribeTask(ctx context.Context, region, taskID string) (hbrbot.Task, error)
	DescribeBackupClients(ctx context.Context, region string, t hbrbot.Targets, cross *hbrbot.CrossAccount) ([]hbrbot.ClientInfo, error)
}

// Chat is how the workflow speaks in Slack.
type Chat interface {
	// PostCard posts r's approval card and returns its ts.
	PostCard(ctx context.Context, r hbrbot.Request) (string, error)
	// UpdateCard shows r as it stands on its card: approvals, decision,
	// and, once its jobs have ended, their outcome.
	UpdateCard(ctx context.Context, r hbrbot.Request, batches []hbrbot.Batch) error
	// PostReport posts one of b's thread replies, tagged so FindReply can
	// find it.
	PostReport(ctx context.Context, b hbrbot.Batch, kind hbrbot.ReportKind) error
	// UploadTable shares b's full report table (a large job's) as a file in
	// its thread.
	UploadTable(ctx context.Context, b hbrbot.Batch) error
	// PostProgress posts r's live progress reply; UpdateProgress redraws it.
	PostProgress(ctx context.Context, r hbrbot.Request, batches []hbrbot.Batch) (string, error)
	UpdateProgress(ctx context.Context, r hbrbot.Request, batches []hbrbot.Batch) error
	// FindReply looks for the reply of that kind tagged with key (a batch
	// key, or a request ID for progress) in a thread, and returns its ts.
	FindReply(ctx context.Context, channel, threadTS, key string, kind hbrbot.ReportKind) (string, bool, error)
	// Tell says text to one user only.
	Tell(ctx context.Context, to Recipient, text string) error
	// InGroup reports whether user is in a Slack user group.
	InGroup(ctx context.Context, group, user string) (bool, error)
	// NeedsTable says whether b's final report comes with a table file.
	NeedsTable(b hbrbot.Batch) bool
	// Permalink links to a message.
	Permalink(ctx context.Context, channel, ts string) (string, error)
}

// Recipient is a user to tell something privately: through the
// interaction's response_url when there is one, else ephemerally in the
// channel.
type Recipient struct {
	UserID, ChannelID, ResponseURL string
}

// retryAfter is an error that says when to try again (Slack's 429).
type retryAfter interface{ RetryAfter() time.Duration }

// Policy is who may do what, where.
type Policy struct {
	DefaultRegion string
	RequestTTL    time.Duration
	// DryRun: no request ever calls UpgradeBackupClients.
	DryRun bool
	// Rules per channel; replaced on SIGHUP with SetRules.
	Rules policy.Set
}

// Observer is told what the workflow does, for metrics.
type Observer interface {
	Click(result string)
	JobFinished(final string, duration, reportLag time.Duration)
	RedisError()
	WorkStarted()
	WorkDone()
}

type noObserver struct{}

func (noObserver) Click(string)                                     {}
func (noObserver) JobFinished(string, time.Duration, time.Duration) {}
func (noObserver) RedisError()                                      {}
func (noObserver) WorkStarted()                                     {}
func (noObserver) WorkDone()                                        {}

// Options tune the job tracking.
type Options struct {
	// PollInterval is the longest wait between two DescribeTask calls of a
	// job (the only one with a fixed policy).
	PollInterval time.Duration
	// Adaptive schedules the next poll at the job's predicted end, from the
	// progress it reported, within [MinPollInterval, MaxPollInterval].
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

// Service is the workflow.
type Service struct {
	store  Store
	hbr    HBR
	chat   Chat
	policy Policy
	rules  atomic.Pointer[policy.Set]
	opts   Options
	log    *slog.Logger
	now    func() time.Time
	kick   chan struct{}

	// progressAsked remembers, per request, when this replica last asked
	// for a progress redraw after a poll: the hundred jobs of a request
	// need not each ask Redis on every poll.
	progressMu    sync.Mutex
	progressAsked map[string]time.Time
}

// New builds a Service. Run must be running for approved work to proceed.
func New(store Store, h HBR, chat Chat, p Policy, o Options) *Service {
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
		o.Workers = 32 // steps wait on HBR, Slack and Redis, not on the CPU
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
	s := &Service{store: store, hbr: h, chat: chat, policy: p, opts: o, log: o.Logger, now: o.Now,
		kick: make(chan struct{}, 1), progressAsked: map[string]time.Time{}}
	s.SetRules(p.Rules)
	return s
}

// SetRules replaces the per-channel rules (a policy file reload). Pending
// requests keep the number of approvals they were created with.
func (s *Service) SetRules(set policy.Set) { s.rules.Store(&set) }

func (s *Service) rulesFor(channel string) (policy.Rules, bool) {
	return s.rules.Load().For(channel)
}

// storeTimeout bounds the Redis work behind one click or command, so that
// with Redis down the user hears so well within 5 s.
const storeTimeout = 2500 * time.Millisecond

// Invocation is one /hbr-upgrade command as Slack delivered it.
type Invocation struct {
	EnvelopeID  string
	TeamID      string
	ChannelID   string
	UserID      string
	Text        string
	ResponseURL string
}

func (inv Invocation) recipient() Recipient {
	return Recipient{UserID: inv.UserID, ChannelID: inv.ChannelID, ResponseURL: inv.ResponseURL}
}

// Parse reads a command and checks it against the channel's rules. It
// touches nothing, so its answer can go into the envelope's
// acknowledgement. The error is a message for the caller; Refused records
// it.
func (s *Service) Parse(inv Invocation) (hbrbot.Command, error) {
	rules, ok := s.rulesFor(inv.ChannelID)
	if !ok {
		return hbrbot.Command{}, &policy.Refusal{Rule: "channels",
			Message: "/hbr-upgrade is not enabled in this channel (HBRBOT_ALLOWED_CHANNELS / the policy file). Use an allowed channel."}
	}
	cmd, err := hbrbot.ParseCommand(inv.Text, rules.MaxTargets)
	if err != nil || cmd.Kind != hbrbot.CommandUpgrade {
		return cmd, err
	}
	if cmd.Upgrade.Region == "" {
		cmd.Upgrade.Region = s.policy.DefaultRegion
	}
	if err := rules.CheckRequest(cmd.Upgrade); err != nil {
		return hbrbot.Command{}, err
	}
	return cmd, nil
}

// Refused records a command that Parse refused.
func (s *Service) Refused(ctx context.Context, inv Invocation, reason error) {
	fields := map[string]string{"reason": reason.Error(), "text": excerpt(inv.Text, 200)}
	var r *policy.Refusal
	if errors.As(reason, &r) {
		fields["rule"] = r.Rule
	}
	s.audit(ctx, hbrbot.AuditRecord{Event: hbrbot.AuditCommandRefused, Actor: inv.UserID, Channel: inv.ChannelID, Fields: fields})
}

func excerpt(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "…"
}

// audit writes one record to the log and to the audit stream.
func (s *Service) audit(ctx context.Context, rec hbrbot.AuditRecord) {
	if rec.Time.IsZero() {
		rec.Time = s.now()
	}
	attrs := []any{"event", rec.Event, "request", rec.RequestID, "actor", rec.Actor, "channel", rec.Channel}
	for k, v := range rec.Fields {
		attrs = append(attrs, k, v)
	}
	level := slog.LevelInfo
	if rec.Event == hbrbot.AuditHBRCall && rec.Fields["action"] == "DescribeTask" && rec.Fields["error_code"] == "" {
		level = slog.LevelDebug // every poll: the stream keeps it, the log need not
	}
	s.log.Log(ctx, level, "audit", attrs...)
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
	defer cancel()
	if err := s.store.AppendAudit(actx, rec); err != nil {
		s.log.WarnContext(ctx, "audit stream unavailable; the log line above is the record", "err", err)
	}
}

// Unavailable is what a caller hears when Redis cannot be reached.
const Unavailable = ":warning: hbrbot is temporarily unavailable (its state store is unreachable). Nothing was done; please try again in a minute."

// firstDelivery reports whether this envelope is new. On a store error it
// tells the caller nothing was done.
func (s *Service) firstDelivery(ctx context.Context, envelopeID string, to Recipient) bool {
	first, err := s.store.FirstDelivery(ctx, envelopeID)
	if err != nil {
		s.log.ErrorContext(ctx, "store unavailable", "envelope", envelopeID, "err", err)
		s.tell(ctx, to, Unavailable)
		return false
	}
	if !first {
		s.log.InfoContext(ctx, "duplicate envelope ignored", "envelope", envelopeID)
	}
	return first
}

func (s *Service) tell(ctx context.Context, to Recipient, text string) {
	// The caller must hear back even when ctx is the store's spent budget.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if err := s.chat.Tell(ctx, to, text); err != nil {
		s.log.ErrorContext(ctx, "tell user", "user", to.UserID, "err", err)
	}
}

// RequestUpgrade stores a request for spec and posts its approval card.
func (s *Service) RequestUpgrade(ctx context.Context, inv Invocation, spec hbrbot.UpgradeSpec) {
	sctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	if !s.firstDelivery(sctx, inv.EnvelopeID, inv.recipient()) {
		return
	}
	s.requestUpgrade(ctx, inv, spec)
}

// requestUpgrade checks the requester, looks the clients up, stores the
// request and posts its card.
func (s *Service) requestUpgrade(ctx context.Context, inv Invocation, spec hbrbot.UpgradeSpec) {
	rules, ok := s.rulesFor(inv.ChannelID)
	if !ok { // the policy was reloaded since Parse
		s.tell(ctx, inv.recipient(), "/hbr-upgrade is not enabled in this channel. Nothing was done.")
		return
	}
	allowed, err := policy.Member(ctx, inv.UserID, rules.Requesters, s.chat)
	if err != nil || !allowed {
		reason := "You are not allowed to request HBR upgrades in this channel (requesters). Nothing was done."
		if err != nil {
			reason = "Could not check whether you may request upgrades (Slack user-group lookup failed). Nothing was done; try again shortly."
		}
		s.Refused(ctx, inv, &policy.Refusal{Rule: "requesters", Message: reason})
		s.tell(ctx, inv.recipient(), reason)
		return
	}
	// Read-only look-up before approval: what will change.
	var preflight []hbrbot.ClientInfo
	var preflightErr string
	if spec.Outdated {
		var ok bool
		if spec, preflight, ok = s.selectOutdated(ctx, inv, spec); !ok {
			return
		}
	} else {
		preflight, preflightErr = s.preflight(ctx, spec)
	}
	var skipped []string
	if preflightErr == "" && !spec.Force {
		spec.Targets, skipped = leaveOutLatest(spec.Targets, preflight)
		if spec.Len() == 0 {
			s.tell(ctx, inv.recipient(), fmt.Sprintf("Nothing to upgrade: every client named (%d) already runs the latest version. Nothing was done; add `--force` to upgrade anyway.", len(skipped)))
			return
		}
	}
	now := s.now()
	r := hbrbot.Request{
		ID: newID(), TeamID: inv.TeamID, ChannelID: inv.ChannelID, RequesterID: inv.UserID,
		Preflight: preflight, PreflightError: preflightErr, Skipped: skipped,
		Spec: spec, State: hbrbot.RequestPending, CreatedAt: now, ExpiresAt: now.Add(s.policy.RequestTTL),
		RequiredApprovals: max(rules.RequiredApprovals, 1), DryRun: spec.DryRun || s.policy.DryRun,
	}
	log := s.log.With("request", r.ID, "channel", r.ChannelID, "user", r.RequesterID)
	// The store's budget starts after the look-up, which has its own.
	sctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	if err := s.store.CreateRequest(sctx, r); err != nil {
		log.ErrorContext(ctx, "store request", "err", err)
		s.tell(ctx, inv.recipient(), Unavailable)
		return
	}
	s.audit(ctx, hbrbot.AuditRecord{Event: hbrbot.AuditCommandAccepted, RequestID: r.ID, Actor: r.RequesterID,
		Channel: r.ChannelID, Fields: map[string]string{"ids": strings.Join(spec.All(), ","), "region": spec.Region,
			"cross_account": crossAccount(spec), "dry_run": fmt.Sprint(r.DryRun), "required_approvals": fmt.Sprint(r.RequiredApprovals)}})
	ts, err := s.chat.PostCard(ctx, r)
	if err != nil {
		log.ErrorContext(ctx, "post approval card", "err", err)
		// The request cannot be approved without its card: close it.
		s.store.Decide(context.WithoutCancel(ctx), r.ID, hbrbot.Decision{State: hbrbot.RequestCancelled, At: s.now()})
		s.tell(ctx, inv.recipient(), fmt.Sprintf(":x: Could not post the approval card in this channel (%s). Nothing was done. Is the bot a member of the channel?", slackReason(err)))
		return
	}
	if err := s.store.SetCardTS(ctx, r.ID, ts); err != nil {
		// A click carries the card's ts too, so the request still works.
		log.WarnContext(ctx, "record card ts", "err", err)
	}
	s.audit(ctx, hbrbot.AuditRecord{Event: hbrbot.AuditRequestPosted, RequestID: r.ID, Actor: "hbrbot",
		Channel: r.ChannelID, Fields: map[string]string{"card_ts": ts}})
}

func crossAccount(spec hbrbot.UpgradeSpec) string {
	if spec.CrossAccount == nil {
		return ""
	}
	return fmt.Sprintf("%d/%s", spec.CrossAccount.UserID, spec.CrossAccount.RoleName)
}

// preflightTimeout bounds the look-up before the card: the caller waits,
// and the whole command must fit the bot's handler budget.
const preflightTimeout = 3 * time.Second

// preflight looks the IDs up with DescribeBackupClients. On failure it
// returns a one-line reason instead, and the card shows the IDs as typed.
func (s *Service) preflight(ctx context.Context, spec hbrbot.UpgradeSpec) ([]hbrbot.ClientInfo, string) {
	ctx, cancel := context.WithTimeout(ctx, preflightTimeout)
	defer cancel()
	clients, err := s.hbr.DescribeBackupClients(ctx, spec.Region, spec.Targets, spec.CrossAccount)
	if err != nil {
		s.log.WarnContext(ctx, "preflight look-up failed", "err", err)
		reason := "the look-up failed"
		if code := hbrbot.ErrorCode(err); code != "" {
			reason += " (" + code + ")"
		} else if errors.Is(err, context.DeadlineExceeded) {
			reason += " (timed out)"
		}
		return nil, reason
	}
	return clients, ""
}

// selectOutdated fills spec with the region's clients older than the
// latest version (at most spec.Limit, oldest first). ok false: the caller
// was told why there is nothing to approve.
func (s *Service) selectOutdated(ctx context.Context, inv Invocation, spec hbrbot.UpgradeSpec) (hbrbot.UpgradeSpec, []hbrbot.ClientInfo, bool) {
	lctx, cancel := context.WithTimeout(ctx, 3*preflightTimeout) // a whole region, page by page
	defer cancel()
	all, err := s.hbr.DescribeBackupClients(lctx, spec.Region, hbrbot.Targets{}, spec.CrossAccount)
	if err != nil {
		s.log.WarnContext(ctx, "list clients", "region", spec.Region, "err", err)
		code := hbrbot.ErrorCode(err)
		s.tell(ctx, inv.recipient(), fmt.Sprintf("Could not list the backup clients of %s (%s). Nothing was done.", spec.Region, cmp.Or(code, "the look-up failed")))
		return spec, nil, false
	}
	var outdated []hbrbot.ClientInfo
	for _, c := range all {
		if c.Outdated() && c.ClientID != "" {
			outdated = append(outdated, c)
		}
	}
	if len(outdated) == 0 {
		s.tell(ctx, inv.recipient(), fmt.Sprintf("Every ECS backup client in %s (%d) runs the latest version: nothing to upgrade.", spec.Region, len(all)))
		return spec, nil, false
	}
	slices.SortStableFunc(outdated, func(a, b hbrbot.ClientInfo) int { return hbrbot.CompareVersions(a.Version, b.Version) })
	if len(outdated) > spec.Limit {
		outdated = outdated[:spec.Limit]
	}
	spec.Targets = hbrbot.Targets{}
	for _, c := range outdated {
		spec.ClientIDs = append(spec.ClientIDs, c.ClientID)
	}
	return spec, outdated, true
}

// leaveOutLatest drops the IDs whose client already runs the latest
// version.
func leaveOutLatest(t hbrbot.Targets, clients []hbrbot.ClientInfo) (keep hbrbot.Targets, skipped []string) {
	latest := func(id string) bool {
		c, ok := hbrbot.Lookup(clients, id)
		return ok && c.Version != "" && c.MaxVersion != "" && !c.Outdated()
	}
	for _, id := range t.InstanceIDs {
		if latest(id) {
			skipped = append(skipped, id)
		} else {
			keep.InstanceIDs = append(keep.InstanceIDs, id)
		}
	}
	for _, id := range t.ClientIDs {
		if latest(id) {
			skipped = append(skipped, id)
		} else {
			keep.ClientIDs = append(keep.ClientIDs, id)
		}
	}
	return keep, skipped
}

// slackReason is a short, secret-free reason from a Slack error.
func slackReason(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		msg = msg[i+2:]
	}
	if len(msg) > 80 {
		msg = msg[:80]
	}
	return msg
}

// Click is a press of a card's button.
type Click struct {
	EnvelopeID  string
	ChannelID   string
	MessageTS   string
	UserID      string
	Action      Action
	RequestID   string
	ResponseURL string
}

// Action is what a button asks for.
type Action int

const (
	Approve Action = iota
	Cancel
	// Retry opens a new request for the IDs of a job that did not end
	// well; Click.RequestID then names the batch.
	Retry
)

// HandleClick decides a request, once, whoever clicks how often on
// whichever replica.
func (s *Service) HandleClick(ctx context.Context, c Click) {
	to := Recipient{UserID: c.UserID, ChannelID: c.ChannelID, ResponseURL: c.ResponseURL}
	sctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	if !s.firstDelivery(sctx, c.EnvelopeID, to) {
		return
	}
	if c.Action == Retry {
		s.retryFailed(ctx, c, to)
		return
	}
	log := s.log.With("request", c.RequestID, "user", c.UserID)
	r, err := s.store.Request(sctx, c.RequestID)
	if errors.Is(err, hbrbot.ErrNotFound) {
		s.tell(ctx, to, "This request is unknown to hbrbot (too old, or its data was lost). Nothing was done; run /hbr-upgrade again if needed.")
		return
	}
	if err != nil {
		log.ErrorContext(ctx, "read request", "err", err)
		s.tell(ctx, to, Unavailable)
		return
	}
	if r.State != hbrbot.RequestPending {
		s.tell(ctx, to, alreadyDecided(r))
		s.syncCard(ctx, r)
		return
	}
	rules, ok := s.rulesFor(r.ChannelID)
	if !ok {
		s.refuseClick(ctx, to, c, "channels", "/hbr-upgrade is no longer enabled in this channel, so its requests cannot be decided here. Nothing was done.")
		return
	}
	approver, err := policy.Member(ctx, c.UserID, rules.Approvers, s.chat)
	if err != nil {
		log.ErrorContext(ctx, "resolve approvers", "err", err)
		s.refuseClick(ctx, to, c, "approvers", "Could not check whether you may approve (Slack user-group lookup failed). Nothing was done; try again shortly.")
		return
	}
	var d hbrbot.Decision
	switch c.Action {
	case Approve:
		if c.UserID == r.RequesterID && !rules.AllowSelfApproval {
			s.refuseClick(ctx, to, c, "self_approval", "You cannot approve your own request: another approver must (two-person rule). Nothing was done.")
			return
		}
		if !approver {
			s.refuseClick(ctx, to, c, "approvers", "You are not an allowed approver for HBR upgrades in this channel. Nothing was done.")
			return
		}
		d = hbrbot.Decision{State: hbrbot.RequestApproved, Batches: s.batches(r, c.MessageTS)}
	case Cancel:
		if c.UserID != r.RequesterID && !approver {
			s.refuseClick(ctx, to, c, "cancel", "Only the requester or an approver can cancel this request. Nothing was done.")
			return
		}
		d = hbrbot.Decision{State: hbrbot.RequestCancelled}
	}
	d.By, d.At, d.CardTS = c.UserID, s.now(), c.MessageTS
	dctx, cancel := context.WithTimeout(ctx, storeTimeout) // the group lookup may have used up sctx
	defer cancel()
	r, changed, err := s.store.Decide(dctx, r.ID, d)
	if err != nil {
		log.ErrorContext(ctx, "decide", "err", err)
		s.tell(ctx, to, Unavailable)
		return
	}
	rec := hbrbot.AuditRecord{RequestID: r.ID, Actor: c.UserID, Channel: r.ChannelID,
		Fields: map[string]string{"action": c.Action.String(), "state": string(r.State)}}
	switch {
	case r.State == hbrbot.RequestPending && changed:
		s.opts.Observer.Click("approval_recorded")
		rec.Event = hbrbot.AuditApprovalAdded
		rec.Fields["approvals"] = fmt.Sprintf("%d/%d", len(r.Approvals), r.RequiredApprovals)
		s.audit(ctx, rec)
		left := r.RequiredApprovals - len(r.Approvals)
		s.tell(ctx, to, fmt.Sprintf("Your approval is recorded (%d of %d). Waiting for %s.", len(r.Approvals), r.RequiredApprovals, plural(left, "more approval")))
	case r.State == hbrbot.RequestPending:
		s.opts.Observer.Click("duplicate")
		s.tell(ctx, to, fmt.Sprintf("You have already approved this request; it still needs %s from other approvers.", plural(r.RequiredApprovals-len(r.Approvals), "approval")))
	case changed && r.State != hbrbot.RequestExpired:
		s.opts.Observer.Click(string(r.State))
		rec.Event = hbrbot.AuditDecided
		rec.Fields["approvals"] = strings.Join(r.Approvals, ",")
		s.audit(ctx, rec)
	default:
		s.opts.Observer.Click("already_decided")
		s.tell(ctx, to, alreadyDecided(r))
	}
	log.InfoContext(ctx, "click", "action", c.Action, "state", r.State, "changed", changed)
	if changed && r.CardTS != "" {
		// Show the decision now rather than behind queued job work; the
		// scheduled card sync (from the decision) redraws it in any case.
		if err := s.chat.UpdateCard(ctx, r, nil); err != nil {
			log.WarnContext(ctx, "update card; the scheduled sync will", "err", err)
		}
	}
	s.Kick()
}

// refuseClick tells the clicker why nothing happened, and records it.
func (s *Service) refuseClick(ctx context.Context, to Recipient, c Click, rule, msg string) {
	s.opts.Observer.Click("refused")
	s.audit(ctx, hbrbot.AuditRecord{Event: hbrbot.AuditClickRefused, RequestID: c.RequestID, Actor: c.UserID,
		Channel: c.ChannelID, Fields: map[string]string{"action": c.Action.String(), "rule": rule, "reason": msg}})
	s.tell(ctx, to, msg)
}

func (a Action) String() string {
	switch a {
	case Approve:
		return "approve"
	case Retry:
		return "retry"
	}
	return "cancel"
}

// retryFailed turns the IDs of a job that did not end well into a new
// request by the clicker, which needs approval like any other.
func (s *Service) retryFailed(ctx context.Context, c Click, to Recipient) {
	b, err := s.store.Batch(ctx, c.RequestID)
	if errors.Is(err, hbrbot.ErrNotFound) {
		s.tell(ctx, to, "That job is unknown to hbrbot (too old?). Nothing was done.")
		return
	}
	if err != nil {
		s.tell(ctx, to, Unavailable)
		return
	}
	spec := hbrbot.UpgradeSpec{Targets: hbrbot.RetryTargets(b), Region: b.Region, CrossAccount: b.CrossAccount, DryRun: b.DryRun}
	if spec.Len() == 0 {
		s.tell(ctx, to, "Every ID of that job ended well: nothing to retry.")
		return
	}
	inv := Invocation{EnvelopeID: c.EnvelopeID, ChannelID: b.ChannelID, UserID: c.UserID, ResponseURL: c.ResponseURL,
		Text: "retry of " + b.Key()}
	rules, ok := s.rulesFor(b.ChannelID)
	if ok {
		err = rules.CheckRequest(spec)
	}
	if !ok || err != nil {
		reason := "/hbr-upgrade is no longer enabled in this channel."
		if err != nil {
			reason = err.Error()
		}
		s.Refused(ctx, inv, &policy.Refusal{Rule: "retry", Message: reason})
		s.tell(ctx, to, reason+" Nothing was done.")
		return
	}
	s.requestUpgrade(ctx, inv, spec)
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

func alreadyDecided(r hbrbot.Request) string {
	switch r.State {
	case hbrbot.RequestApproved:
		return fmt.Sprintf("This request was already approved by <@%s>; nothing more to do.", r.DecidedBy)
	case hbrbot.RequestCancelled:
		if r.DecidedBy == "" {
			return "This request was closed because its card could not be posted; nothing was done."
		}
		return fmt.Sprintf("This request was cancelled by <@%s>; nothing was done.", r.DecidedBy)
	case hbrbot.RequestExpired:
		return fmt.Sprintf("This request expired at %s without approval; nothing was done. Run /hbr-upgrade again.", r.ExpiresAt.UTC().Format("2006-01-02 15:04 MST"))
	}
	return "This request is still pending."
}

// syncCard brings a decided card up to date later (a crash may have left
// its buttons).
func (s *Service) syncCard(ctx context.Context, r hbrbot.Request) {
	if err := s.store.Schedule(ctx, hbrbot.Work{Kind: hbrbot.WorkCardSync, ID: r.ID}, s.now()); err != nil {
		s.log.WarnContext(ctx, "schedule card sync", "request", r.ID, "err", err)
	}
	s.Kick()
}

func (s *Service) batches(r hbrbot.Request, cardTS string) []hbrbot.Batch {
	if r.CardTS != "" {
		cardTS = r.CardTS
	}
	parts := r.Batches()
	out := make([]hbrbot.Batch, len(parts))
	for i, t := range parts {
		out[i] = hbrbot.Batch{RequestID: r.ID, Index: i, Of: len(parts), Targets: t, Region: r.Spec.Region,
			CrossAccount: r.Spec.CrossAccount, DryRun: r.DryRun, RequesterID: r.RequesterID, ChannelID: r.ChannelID, ThreadTS: cardTS,
			State: hbrbot.BatchPending}
		for _, id := range t.All() {
			if c, ok := hbrbot.Lookup(r.Preflight, id); ok {
				out[i].Before = append(out[i].Before, c)
			}
		}
	}
	return out
}

// Kick wakes the local worker: work was just scheduled.
func (s *Service) Kick() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// newID is a short random request ID, safe in Redis keys and Slack values.
func newID() string {
	const alphabet = "abcdefghijkmnpqrstuvwxyz23456789"
	b := make([]byte, 10)
	rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return "r" + string(b)
}
