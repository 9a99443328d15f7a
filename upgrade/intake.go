package upgrade

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hbrbot/hbrbot"
	"github.com/hbrbot/hbrbot/policy"
)

// intakeStore is what commands and clicks read and write.
type intakeStore interface {
	auditStore
	FirstDelivery(ctx context.Context, envelopeID string) (bool, error)
	CreateRequest(ctx context.Context, r hbrbot.Request) error
	SetCardTS(ctx context.Context, id, ts string) error
	Request(ctx context.Context, id string) (hbrbot.Request, error)
	ChangeRequest(ctx context.Context, id string, ch hbrbot.RequestChange) error
	ChannelRequests(ctx context.Context, channel string, limit int) ([]hbrbot.Request, error)
	BatchStatus(ctx context.Context, key string) (hbrbot.BatchStatus, error)
	BatchSpec(ctx context.Context, key string) (hbrbot.BatchSpec, error)
	BatchStatuses(ctx context.Context, requestID string) ([]hbrbot.BatchStatus, error)
	Batches(ctx context.Context, requestID string) ([]hbrbot.Batch, error)
	Schedule(ctx context.Context, w hbrbot.Work, t time.Time) error
	Reschedule(ctx context.Context, l hbrbot.Lease, next hbrbot.Next) error
}

// Cards are the approval cards in Slack, and who is in a user group.
type Cards interface {
	// PostCard posts r's approval card and returns its ts.
	PostCard(ctx context.Context, r hbrbot.Request) (string, error)
	// UpdateCard shows r as it stands on its card: approvals, decision,
	// and, once its jobs have ended, their outcome.
	UpdateCard(ctx context.Context, r hbrbot.Request, batches []hbrbot.Batch) error
	policy.Groups
}

// Invocation is one /hbr-upgrade command as Slack delivered it.
type Invocation struct {
	EnvelopeID  string
	TeamID      string
	ChannelID   string
	UserID      string
	Text        string
	ResponseURL string
	// What Slack says of the user and the channel (package bot checks
	// they belong to the home organisation before anything else).
	Guest, SharedChannel bool
}

// Click is a press of a card's or a report's button.
type Click struct {
	EnvelopeID  string
	ChannelID   string
	MessageTS   string
	UserID      string
	Action      Act    // ActApprove, ActCancel or ActRetry
	RequestID   string // the card's request (approve, cancel)
	BatchKey    string // the report's batch (retry)
	ThreadTS    string // the thread of the message clicked
	ResponseURL string
	// What Slack says of the user and the channel.
	Guest, SharedChannel bool
}

// Floodgate bounds what one user or channel may ask, all replicas
// together.
type Floodgate interface {
	Allow(ctx context.Context, name string, perMinute int) (bool, time.Duration, error)
	Pending(ctx context.Context, user string, now time.Time) (int, error)
}

// Intake turns commands and clicks into requests and decisions. Each
// returns what the person who acted is to be told.
type Intake struct {
	store  intakeStore
	limits limits
	// refusals spaces out the audit records of refused commands, so a
	// flood cannot push real history out of the capped stream.
	refusals *refusalLog
	fleet    fleet
	cards    Cards
	settings Settings
	rules    atomic.Pointer[policy.Set]
	audit    auditor
	kick     func()
	obs      Observer
	log      *slog.Logger
	now      func() time.Time
}

func newIntake(store intakeStore, h HBR, cards Cards, p Settings, aud auditor, kick func(), o Options) *Intake {
	in := &Intake{store: store, refusals: &refusalLog{}, fleet: fleet{hbr: h, log: o.Logger}, cards: cards, settings: p, audit: aud, kick: kick,
		obs: o.Observer, log: o.Logger, now: o.Now}
	in.SetRules(p.Rules)
	return in
}

// SetRules replaces the per-channel rules (a policy file reload). Pending
// requests keep the number of approvals they were created with.
func (in *Intake) SetRules(set policy.Set) { in.rules.Store(&set) }

func (in *Intake) rulesFor(channel string) (policy.Rules, bool) {
	return in.rules.Load().For(channel)
}

