package upgrade

// The test doubles every test of the package uses: a controllable clock,
// recording fakes of Chat and HBR, a Store wrapper that can be told to
// fail a call, and env, which wires them with a real redisstore.Store on an
// in-process miniredis through New.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/hbrbot/hbrbot"
	"github.com/hbrbot/hbrbot/policy"
	"github.com/hbrbot/hbrbot/redisstore"
)

// ---- clock ----

// testBase is the fake clock's start: near the wall clock, because Redis
// TTLs and the context deadlines derived from leases count from it, an hour
// ahead so that those deadlines lie in the future, and in whole seconds so
// that it survives JSON and millisecond scores unchanged. No test asserts
// anything about the wall clock.
func testBase() time.Time { return time.Now().Add(time.Hour).Truncate(time.Second) }

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock on by d and returns the new time.
func (c *fakeClock) Advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
	return c.t
}

// ---- chat ----

// chatCall is one call the workflow made to Slack.
type chatCall struct {
	Method   string
	Request  hbrbot.Request
	Batch    hbrbot.Batch
	Batches  []hbrbot.Batch
	Statuses []hbrbot.BatchStatus
	Kind     hbrbot.ReportKind
	Key      string
	Channel  string
	ThreadTS string
}

// fakeChat records every call; fail makes a method fail, members answers
// InGroup, found answers FindReply, during runs inside each call, and
// events receives every call (never blocking the caller).
type fakeChat struct {
	mu       sync.Mutex
	log      []chatCall
	fail     map[string]error
	members  map[string][]string // user group → its users
	groupErr error
	found    map[string]string // key + "/" + kind → ts
	during   func(chatCall)
	events   chan chatCall
}

func newFakeChat() *fakeChat {
	return &fakeChat{fail: map[string]error{}, members: map[string][]string{}, found: map[string]string{},
		events: make(chan chatCall, 1024)}
}

func (c *fakeChat) record(call chatCall) (int, error) {
	c.mu.Lock()
	c.log = append(c.log, call)
	n, err, during := len(c.log), c.fail[call.Method], c.during
	c.mu.Unlock()
	if during != nil {
		during(call)
	}
	select {
	case c.events <- call:
	default:
	}
	return n, err
}

func (c *fakeChat) failOn(method string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err == nil {
		delete(c.fail, method)
		return
	}
	c.fail[method] = err
}

func (c *fakeChat) setFound(key string, kind hbrbot.ReportKind, ts string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.found[key+"/"+string(kind)] = ts
}

// reset forgets the calls made so far.
func (c *fakeChat) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.log = nil
}

// calls lists the calls of method (all calls when method is "").
func (c *fakeChat) calls(method string) []chatCall {
	return callsOf(&c.mu, &c.log, func(call chatCall) bool { return method == "" || call.Method == method })
}

// callsOf lists the entries of the log mu guards that keep keeps.
func callsOf[T any](mu *sync.Mutex, log *[]T, keep func(T) bool) []T {
	mu.Lock()
	defer mu.Unlock()
	var out []T
	for _, c := range *log {
		if keep(c) {
			out = append(out, c)
		}
	}
	return out
}

// reports lists the kinds of the reports posted, in order.
func (c *fakeChat) reports() []hbrbot.ReportKind {
	var kinds []hbrbot.ReportKind
	for _, call := range c.calls("PostReport") {
		kinds = append(kinds, call.Kind)
	}
	return kinds
}

// post records a call that posts a message, and answers with its ts:
// series, then the call's number.
func (c *fakeChat) post(call chatCall, series int) (string, error) {
	n, err := c.record(call)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("%d.%06d", series, n), nil
}

func (c *fakeChat) PostCard(_ context.Context, r hbrbot.Request) (string, error) {
	return c.post(chatCall{Method: "PostCard", Request: r}, 1700000000)
}

func (c *fakeChat) UpdateCard(_ context.Context, r hbrbot.Request, batches []hbrbot.Batch) error {
	_, err := c.record(chatCall{Method: "UpdateCard", Request: r, Batches: batches})
	return err
}

func (c *fakeChat) InGroup(_ context.Context, group, user string) (bool, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.groupErr != nil {
		return false, c.groupErr
	}
	return slices.Contains(c.members[group], user), nil
}

func (c *fakeChat) PostReport(_ context.Context, b hbrbot.Batch, kind hbrbot.ReportKind) error {
	_, err := c.record(chatCall{Method: "PostReport", Batch: b, Kind: kind, Key: b.Key()})
	return err
}

