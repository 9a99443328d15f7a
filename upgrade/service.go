// Package upgrade runs the workflow of an HBR client upgrade: a command
// becomes a request awaiting approval; an approval becomes HBR jobs; each
// job is polled until it ends and is reported once. It talks to Slack,
// HBR and Redis through the small interfaces below, so it depends on no
// adapter.
package upgrade

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/hbrbot/hbrbot"
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
	Reschedule(ctx context.Context, l hbrbot.Lease, next time.Time) error
	Schedule(ctx context.Context, w hbrbot.Work, t time.Time) error
}

// HBR is the part of the HBR API the workflow calls.
type HBR interface {
	UpgradeBackupClients(ctx context.Context, region string, t hbrbot.Targets, cross *hbrbot.CrossAccount) (hbrbot.Submission, error)
	DescribeTask(ctx context.Context, region, taskID string) (hbrbot.Task, error)
}

// Chat is how the workflow speaks in Slack.
type Chat interface {
	// PostCard posts r's approval card and returns its ts.
	PostCard(ctx context.Context, r hbrbot.Request) (string, error)
	// UpdateCard shows r's decision on its card (no more buttons).
	UpdateCard(ctx context.Context, r hbrbot.Request) error
	// PostReport posts one of b's thread replies, tagged so FindReport can
	// find it.
	PostReport(ctx context.Context, b hbrbot.Batch, kind hbrbot.ReportKind) error
	// FindReport reports whether b's reply of that kind is in its thread.
	FindReport(ctx context.Context, b hbrbot.Batch, kind hbrbot.ReportKind) (bool, error)
	// Tell says text to one user only.
	Tell(ctx context.Context, to Recipient, text string) error
	// GroupMembers lists the members of a Slack user group.
	GroupMembers(ctx context.Context, groupID string) ([]string, error)
}

// Recipient is a user to tell something privately: through the
// interaction's response_url when there is one, else ephemerally in the
// channel.
type Recipient struct {
	UserID, ChannelID, ResponseURL string
}

// retryAfter is an error that says when to try again (Slack's 429).
type retryAfter interface{ RetryAfter() time.Duration }

// Policy is who may do what.
type Policy struct {
	DefaultRegion     string
	Approvers         []string // user IDs (U.../W...) and user-group IDs (S...); empty = anyone
	AllowSelfApproval bool
	AllowedChannels   []string // empty = any
	MaxTargets        int
	RequestTTL        time.Duration
}

// Options tune the job tracking.
type Options struct {
	// PollInterval is the longest wait between two DescribeTask calls of a
	// job (the only one with a fixed policy).
	PollInterval time.Duration
	// Adaptive schedules the next poll at the job's predicted end, from the
	// progress it reported, but no sooner than MinPollInterval.
	Adaptive        bool
	MinPollInterval time.Duration
	TaskTimeout     time.Duration
	// Lease is how long a replica owns a work item it claimed; a replica
	// that dies holding one delays that item by at most this long.
	Lease time.Duration
	// Workers is how many work items one replica runs at once.
	Workers int
	// ShutdownGrace bounds the work finished after Run's context ends.
	ShutdownGrace time.Duration
	Logger        *slog.Logger
	Now           func() time.Time
}

// Service is the workflow.
type Service struct {
	store  Store
	hbr    HBR
	chat   Chat
	policy Policy
	opts   Options
	log    *slog.Logger
	now    func() time.Time
	kick   chan struct{}
}