// Parse reads a command and checks it against the channel's rules. It
// touches nothing, so its answer can go into the envelope's
// acknowledgement. The error is a *policy.Refusal or the parser's
// *hbrbot.InputError; Refused records it.
func (in *Intake) Parse(inv Invocation) (hbrbot.Command, error) {
	rules, ok := in.rulesFor(inv.ChannelID)
	if !ok {
		return hbrbot.Command{}, &policy.Refusal{Rule: policy.RuleChannels}
	}
	if r := mayRequest(in.rules.Load(), inv, rules); r != nil {
		return hbrbot.Command{}, r
	}
	cmd, err := hbrbot.ParseCommand(inv.Text, rules.MaxTargets)
	if err != nil || cmd.Kind != hbrbot.CommandUpgrade {
		return cmd, err
	}
	if cmd.Upgrade.Region == "" {
		cmd.Upgrade.Region = in.settings.DefaultRegion
	}
	if err := rules.CheckRequest(cmd.Upgrade); err != nil {
		return hbrbot.Command{}, err
	}
	return cmd, nil
}

// mayRequest checks what Slack says of the requester and the channel
// against the rules: a channel shared with another organisation, and a
// guest, act only when listed by ID.
func mayRequest(set *policy.Set, inv Invocation, rules policy.Rules) *policy.Refusal {
	switch {
	case inv.SharedChannel && !set.Listed(inv.ChannelID):
		return &policy.Refusal{Rule: policy.RuleSharedChannel}
	case inv.Guest && !slices.Contains(rules.Requesters, inv.UserID):
		return &policy.Refusal{Rule: policy.RuleGuests}
	}
	return nil
}

// Refused records a command that was refused: counted always, audited at
// most refusalsPerMinute a minute (the record says how many were not).
func (in *Intake) Refused(ctx context.Context, inv Invocation, reason error) {
	var rule string
	var r *policy.Refusal
	var ie *hbrbot.InputError
	switch {
	case errors.As(reason, &r):
		rule = string(r.Rule)
	case errors.As(reason, &ie):
		rule = "input:" + string(ie.Problem)
	}
	in.obs.CommandRefused(rule)
	dropped, ok := in.refusals.take(in.now())
	if !ok {
		return
	}
	fields := map[string]string{"reason": reason.Error(), "text": hbrbot.Excerpt(inv.Text, 200), "rule": rule}
	if dropped > 0 {
		fields["unrecorded_before"] = strconv.Itoa(dropped)
	}
	in.audit.record(ctx, hbrbot.AuditRecord{Event: hbrbot.AuditCommandRefused, Actor: inv.UserID, Channel: inv.ChannelID, Fields: fields})
}

// firstDelivery reports whether this envelope is new; a notice when it is
// not, or when Redis cannot say.
func (in *Intake) firstDelivery(ctx context.Context, envelopeID string) (Notice, bool) {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	first, err := in.store.FirstDelivery(ctx, envelopeID)
	if err != nil {
		in.log.ErrorContext(ctx, "store unavailable", "envelope", envelopeID, "err", err)
		return Notice{Kind: NoticeUnavailable}, false
	}
	if !first {
		in.log.InfoContext(ctx, "duplicate envelope ignored", "envelope", envelopeID)
	}
	return Notice{}, first
}

// Request stores a request for spec and posts its approval card.
func (in *Intake) Request(ctx context.Context, inv Invocation, spec hbrbot.UpgradeSpec) Notice {
	if n, first := in.firstDelivery(ctx, inv.EnvelopeID); !first {
		return n
	}
	return in.request(ctx, inv, spec, ActCommand)
}