func (c *fakeChat) UploadTable(_ context.Context, b hbrbot.Batch) error {
	_, err := c.record(chatCall{Method: "UploadTable", Batch: b, Key: b.Key()})
	return err
}

// NeedsTable: a job of more than 40 IDs comes with a table.
func (c *fakeChat) NeedsTable(b hbrbot.Batch) bool { return b.Targets.Len() > 40 }

func (c *fakeChat) FindReply(_ context.Context, channel, threadTS, key string, kind hbrbot.ReportKind) (string, bool, error) {
	if _, err := c.record(chatCall{Method: "FindReply", Channel: channel, ThreadTS: threadTS, Key: key, Kind: kind}); err != nil {
		return "", false, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	ts, ok := c.found[key+"/"+string(kind)]
	return ts, ok, nil
}

func (c *fakeChat) FindTable(_ context.Context, b hbrbot.Batch) (bool, error) {
	_, err := c.record(chatCall{Method: "FindTable", Key: b.Key()})
	return false, err
}

func (c *fakeChat) PostLost(_ context.Context, idx hbrbot.BatchIndex) error {
	_, err := c.record(chatCall{Method: "PostLost", Key: idx.Key()})
	return err
}

func (c *fakeChat) PostProgress(_ context.Context, r hbrbot.Request, batches []hbrbot.BatchStatus) (string, error) {
	return c.post(chatCall{Method: "PostProgress", Request: r, Statuses: batches}, 1700000001)
}

func (c *fakeChat) UpdateProgress(_ context.Context, r hbrbot.Request, batches []hbrbot.BatchStatus) error {
	_, err := c.record(chatCall{Method: "UpdateProgress", Request: r, Statuses: batches})
	return err
}

// ---- HBR ----

type hbrCall struct {
	Method  string
	Region  string
	Targets hbrbot.Targets
	Cross   *hbrbot.CrossAccount
	TaskID  string
}

type submitAnswer struct {
	sub hbrbot.Submission
	err error
}

type taskAnswer struct {
	task hbrbot.Task
	err  error
}

// fakeHBR answers from scripts and records every call. submits answer
// UpgradeBackupClients in order (once used up, each call starts a new
// task); tasks answer DescribeTask in order, the last one repeating (none:
// a task still at 0%); clients answers DescribeBackupClients (nil: every
// ID named runs 1.0.0 of 2.0.0, and a listing of the region gives fleet).
type fakeHBR struct {
	mu      sync.Mutex
	log     []hbrCall
	submits []submitAnswer
	tasks   []taskAnswer
	clients func(t hbrbot.Targets) ([]hbrbot.ClientInfo, error)
	fleet   []hbrbot.ClientInfo
	// onSubmit runs inside UpgradeBackupClients.
	onSubmit func(ctx context.Context)
}

func (h *fakeHBR) record(c hbrCall) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.log = append(h.log, c)
}

func (h *fakeHBR) calls(method string) []hbrCall {
	return callsOf(&h.mu, &h.log, func(c hbrCall) bool { return method == "" || c.Method == method })
}

func (h *fakeHBR) setTasks(answers ...taskAnswer) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.tasks = answers
}

func (h *fakeHBR) setClients(f func(t hbrbot.Targets) ([]hbrbot.ClientInfo, error)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.clients = f
}

func (h *fakeHBR) UpgradeBackupClients(ctx context.Context, region string, t hbrbot.Targets, cross *hbrbot.CrossAccount) (hbrbot.Submission, error) {
	h.record(hbrCall{Method: "UpgradeBackupClients", Region: region, Targets: t, Cross: cross})
	if h.onSubmit != nil {
		h.onSubmit(ctx)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.submits) > 0 {
		a := h.submits[0]
		h.submits = h.submits[1:]
		return a.sub, a.err
	}
	n := len(h.log)
	return hbrbot.Submission{TaskID: fmt.Sprintf("t-%d", n), RequestID: fmt.Sprintf("hbr-req-%d", n)}, nil
}

func (h *fakeHBR) DescribeTask(_ context.Context, region, taskID string) (hbrbot.Task, error) {
	h.record(hbrCall{Method: "DescribeTask", Region: region, TaskID: taskID})
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.tasks) == 0 {
		return hbrbot.Task{ID: taskID, Description: "created"}, nil
	}
	a := h.tasks[0]
	if len(h.tasks) > 1 {
		h.tasks = h.tasks[1:]
	}
	a.task.ID = taskID
	return a.task, a.err
}