// New builds a Service. Run must be running for approved work to proceed.
func New(store Store, h HBR, chat Chat, p Policy, o Options) *Service {
	if o.PollInterval <= 0 {
		o.PollInterval = 10 * time.Second
	}
	if o.MinPollInterval <= 0 || o.MinPollInterval > o.PollInterval {
		o.MinPollInterval = o.PollInterval
	}
	if o.TaskTimeout <= 0 {
		o.TaskTimeout = 20 * time.Minute
	}
	if o.Lease <= 0 {
		o.Lease = time.Minute
	}
	if o.Workers <= 0 {
		o.Workers = 8
	}
	if o.ShutdownGrace <= 0 {
		o.ShutdownGrace = 7 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return &Service{store: store, hbr: h, chat: chat, policy: p, opts: o, log: o.Logger, now: o.Now,
		kick: make(chan struct{}, 1)}
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

// Parse reads a command and checks it against the policy. It touches
// nothing, so its answer can go into the envelope's acknowledgement. The
// error is a message for the caller.
func (s *Service) Parse(inv Invocation) (hbrbot.Command, error) {
	if len(s.policy.AllowedChannels) > 0 && !slices.Contains(s.policy.AllowedChannels, inv.ChannelID) {
		return hbrbot.Command{}, fmt.Errorf("/hbr-upgrade is not enabled in this channel. Ask an admin to add it to HBRBOT_ALLOWED_CHANNELS, or use an allowed channel.")
	}
	return hbrbot.ParseCommand(inv.Text, s.policy.MaxTargets)
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
	if spec.Region == "" {
		spec.Region = s.policy.DefaultRegion
	}
	now := s.now()
	r := hbrbot.Request{
		ID: newID(), TeamID: inv.TeamID, ChannelID: inv.ChannelID, RequesterID: inv.UserID,
		Spec: spec, State: hbrbot.RequestPending, CreatedAt: now, ExpiresAt: now.Add(s.policy.RequestTTL),
	}
	log := s.log.With("request", r.ID, "channel", r.ChannelID, "user", r.RequesterID)
	if err := s.store.CreateRequest(sctx, r); err != nil {
		log.ErrorContext(ctx, "store request", "err", err)
		s.tell(ctx, inv.recipient(), Unavailable)
		return
	}
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
	log.InfoContext(ctx, "request posted", "ids", spec.Len(), "region", spec.Region, "card", ts)
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
	approver, err := s.isApprover(ctx, c.UserID)
	if err != nil {
		log.ErrorContext(ctx, "resolve approvers", "err", err)
		s.tell(ctx, to, "Could not check whether you may approve (Slack user-group lookup failed). Nothing was done; try again shortly.")
		return
	}
	var d hbrbot.Decision
	switch c.Action {
	case Approve:
		if c.UserID == r.RequesterID && !s.policy.AllowSelfApproval {
			s.tell(ctx, to, "You cannot approve your own request: another approver must (two-person rule). Nothing was done.")
			return
		}
		if !approver {
			s.tell(ctx, to, "You are not an allowed approver for HBR upgrades (HBRBOT_APPROVERS). Nothing was done.")
			return
		}
		d = hbrbot.Decision{State: hbrbot.RequestApproved, Batches: s.batches(r, c.MessageTS)}
	case Cancel:
		if c.UserID != r.RequesterID && !approver {
			s.tell(ctx, to, "Only the requester or an approver can cancel this request. Nothing was done.")
			return
		}
		d = hbrbot.Decision{State: hbrbot.RequestCancelled}
	}
	d.By, d.At, d.CardTS = c.UserID, s.now(), c.MessageTS
	r, won, err := s.store.Decide(sctx, r.ID, d)
	if err != nil {
		log.ErrorContext(ctx, "decide", "err", err)
		s.tell(ctx, to, Unavailable)
		return
	}
	if !won || r.State == hbrbot.RequestExpired {
		s.tell(ctx, to, alreadyDecided(r))
	}
	log.InfoContext(ctx, "request decided", "state", r.State, "by", r.DecidedBy, "won", won)
	s.Kick()
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
			CrossAccount: r.Spec.CrossAccount, ChannelID: r.ChannelID, ThreadTS: cardTS, State: hbrbot.BatchPending}
	}
	return out
}

// isApprover checks user against HBRBOT_APPROVERS, resolving user groups.
func (s *Service) isApprover(ctx context.Context, user string) (bool, error) {
	if len(s.policy.Approvers) == 0 || slices.Contains(s.policy.Approvers, user) {
		return true, nil
	}
	for _, a := range s.policy.Approvers {
		if !strings.HasPrefix(a, "S") {
			continue
		}
		members, err := s.chat.GroupMembers(ctx, a)
		if err != nil {
			return false, fmt.Errorf("members of %s: %w", a, err)
		}
		if slices.Contains(members, user) {
			return true, nil
		}
	}
	return false, nil
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