// request checks the requester, looks the clients up, stores the request
// and posts its card.
func (in *Intake) request(ctx context.Context, inv Invocation, spec hbrbot.UpgradeSpec, act Act) Notice {
	refuse := func(r *policy.Refusal) Notice {
		in.Refused(ctx, inv, r)
		return Notice{Kind: NoticeRefused, Act: act, Refusal: r}
	}
	rules, ok := in.rulesFor(inv.ChannelID)
	if !ok { // the policy was reloaded since Parse, or the retry's channel is closed
		return refuse(&policy.Refusal{Rule: policy.RuleChannels})
	}
	if act == ActRetry {
		if r := mayRequest(in.rules.Load(), inv, rules); r != nil {
			return refuse(r)
		}
		if err := rules.CheckRequest(spec); err != nil {
			var r *policy.Refusal
			errors.As(err, &r)
			return refuse(r)
		}
	}
	if r, err := in.limits.check(ctx, inv); err != nil {
		in.log.ErrorContext(ctx, "flood limits", "err", err)
		return Notice{Kind: NoticeUnavailable}
	} else if r != nil {
		return refuse(r)
	}
	allowed, err := policy.Member(ctx, inv.UserID, rules.Requesters, in.cards)
	if err != nil || !allowed {
		return refuse(&policy.Refusal{Rule: policy.RuleRequesters, LookupFailed: err != nil})
	}
	// Read-only look-up before approval: what will change.
	var preflight []hbrbot.ClientInfo
	var preflightFailure string
	if spec.Outdated {
		var n Notice
		if spec, preflight, n = in.fleet.outdated(ctx, spec); n.Kind != NoticeNone {
			return n
		}
	} else {
		preflight, preflightFailure = requestWork{Intake: in}.preflight(ctx, spec)
	}
	var skipped []string
	if preflightFailure == "" && !spec.Force {
		spec.Targets, skipped = leaveOutLatest(spec.Targets, preflight)
		if spec.Len() == 0 {
			return Notice{Kind: NoticeNothingToUpgrade, Count: len(skipped)}
		}
	}
	now := in.now()
	r := hbrbot.Request{
		ID: newID(), TeamID: inv.TeamID, ChannelID: inv.ChannelID, RequesterID: inv.UserID,
		Preflight: preflight, PreflightFailure: preflightFailure, Skipped: skipped,
		Spec: spec, State: hbrbot.RequestPending, CreatedAt: now, ExpiresAt: now.Add(in.settings.RequestTTL),
		RequiredApprovals: max(rules.RequiredApprovals, 1), DryRun: spec.DryRun || in.settings.DryRun,
	}
	log := in.log.With("request", r.ID, "channel", r.ChannelID, "user", r.RequesterID)
	// The store's budget starts after the look-up, which has its own.
	sctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	if err := in.store.CreateRequest(sctx, r); err != nil {
		log.ErrorContext(ctx, "store request", "err", err)
		return Notice{Kind: NoticeUnavailable}
	}
	in.audit.record(ctx, hbrbot.AuditRecord{Event: hbrbot.AuditCommandAccepted, RequestID: r.ID, Actor: r.RequesterID,
		Channel: r.ChannelID, Fields: map[string]string{"ids": strings.Join(spec.All(), ","), "region": spec.Region,
			"cross_account": crossAccount(spec), "dry_run": fmt.Sprint(r.DryRun), "required_approvals": fmt.Sprint(r.RequiredApprovals)}})
	ts, err := in.cards.PostCard(ctx, r)
	if err != nil {
		log.ErrorContext(ctx, "post approval card", "err", err)
		// The request cannot be approved without its card: close it.
		closed := decision{want: hbrbot.RequestCancelled, at: in.now()}
		if _, _, err := changeRequest(context.WithoutCancel(ctx), in.store, r.ID, func(r hbrbot.Request) (hbrbot.RequestChange, bool) {
			return decide(r, closed)
		}); err != nil {
			log.WarnContext(ctx, "close the request without a card; it expires unseen", "err", err)
		}
		return Notice{Kind: NoticeCardFailed, Reason: slackReason(err)}
	}
	if err := in.store.SetCardTS(ctx, r.ID, ts); err != nil {
		// A click carries the card's ts too, so the request still works.
		log.WarnContext(ctx, "record card ts", "err", err)
	}
	in.audit.record(ctx, hbrbot.AuditRecord{Event: hbrbot.AuditRequestPosted, RequestID: r.ID, Actor: "hbrbot",
		Channel: r.ChannelID, Fields: map[string]string{"card_ts": ts}})
	requestWork{Intake: in}.lookUpLater(ctx, r)
	return Notice{}
}