func (h *fakeHBR) DescribeBackupClients(_ context.Context, region string, t hbrbot.Targets, cross *hbrbot.CrossAccount) ([]hbrbot.ClientInfo, error) {
	h.record(hbrCall{Method: "DescribeBackupClients", Region: region, Targets: t, Cross: cross})
	h.mu.Lock()
	f, fleet := h.clients, h.fleet
	h.mu.Unlock()
	if f != nil {
		return f(t)
	}
	if t.Len() == 0 {
		return fleet, nil
	}
	return clientsAt("1.0.0", "2.0.0", t.All()...), nil
}

// clientsAt is what DescribeBackupClients says of ids running version of
// latest.
func clientsAt(version, latest string, ids ...string) []hbrbot.ClientInfo {
	var out []hbrbot.ClientInfo
	for _, id := range ids {
		c := hbrbot.ClientInfo{Version: version, MaxVersion: latest, Status: "ACTIVATED"}
		if strings.HasPrefix(id, "c-") {
			c.ClientID = id
		} else {
			c.InstanceID, c.ClientID = id, "c-of-"+id
		}
		out = append(out, c)
	}
	return out
}

// task is a DescribeTask answer.
func task(description string, progress int, result string) taskAnswer {
	return taskAnswer{task: hbrbot.Task{Description: description, Progress: progress, Result: result, RequestID: "hbr-dt"}}
}

// ---- store ----

// testStore is the real store, with calls that can be told to fail and a
// channel told of every Reschedule.
type testStore struct {
	*redisstore.Store
	mu          sync.Mutex
	fail        map[string]error
	rescheduled chan hbrbot.Next
	// beforeChange runs once, before the next ChangeRequest.
	beforeChange func()
}

func (s *testStore) failOn(method string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.fail[method] = err
}

func (s *testStore) failing(method string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fail[method]
}

func (s *testStore) CreateRequest(ctx context.Context, r hbrbot.Request) error {
	if err := s.failing("CreateRequest"); err != nil {
		return err
	}
	return s.Store.CreateRequest(ctx, r)
}

// SaveBatchDurable fails when told to, with the write made (as Redis
// would: written, not acknowledged).
func (s *testStore) SaveBatchDurable(ctx context.Context, l hbrbot.Lease, b hbrbot.BatchStatus, next hbrbot.Next) (hbrbot.Lease, error) {
	after, err := s.Store.SaveBatch(ctx, l, b, next)
	if err == nil {
		err = s.failing("SaveBatchDurable")
	}
	return after, err
}

func (s *testStore) SetCardTS(ctx context.Context, id, ts string) error {
	if err := s.failing("SetCardTS"); err != nil {
		return err
	}
	return s.Store.SetCardTS(ctx, id, ts)
}

func (s *testStore) Request(ctx context.Context, id string) (hbrbot.Request, error) {
	if err := s.failing("Request"); err != nil {
		return hbrbot.Request{}, err
	}
	return s.Store.Request(ctx, id)
}

func (s *testStore) ChangeRequest(ctx context.Context, id string, ch hbrbot.RequestChange) error {
	if err := s.failing("ChangeRequest"); err != nil {
		return err
	}
	s.mu.Lock()
	before := s.beforeChange
	s.beforeChange = nil
	s.mu.Unlock()
	if before != nil {
		before()
	}
	return s.Store.ChangeRequest(ctx, id, ch)
}

func (s *testStore) BatchStatuses(ctx context.Context, id string) ([]hbrbot.BatchStatus, error) {
	if err := s.failing("BatchStatuses"); err != nil {
		return nil, err
	}
	return s.Store.BatchStatuses(ctx, id)
}

func (s *testStore) Reschedule(ctx context.Context, l hbrbot.Lease, next hbrbot.Next) error {
	if err := ctx.Err(); err != nil {
		// As go-redis does when it must wait for a pooled connection (it
		// checks a context there only).
		return err
	}
	err := s.Store.Reschedule(ctx, l, next)
	select {
	case s.rescheduled <- next:
	default:
	}
	return err
}

// ---- observer ----

type fakeObserver struct {
	mu       sync.Mutex
	clicks   []string
	refused  []string
	finished []string
	redis    chan struct{}
}

func (o *fakeObserver) StateLost(string) {}

func (o *fakeObserver) CommandRefused(rule string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.refused = append(o.refused, rule)
}