func crossAccount(spec hbrbot.UpgradeSpec) string {
	if spec.CrossAccount == nil {
		return ""
	}
	return fmt.Sprintf("%d/%s", spec.CrossAccount.UserID, spec.CrossAccount.RoleName)
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

// Click decides a request, once, whoever clicks how often on whichever
// replica; or, for Retry, opens a new request for a job's failures.
func (in *Intake) Click(ctx context.Context, c Click) Notice {
	if n, first := in.firstDelivery(ctx, c.EnvelopeID); !first {
		return n
	}
	return in.decideClick(ctx, c)
}

// decideClick is Click once the envelope is known to be new.
func (in *Intake) decideClick(ctx context.Context, c Click) Notice {
	if c.Action == ActRetry {
		return in.retry(ctx, c)
	}
	sctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	log := in.log.With("request", c.RequestID, "user", c.UserID)
	r, err := in.store.Request(sctx, c.RequestID)
	if errors.Is(err, hbrbot.ErrNotFound) {
		return Notice{Kind: NoticeUnknownRequest}
	}
	if err != nil {
		log.ErrorContext(ctx, "read request", "err", err)
		return Notice{Kind: NoticeUnavailable}
	}
	if r.State != hbrbot.RequestPending {
		in.scheduleCardSync(ctx, r.ID) // a crash may have left its buttons
		return Notice{Kind: NoticeAlreadyDecided, Request: r}
	}
	if n, ok := in.mayDecide(ctx, c, r); !ok {
		return n
	}
	want := hbrbot.RequestApproved
	if c.Action == ActCancel {
		want = hbrbot.RequestCancelled
	}
	d := decision{want: want, by: c.UserID, cardTS: c.MessageTS, at: in.now()}
	dctx, cancel := context.WithTimeout(ctx, storeTimeout) // the group lookup may have used up sctx
	defer cancel()
	r, changed, err := changeRequest(dctx, in.store, r.ID, func(r hbrbot.Request) (hbrbot.RequestChange, bool) { return decide(r, d) })
	if errors.Is(err, hbrbot.ErrNotFound) {
		return Notice{Kind: NoticeUnknownRequest}
	}
	if err != nil {
		log.ErrorContext(ctx, "decide", "err", err)
		return Notice{Kind: NoticeUnavailable}
	}
	log.InfoContext(ctx, "click", "action", c.Action, "state", r.State, "changed", changed)
	if changed && r.CardTS != "" {
		// Show the decision now rather than behind queued job work; the
		// scheduled card sync (from the decision) redraws it in any case.
		if err := in.cards.UpdateCard(ctx, r, nil); err != nil {
			log.WarnContext(ctx, "update card; the scheduled sync will", "err", err)
		}
	}
	in.kick()
	return in.clicked(ctx, c, r, changed)
}

// mayDecide checks the clicker against the channel's rules; a notice of
// the refusal when they may not.
func (in *Intake) mayDecide(ctx context.Context, c Click, r hbrbot.Request) (Notice, bool) {
	refuse := func(ref *policy.Refusal) (Notice, bool) {
		in.obs.Click("refused")
		in.audit.record(ctx, hbrbot.AuditRecord{Event: hbrbot.AuditClickRefused, RequestID: c.RequestID, Actor: c.UserID,
			Channel: c.ChannelID, Fields: map[string]string{"action": c.Action.String(), "rule": string(ref.Rule), "reason": ref.Error()}})
		return Notice{Kind: NoticeRefused, Act: c.Action, Refusal: ref}, false
	}
	// A click is bound to its card: the same channel, the same message.
	if c.ChannelID != r.ChannelID || (r.CardTS != "" && c.MessageTS != r.CardTS) {
		return refuse(&policy.Refusal{Rule: policy.RuleCard})
	}
	rules, ok := in.rulesFor(r.ChannelID)
	if !ok {
		return refuse(&policy.Refusal{Rule: policy.RuleChannels})
	}
	if c.SharedChannel && !in.rules.Load().Listed(r.ChannelID) {
		return refuse(&policy.Refusal{Rule: policy.RuleSharedChannel})
	}
	ownCancel := c.Action == ActCancel && c.UserID == r.RequesterID
	if c.Guest && !ownCancel && !slices.Contains(rules.Approvers, c.UserID) {
		return refuse(&policy.Refusal{Rule: policy.RuleGuests})
	}
	approver, err := policy.Member(ctx, c.UserID, rules.Approvers, in.cards)
	if err != nil {
		in.log.ErrorContext(ctx, "resolve approvers", "request", r.ID, "err", err)
		return refuse(&policy.Refusal{Rule: policy.RuleApprovers, LookupFailed: true})
	}
	switch {
	case c.Action == ActApprove && c.UserID == r.RequesterID && !rules.AllowSelfApproval:
		return refuse(&policy.Refusal{Rule: policy.RuleSelfApproval})
	case c.Action == ActApprove && !approver:
		return refuse(&policy.Refusal{Rule: policy.RuleApprovers})
	case c.Action == ActCancel && c.UserID != r.RequesterID && !approver:
		return refuse(&policy.Refusal{Rule: policy.RuleCancel})
	}
	return Notice{}, true
}

// clicked counts and records a click that reached the store, and says
// what the clicker is told.
func (in *Intake) clicked(ctx context.Context, c Click, r hbrbot.Request, changed bool) Notice {
	rec := hbrbot.AuditRecord{RequestID: r.ID, Actor: c.UserID, Channel: r.ChannelID,
		Fields: map[string]string{"action": c.Action.String(), "state": string(r.State)}}
	switch {
	case r.State == hbrbot.RequestPending && changed:
		in.obs.Click("approval_recorded")
		rec.Event = hbrbot.AuditApprovalAdded
		rec.Fields["approvals"] = fmt.Sprintf("%d/%d", len(r.Approvals), r.RequiredApprovals)
		in.audit.record(ctx, rec)
		return Notice{Kind: NoticeApprovalRecorded, Request: r}
	case r.State == hbrbot.RequestPending:
		in.obs.Click("duplicate")
		return Notice{Kind: NoticeAlreadyApproved, Request: r}
	case changed && r.State != hbrbot.RequestExpired:
		in.obs.Click(string(r.State))
		rec.Event = hbrbot.AuditDecided
		rec.Fields["approvals"] = strings.Join(r.Approvals, ",")
		in.audit.record(ctx, rec)
		return Notice{}
	}
	in.obs.Click("already_decided")
	return Notice{Kind: NoticeAlreadyDecided, Request: r}
}

// retry turns the IDs of a job that did not end well into a new request by
// the clicker, which needs approval like any other.
func (in *Intake) retry(ctx context.Context, c Click) Notice {
	st, err := in.store.BatchStatus(ctx, c.BatchKey)
	var spec hbrbot.BatchSpec
	if err == nil {
		spec, err = in.store.BatchSpec(ctx, c.BatchKey)
	}
	if errors.Is(err, hbrbot.ErrNotFound) {
		return Notice{Kind: NoticeUnknownJob}
	}
	if err != nil {
		return Notice{Kind: NoticeUnavailable}
	}
	b := hbrbot.Batch{BatchStatus: st, BatchSpec: spec}
	// Bound to its report: the job's channel and thread; and only once the
	// job has ended and its report been posted.
	if c.ChannelID != b.ChannelID || c.ThreadTS != b.ThreadTS {
		return Notice{Kind: NoticeRefused, Act: ActRetry, Refusal: &policy.Refusal{Rule: policy.RuleCard}}
	}
	// The button is on the final report, so a click on it is proof the
	// report is up even while its posting is still being marked posted.
	if b.State != hbrbot.BatchFinished || b.Reported[hbrbot.ReportFinal] == "" {
		return Notice{Kind: NoticeRefused, Act: ActRetry, Refusal: &policy.Refusal{Rule: policy.RuleRetry}}
	}
	retry := hbrbot.UpgradeSpec{Targets: hbrbot.RetryTargets(b), Region: b.Region, CrossAccount: b.CrossAccount, DryRun: b.DryRun}
	if retry.Len() == 0 {
		return Notice{Kind: NoticeNothingToRetry}
	}
	inv := Invocation{EnvelopeID: c.EnvelopeID, ChannelID: b.ChannelID, UserID: c.UserID, ResponseURL: c.ResponseURL,
		Text: "retry of " + b.Key(), Guest: c.Guest, SharedChannel: c.SharedChannel}
	return in.request(ctx, inv, retry, ActRetry)
}

// limits are the flood limits of Settings, kept all replicas together by
// gate.
type limits struct {
	gate     Floodgate
	settings Settings
	now      func() time.Time
}

// check checks inv against the flood limits: commands a minute per
// user and per channel, and requests awaiting approval per user.
func (l limits) check(ctx context.Context, inv Invocation) (*policy.Refusal, error) {
	s := l.settings
	if l.gate == nil {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	for _, b := range []struct {
		rule  policy.Rule
		name  string
		limit int
	}{{policy.RuleUserCommands, "user:" + inv.UserID, s.UserCommands}, {policy.RuleChannelCommands, "channel:" + inv.ChannelID, s.ChannelCommands}} {
		if b.limit <= 0 {
			continue
		}
		ok, wait, err := l.gate.Allow(ctx, b.name, b.limit)
		if err != nil {
			return nil, err
		}
		if !ok {
			return &policy.Refusal{Rule: b.rule, Limit: b.limit, RetryAfter: max(wait, time.Second)}, nil
		}
	}
	if s.UserPending <= 0 {
		return nil, nil
	}
	n, err := l.gate.Pending(ctx, inv.UserID, l.now())
	if err != nil {
		return nil, err
	}
	if n >= s.UserPending {
		return &policy.Refusal{Rule: policy.RulePending, Limit: s.UserPending}, nil
	}
	return nil, nil
}

// refusalLog lets refusal records through at refusalsPerMinute, and counts
// the rest.
type refusalLog struct {
	mu      sync.Mutex
	window  time.Time
	n       int
	dropped int
}

const refusalsPerMinute = 30

// take says whether a refusal may be recorded now, and how many were not
// since the last one that was.
func (l *refusalLog) take(now time.Time) (dropped int, ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.window) >= time.Minute {
		l.window, l.n = now, 0
	}
	if l.n >= refusalsPerMinute {
		l.dropped++
		return 0, false
	}
	l.n++
	dropped, l.dropped = l.dropped, 0
	return dropped, true
}

// scheduleCardSync brings a decided card up to date later.
func (in *Intake) scheduleCardSync(ctx context.Context, requestID string) {
	if err := in.store.Schedule(ctx, hbrbot.Work{Kind: hbrbot.WorkCardSync, ID: requestID}, in.now()); err != nil {
		in.log.WarnContext(ctx, "schedule card sync", "request", requestID, "err", err)
	}
	in.kick()
}

// changeRequest stores the change decide works out from request id as it
// stands, working it out again when another replica changed the request
// in between. It returns the request as it stands after, and whether this
// call changed it.
func changeRequest(ctx context.Context, store intakeStore, id string, decide func(hbrbot.Request) (hbrbot.RequestChange, bool)) (hbrbot.Request, bool, error) {
	const attempts = 10 // each conflict is another approver's click landing first
	for range attempts {
		r, err := store.Request(ctx, id)
		if err != nil {
			return r, false, err
		}
		ch, ok := decide(r)
		if !ok {
			return r, false, nil
		}
		err = store.ChangeRequest(ctx, id, ch)
		if errors.Is(err, hbrbot.ErrConflict) {
			continue
		}
		if err != nil {
			return r, false, err
		}
		return applied(r, ch), true, nil
	}
	return hbrbot.Request{}, false, fmt.Errorf("request %s: %d conflicting changes in a row", id, attempts)
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