func (o *fakeObserver) Click(result string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.clicks = append(o.clicks, result)
}

func (o *fakeObserver) JobFinished(final string, _, _ time.Duration) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.finished = append(o.finished, final)
}

func (o *fakeObserver) RedisError() {
	select {
	case o.redis <- struct{}{}:
	default:
	}
}

func (o *fakeObserver) WorkStarted() {}
func (o *fakeObserver) WorkDone()    {}

func (o *fakeObserver) lastClick() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	if len(o.clicks) == 0 {
		return ""
	}
	return o.clicks[len(o.clicks)-1]
}

// ---- env ----

const (
	channel   = "C1"
	closedCh  = "CX" // no rules: refused
	region    = "cn-hangzhou"
	requester = "UREQ"
	approverA = "UAPP1"
	approverB = "UAPP2"
	approverC = "UAPP3"
	stranger  = "USTRANGER"
)

// env is the whole workflow wired through New on a miniredis.
type env struct {
	t      *testing.T
	ctx    context.Context
	mini   *miniredis.Miniredis
	rdb    *redis.Client
	store  *testStore
	hbr    *fakeHBR
	chat   *fakeChat
	clock  *fakeClock
	obs    *fakeObserver
	policy Settings
	opts   Options
	svc    *Service
	n      int // envelopes handed out
}

// tweak changes the policy or options before New.
type tweak func(*Settings, *Options)

// withRules changes the test channel's rules.
func withRules(f func(*policy.Rules)) tweak {
	return func(p *Settings, _ *Options) {
		r := p.Rules.Channels[channel]
		f(&r)
		p.Rules.Channels[channel] = r
	}
}

func withOptions(f func(*Options)) tweak { return func(_ *Settings, o *Options) { f(o) } }

func newEnv(t *testing.T, tweaks ...tweak) *env {
	t.Helper()
	m := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr(), MaxRetries: -1, DialerRetries: 1, DialerRetryTimeout: time.Millisecond})
	t.Cleanup(func() { rdb.Close() })
	e := &env{t: t, ctx: t.Context(), mini: m, rdb: rdb, hbr: &fakeHBR{}, chat: newFakeChat(),
		clock: &fakeClock{t: testBase()}, obs: &fakeObserver{redis: make(chan struct{}, 1)}}
	e.store = &testStore{Store: redisstore.New(rdb), fail: map[string]error{}, rescheduled: make(chan hbrbot.Next, 64)}
	e.policy = Settings{DefaultRegion: region, RequestTTL: time.Hour, Rules: policy.Set{Channels: map[string]policy.Rules{
		channel: {Approvers: []string{approverA, approverB, approverC}, RequiredApprovals: 1},
	}}}
	e.opts = Options{PollInterval: 10 * time.Second, TaskTimeout: 10 * time.Minute, Now: e.clock.Now, Observer: e.obs}
	for _, f := range tweaks {
		f(&e.policy, &e.opts)
	}
	e.svc = New(e.store, redisstore.NewFloodgate(e.rdb), e.hbr, e.chat, e.policy, e.opts)
	return e
}

func (e *env) envelope() string {
	e.n++
	return fmt.Sprintf("env-%d", e.n)
}

func (e *env) invocation(user, text string) Invocation {
	return Invocation{EnvelopeID: e.envelope(), TeamID: "T1", ChannelID: channel, UserID: user, Text: text}
}

// targetsOf sorts ids into instance and client IDs.
func targetsOf(ids ...string) hbrbot.Targets {
	var t hbrbot.Targets
	for _, id := range ids {
		if strings.HasPrefix(id, "c-") {
			t.ClientIDs = append(t.ClientIDs, id)
		} else {
			t.InstanceIDs = append(t.InstanceIDs, id)
		}
	}
	return t
}

// instanceIDs are n instance IDs, distinct per tag.
func instanceIDs(tag string, n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("i-%s%04d", tag, i)
	}
	return ids
}

// ask runs an upgrade command by requester for spec.
func (e *env) ask(spec hbrbot.UpgradeSpec) Notice {
	e.t.Helper()
	if spec.Region == "" {
		spec.Region = region
	}
	return e.svc.Request(e.ctx, e.invocation(requester, "upgrade"), spec)
}

// newRequest asks for ids and returns the request the card was posted for,
// as stored.
func (e *env) newRequest(ids ...string) hbrbot.Request {
	e.t.Helper()
	if n := e.ask(hbrbot.UpgradeSpec{Targets: targetsOf(ids...)}); n.Kind != NoticeNone {
		e.t.Fatalf("request: notice %+v, want none", n)
	}
	return e.lastCardRequest()
}

// lastCardRequest is the request of the last card posted, as stored.
func (e *env) lastCardRequest() hbrbot.Request {
	e.t.Helper()
	cards := e.chat.calls("PostCard")
	if len(cards) == 0 {
		e.t.Fatal("no card posted")
	}
	return e.read(cards[len(cards)-1].Request.ID)
}

// click presses a button on the request's card, as Slack sends it: from
// the card's channel and message.
func (e *env) click(user string, act Act, requestID string) Notice {
	ts := "1700000000.999999" // a card whose ts the request has not recorded
	if r, err := e.store.Store.Request(e.ctx, requestID); err == nil && r.CardTS != "" {
		ts = r.CardTS
	}
	return e.svc.Click(e.ctx, Click{EnvelopeID: e.envelope(), ChannelID: channel, MessageTS: ts,
		UserID: user, Action: act, RequestID: requestID})
}

// approved is a request for ids approved by approverA.
func (e *env) approved(ids ...string) hbrbot.Request {
	e.t.Helper()
	r := e.newRequest(ids...)
	if n := e.click(approverA, ActApprove, r.ID); n.Kind != NoticeNone {
		e.t.Fatalf("approve: notice %+v, want none", n)
	}
	return e.read(r.ID)
}

func (e *env) read(id string) hbrbot.Request {
	e.t.Helper()
	r, err := e.store.Store.Request(e.ctx, id)
	if err != nil {
		e.t.Fatalf("read request %s: %v", id, err)
	}
	return r
}

func (e *env) batch(key string) hbrbot.Batch {
	e.t.Helper()
	st, err := e.store.BatchStatus(e.ctx, key)
	if err != nil {
		e.t.Fatalf("read batch %s: %v", key, err)
	}
	sp, err := e.store.BatchSpec(e.ctx, key)
	if err != nil {
		e.t.Fatalf("read batch spec %s: %v", key, err)
	}
	return hbrbot.Batch{BatchStatus: st, BatchSpec: sp}
}

// seed stores a pending request for ids and approves it with batches made
// as the approval makes them, changed by each change, each due at once.
func (e *env) seed(ids []string, changes ...func(*hbrbot.Batch)) (hbrbot.Request, []hbrbot.Batch) {
	e.t.Helper()
	now := e.clock.Now()
	r := hbrbot.Request{ID: newID(), TeamID: "T1", ChannelID: channel, RequesterID: requester, CardTS: "1700000000.000001",
		Spec: hbrbot.UpgradeSpec{Targets: targetsOf(ids...), Region: region}, State: hbrbot.RequestPending,
		CreatedAt: now, ExpiresAt: now.Add(time.Hour), RequiredApprovals: 1, Preflight: clientsAt("1.0.0", "2.0.0", ids...)}
	if err := e.store.CreateRequest(e.ctx, r); err != nil {
		e.t.Fatal(err)
	}
	batches := batchesOf(r, "")
	ch := hbrbot.RequestChange{Expect: hbrbot.RequestVersion{State: hbrbot.RequestPending}, State: hbrbot.RequestApproved,
		Approvals: []string{approverA}, DecidedBy: approverA, DecidedAt: now,
		Unschedule: []hbrbot.Work{{Kind: hbrbot.WorkExpiry, ID: r.ID}}}
	for i := range batches {
		for _, f := range changes {
			f(&batches[i])
		}
		ch.Schedule = append(ch.Schedule, hbrbot.Due{Work: batchWork(batches[i].Key()), At: now})
	}
	ch.Batches = batches
	if err := e.store.ChangeRequest(e.ctx, r.ID, ch); err != nil {
		e.t.Fatal(err)
	}
	return e.read(r.ID), batches
}

func batchWork(key string) hbrbot.Work { return hbrbot.Work{Kind: hbrbot.WorkBatch, ID: key} }

// due says when w is due (or its lease ends); false when not scheduled.
func (e *env) due(w hbrbot.Work) (time.Time, bool) {
	e.t.Helper()
	score, err := e.rdb.ZScore(e.ctx, redisstore.Prefix+"due", string(w.Kind)+":"+w.ID).Result()
	if errors.Is(err, redis.Nil) {
		return time.Time{}, false
	}
	if err != nil {
		e.t.Fatal(err)
	}
	return time.UnixMilli(int64(score)), true
}

// wantDue fails unless w is due at at.
func (e *env) wantDue(w hbrbot.Work, at time.Time) {
	e.t.Helper()
	got, ok := e.due(w)
	if !ok {
		e.t.Fatalf("%s %s not scheduled, want due at %v", w.Kind, w.ID, at)
	}
	if !got.Equal(at) {
		e.t.Fatalf("%s %s due at %v, want %v (%v off)", w.Kind, w.ID, got, at, got.Sub(at))
	}
}

// wantUnscheduled fails if w is scheduled.
func (e *env) wantUnscheduled(w hbrbot.Work) {
	e.t.Helper()
	if at, ok := e.due(w); ok {
		e.t.Fatalf("%s %s still scheduled, at %v", w.Kind, w.ID, at)
	}
}

// claim claims the due work and returns w's lease, handing the rest
// back due now.
func (e *env) claim(w hbrbot.Work) hbrbot.Lease {
	e.t.Helper()
	leases, err := e.store.ClaimDue(e.ctx, e.clock.Now(), 1000, time.Minute)
	if err != nil {
		e.t.Fatal(err)
	}
	var mine *hbrbot.Lease
	for _, l := range leases {
		if l.Work == w {
			mine = &l
			continue
		}
		if err := e.store.Store.Reschedule(e.ctx, l, hbrbot.DueAt(e.clock.Now())); err != nil {
			e.t.Fatal(err)
		}
	}
	if mine == nil {
		e.t.Fatalf("%s %s is not due", w.Kind, w.ID)
	}
	return *mine
}

// handle runs w's handler, as New wired it, on a fresh claim of w.
func (e *env) handle(w hbrbot.Work) error {
	e.t.Helper()
	return e.svc.Scheduler.handlers[w.Kind](e.ctx, e.ctx, e.claim(w))
}

// schedule makes each work item due now.
func (e *env) schedule(works ...hbrbot.Work) {
	e.t.Helper()
	for _, w := range works {
		if err := e.store.Schedule(e.ctx, w, e.clock.Now()); err != nil {
			e.t.Fatal(err)
		}
	}
	e.svc.Scheduler.Kick()
}

// runNow makes w due now and runs its handler.
func (e *env) runNow(w hbrbot.Work) error {
	e.t.Helper()
	e.schedule(w)
	return e.handle(w)
}

// runDue claims everything due now and runs each item as the scheduler
// does (a failure is rescheduled); it returns what ran.
func (e *env) runDue() []hbrbot.Work {
	e.t.Helper()
	leases, err := e.store.ClaimDue(e.ctx, e.clock.Now(), 1000, time.Minute)
	if err != nil {
		e.t.Fatal(err)
	}
	var ran []hbrbot.Work
	for _, l := range leases {
		e.svc.Scheduler.run(e.ctx, e.ctx, l)
		ran = append(ran, l.Work)
	}
	return ran
}

// settle runs due work until nothing is due now.
func (e *env) settle() {
	e.t.Helper()
	for range 50 {
		if len(e.runDue()) == 0 {
			return
		}
	}
	e.t.Fatal("work still due after 50 rounds")
}

// audit lists the audit records of event.
func (e *env) audit(event string) []hbrbot.AuditRecord {
	e.t.Helper()
	var out []hbrbot.AuditRecord
	err := e.store.Audit(e.ctx, time.UnixMilli(0), func(r hbrbot.AuditRecord) error {
		if r.Event == event {
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

// wantNotice fails unless n is of kind.
func wantNotice(t *testing.T, n Notice, kind NoticeKind) {
	t.Helper()
	if n.Kind != kind {
		t.Fatalf("notice %+v, want kind %d", n, kind)
	}
}

// wantRefusal fails unless n refuses by rule.
func wantRefusal(t *testing.T, n Notice, rule policy.Rule, lookupFailed bool) {
	t.Helper()
	wantNotice(t, n, NoticeRefused)
	if n.Refusal == nil || n.Refusal.Rule != rule || n.Refusal.LookupFailed != lookupFailed {
		t.Fatalf("refusal %+v, want rule %s (lookup failed %v)", n.Refusal, rule, lookupFailed)
	}
}

// waitFor receives from ch, failing the test if nothing comes: the
// timeout only bounds a test that is already failing.
func waitFor[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
		panic("unreachable")
	}
}
