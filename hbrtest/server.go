// Package hbrtest is a fake Alibaba Cloud Backup (HBR, API 2017-09-08) RPC
// endpoint for tests, in the spirit of net/http/httptest. The real
// alibaba-cloud-sdk-go client talks to it over HTTP on 127.0.0.1:
//
//	s := hbrtest.NewServer()
//	defer s.Close()
//	req := requests.NewCommonRequest()
//	req.Method, req.Scheme, req.Domain = requests.POST, "http", s.Host()
//	req.Product, req.Version, req.ApiName = "hbr", "2017-09-08", "UpgradeBackupClients"
//
// It checks every request like the Alibaba POP gateway does (common
// parameters, AccessKeyId, optional STS token, RPC v1 HMAC-SHA1 signature,
// timestamp window, nonce replay) and implements UpgradeBackupClients,
// DescribeTask and DescribeBackupClients over an in-memory instance registry.
// Jobs advance by a script, one step per DescribeTask call, so tests never
// depend on wall-clock time. Faults (errors, Success:false, hangs) can be
// injected per action and every call is recorded.
//
// Behaviour worth knowing (choices where Alibaba documents nothing are
// marked "fake's choice"):
//   - Parameters may be in the query or the form body; both are signed.
//     A key in both is taken (and signed) with its form value, like the SDK.
//   - Check order: common parameters present, Version (InvalidVersion),
//     Action (404 InvalidAction.NotFound), Format JSON, SignatureMethod
//     HMAC-SHA1, SignatureVersion 1.0, Timestamp format, AccessKeyId (404
//     InvalidAccessKeyId.NotFound), SecurityToken, Signature (400
//     SignatureDoesNotMatch, with Alibaba's "server string to sign is:"
//     message), Timestamp within ±15 min of the real clock, then nonce
//     reuse (400 SignatureNonceUsed). Only authenticated calls consume a
//     nonce or a fault, and only they are answered by the actions.
//   - Gateway errors have no Success field; HBR business errors carry
//     "Success":false. Code is always a JSON string.
//   - UpgradeBackupClients: exactly one InstanceId (or one lone ClientId)
//     failing the pre-check fails the call with that code (400); otherwise
//     InstanceStatuses lists every requested InstanceId, and invalid IDs are
//     left out of the job. Over 100 IDs: 400 InvalidParameter.TooManyIds
//     (fake's choice). A job is created even if no ID is valid.
//   - DescribeTask: unknown TaskId is 400 InvalidTaskId.NotFound (fake's
//     choice). Result is "" until a terminal step, then a JSON array string
//     with one {instanceId, clientId, clientStatus, errorCode} per valid ID.
//     Default clientStatus is ACTIVATED for "completed" and UPGRADE_FAILED
//     for Progress -1, "expired" and "cancelled" (Instance.UpgradeStatus
//     overrides; NotInResult leaves an ID out). The first terminal answer
//     writes the outcome into the registry: Status = clientStatus, and
//     Version = MaxVersion on ACTIVATED unless StaysOld; Instance.EndStatus
//     and EndVersion set them apart from what Result says.
//   - DescribeBackupClients lists registered instances in registration
//     order, minus InstanceNotExists ones; InstanceIds and ClientIds filters
//     are ANDed; unregistered IDs are simply absent. An unregistered ID
//     accepted into an upgrade job is registered then, with the defaults
//     (HBR upgrades only clients it knows), so the look-up after the job
//     lists it. Both filters are declared "in: formData, style: json"
//     (the OpenAPI metadata; the official SDKs send them in the body): in
//     the query they are refused, 400 InvalidParameter (fake's choice: HBR
//     documents only the body).
//   - WithQuota: HBR's flow control, per action and rolling minute,
//     answered 400 Throttling.User beyond (checked after authentication,
//     before injected faults).
package hbrtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
)

// APIVersion is the only Version the fake accepts.
const APIVersion = "2017-09-08"

// Action names.
const (
	ActionUpgradeBackupClients  = "UpgradeBackupClients"
	ActionDescribeTask          = "DescribeTask"
	ActionDescribeBackupClients = "DescribeBackupClients"
)

// Default credentials and version numbers.
const (
	DefaultAccessKeyID   = "testid"
	DefaultSecret        = "testsecret"
	DefaultVersion       = "2.4.0"
	DefaultMaxVersion    = "2.5.1"
	TimestampWindow      = 15 * time.Minute // Alibaba's allowed clock skew
	MaxIDsPerUpgrade     = 100
	MaxDescribePageSize  = 99
	defaultDescribePage  = 10
	upgradeTaskName      = "UpgradeBackupClientsTask"
	timestampLayout      = "2006-01-02T15:04:05Z"
	maxRequestBodyLength = 10 << 20
)

// Option configures NewServer.
type Option func(*config)

type config struct {
	accessKeyID   string
	secret        string
	securityToken string // "" = the server accepts no STS token
	quota         int    // calls per action per rolling minute; 0 = none
}

// WithCredentials sets the only AccessKey pair the server accepts
// (default "testid"/"testsecret").
func WithCredentials(accessKeyID, secret string) Option {
	return func(c *config) { c.accessKeyID, c.secret = accessKeyID, secret }
}

// WithSecurityToken makes the server expect STS credentials: every request
// must carry SecurityToken == tok. Without this option a request carrying a
// SecurityToken is rejected, as Alibaba rejects a token that does not belong
// to the AccessKeyId.
func WithSecurityToken(tok string) Option {
	return func(c *config) { c.securityToken = tok }
}

// Instance is the registry entry for one ECS instance and its HBR client.
// Zero values take the defaults noted on each field (see SetInstance).
type Instance struct {
	// Invalid is the UpgradeBackupClients pre-check result: "" (valid),
	// InstanceNotExists, InstanceNotRunning or CloudAssistNotRunningOnInstance.
	// InstanceNotExists instances are also hidden from DescribeBackupClients.
	Invalid string
	// ClientID defaults to "c-" + the part of the instance ID after "i-".
	ClientID string
	// UpgradeStatus is the clientStatus reported in the DescribeTask Result
	// once the job is terminal. Default: ACTIVATED if the terminal step is
	// "completed" with Progress >= 0, otherwise UPGRADE_FAILED.
	UpgradeStatus string
	// ErrorCode is the errorCode reported in the DescribeTask Result.
	ErrorCode string

	Name       string // InstanceName; default "ecs-" + suffix
	Version    string // ClientVersion; default "2.4.0"
	MaxVersion string // MaxClientVersion; default "2.5.1"
	Status     string // client Status; default "ACTIVATED"
	OsType     string // default "linux"
	// StaysOld keeps Version unchanged even after a job reports ACTIVATED,
	// to test that callers verify upgrades with DescribeBackupClients.
	StaysOld bool

	// What the job does to the client can differ from what its Result
	// says (HBR documents Result for upgrades nowhere: a caller must
	// verify). These three script that independently.

	// NotInResult leaves the client out of the DescribeTask Result (the
	// job still acts on it).
	NotInResult bool
	// EndStatus is the client Status DescribeBackupClients shows once the
	// job has ended. Default: the Result's clientStatus.
	EndStatus string
	// EndVersion is the ClientVersion once the job has ended, whatever
	// the statuses and StaysOld. Default: MaxVersion when the client ends
	// ACTIVATED (unless StaysOld), else unchanged.
	EndVersion string
}

// Step is one state of a job's script. Each DescribeTask call returns the
// current step and advances to the next; the last step repeats forever.
type Step struct {
	Progress    int    // 0..100, or -1 for a failed job
	Description string // created | completed | expired | cancelled
	EmptyResult bool   // force Result "" even when terminal
	// ObjectResult forces Result "{}" (the shape of the doc sample).
	ObjectResult bool
}

// terminal reports whether a job in this step is over (Result holds the
// per-instance outcome unless forced empty).
func (st Step) terminal() bool {
	return st.Progress == -1 || (st.Description != "" && st.Description != TaskCreated)
}

// DefaultScript is the script of jobs when none was queued and
// SetDefaultScript was not called.
func DefaultScript() []Step {
	return []Step{
		{Progress: 0, Description: TaskCreated},
		{Progress: 50, Description: TaskCreated},
		{Progress: 100, Description: TaskCompleted},
	}
}

// Target is one client a job upgrades (a valid ID of the request).
type Target struct {
	InstanceID string
	ClientID   string
}

// Job is a snapshot of an asynchronous HBR job.
type Job struct {
	TaskID      string
	Action      string   // the action that created it
	InstanceIDs []string // as requested
	ClientIDs   []string // as requested
	Targets     []Target // the valid IDs, resolved; what Result reports
	Params      url.Values
	Script      []Step
	CreatedAt   time.Time
	// DescribeCount is how many DescribeTask calls have read this job.
	DescribeCount int
	// CompletedAt is when DescribeTask first returned a terminal step
	// (zero while running).
	CompletedAt time.Time
}

// Call is one recorded request.
type Call struct {
	Action      string
	Method      string
	Params      url.Values // query and form merged (form wins on a clash, like the SDK's signer)
	Query       url.Values
	Form        url.Values
	Status      int    // HTTP status the server answered (or will answer, for a hung call)
	Code        string // JSON Code ("200" on success)
	RequestID   string
	At          time.Time
	SignatureOK bool
	Hung        bool // the answer was delayed by HangNext
}

type faultKind int

const (
	faultFail faultKind = iota
	faultSuccessFalse
	faultHang
)

type fault struct {
	kind   faultKind
	action string // "" = any action
	left   int
	status int
	code   string
	// message overrides the code's usual Message.
	message string
	delay   time.Duration
}

type job struct {
	Job
	lastStep  int // index of the step last returned, -1 before the first describe
	updatedAt time.Time
	applied   bool // terminal outcome written to the registry
}

// Server is a running fake HBR endpoint.
type Server struct {
	cfg       config
	ln        net.Listener
	srv       *http.Server
	serveDone chan struct{}
	closing   chan struct{} // closed by Close: releases hung handlers
	closeOnce sync.Once
	inflight  sync.WaitGroup

	mu             sync.Mutex
	closed         bool
	now            func() time.Time
	nonces         map[string]struct{}
	instances      map[string]*Instance
	order          []string          // instance IDs in registration order
	rank           map[string]int    // instance ID -> its place in order
	byClient       map[string]string // client ID -> instance ID
	unknownInvalid string
	defaultScript  []Step
	scripts        [][]Step
	jobs           []*job
	jobByID        map[string]*job
	faults         []*fault
	calls          []Call
	changed        chan struct{}          // closed and replaced on every new call or job
	admitted       map[string][]time.Time // per action, calls within the quota window
}

// NewServer starts a fake HBR endpoint on 127.0.0.1 with a random port.
// It panics if it cannot listen, like httptest.NewServer.
func NewServer(opts ...Option) *Server {
	cfg := config{accessKeyID: DefaultAccessKeyID, secret: DefaultSecret}
	for _, o := range opts {
		o(&cfg)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic("hbrtest: failed to listen on 127.0.0.1: " + err.Error())
	}
	s := &Server{
		cfg:           cfg,
		ln:            ln,
		serveDone:     make(chan struct{}),
		closing:       make(chan struct{}),
		now:           time.Now,
		nonces:        map[string]struct{}{},
		instances:     map[string]*Instance{},
		byClient:      map[string]string{},
		rank:          map[string]int{},
		defaultScript: DefaultScript(),
		jobByID:       map[string]*job{},
		changed:       make(chan struct{}),
	}
	s.srv = &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		defer close(s.serveDone)
		_ = s.srv.Serve(ln)
	}()
	return s
}

// URL is "http://127.0.0.1:PORT".
func (s *Server) URL() string { return "http://" + s.Host() }

// Host is "127.0.0.1:PORT", the value for CommonRequest.Domain.
func (s *Server) Host() string { return s.ln.Addr().String() }

// Close stops the server, releases hung calls and waits for all handlers.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		close(s.closing)
		_ = s.srv.Close()
		s.inflight.Wait()
		<-s.serveDone
	})
}

// SetNow sets the clock for job times (CreatedTime, UpdatedTime,
// CompletedTime) and Call.At. nil restores time.Now. The Timestamp check of
// signed requests always uses the real clock, because the SDK signs with it.
// now is called with the server's lock held (so it need not be goroutine
// safe) and must not call back into the Server.
func (s *Server) SetNow(now func() time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if now == nil {
		now = time.Now
	}
	s.now = now
}

// SetInstance registers (or replaces) an instance. Defaults are filled in
// for empty fields; an instance keeps its place in listing order when
// replaced.
func (s *Server) SetInstance(id string, inst Instance) {
	suffix := strings.TrimPrefix(id, "i-")
	if inst.ClientID == "" {
		inst.ClientID = "c-" + suffix
	}
	if inst.Name == "" {
		inst.Name = "ecs-" + suffix
	}
	if inst.Version == "" {
		inst.Version = DefaultVersion
	}
	if inst.MaxVersion == "" {
		inst.MaxVersion = DefaultMaxVersion
	}
	if inst.Status == "" {
		inst.Status = StatusActivated
	}
	if inst.OsType == "" {
		inst.OsType = "linux"
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.setInstanceLocked(id, inst)
}

// setInstanceLocked is SetInstance's registration, defaults filled in.
// Caller holds s.mu.
func (s *Server) setInstanceLocked(id string, inst Instance) {
	if old, ok := s.instances[id]; ok {
		delete(s.byClient, old.ClientID)
	} else {
		s.rank[id] = len(s.order)
		s.order = append(s.order, id)
	}
	s.instances[id] = &inst
	s.byClient[inst.ClientID] = id
}

// Instance returns the current registry entry of id (Version changes when
// an upgrade job completes).
func (s *Server) Instance(id string) (Instance, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	inst, ok := s.instances[id]
	if !ok {
		return Instance{}, false
	}
	return *inst, true
}

// SetUnknownInstanceError sets the pre-check result of instance and client
// IDs that are not registered: "" (the default) makes them valid,
// InstanceNotExists mimics a real account.
func (s *Server) SetUnknownInstanceError(code string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.unknownInvalid = code
}

// SetDefaultScript sets the script of jobs created while the QueueJob queue
// is empty. An empty script restores DefaultScript().
func (s *Server) SetDefaultScript(script ...Step) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(script) == 0 {
		script = DefaultScript()
	}
	s.defaultScript = slices.Clone(script)
}

// QueueJob queues the script the next created job follows (FIFO: each
// created job takes one queued script). An empty script means the default.
func (s *Server) QueueJob(script ...Step) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.scripts = append(s.scripts, slices.Clone(script))
}

// FailNext makes the next n calls of action (""= any action) fail with an
// error body {Code: code} and the given HTTP status, without doing any work
// (no job is created). Typical: 400 "Throttling.User", 503
// "ServiceUnavailable", 500 "InternalError". Queued faults are used in order.
func (s *Server) FailNext(action string, n int, httpStatus int, code string) {
	s.addFault(&fault{kind: faultFail, action: action, left: n, status: httpStatus, code: code})
}

// FailNextWith is FailNext with the error body's Message: what HBR says
// is not the bot's to trust (it may hold markup).
func (s *Server) FailNextWith(action string, n int, httpStatus int, code, message string) {
	s.addFault(&fault{kind: faultFail, action: action, left: n, status: httpStatus, code: code, message: message})
}

// SuccessFalseNext makes the next n calls of action answer HTTP 200 with
// "Success":false and Code code, without doing any work. The SDK does not
// treat this as an error.
func (s *Server) SuccessFalseNext(action string, n int, code string) {
	s.addFault(&fault{kind: faultSuccessFalse, action: action, left: n, code: code})
}

// HangNext makes the next n calls of action do their work (e.g. create the
// job) and then wait d, or until Close or the client gives up, before
// answering: the caller sees a timeout although HBR acted.
func (s *Server) HangNext(action string, n int, d time.Duration) {
	s.addFault(&fault{kind: faultHang, action: action, left: n, delay: d})
}

func (s *Server) addFault(f *fault) {
	if f.left <= 0 {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, f)
}

// takeFault consumes one use of the first matching fault of kind. Caller
// holds s.mu.
func (s *Server) takeFault(kind faultKind, action string) *fault {
	for i, f := range s.faults {
		if f.kind != kind || (f.action != "" && f.action != action) {
			continue
		}
		f.left--
		if f.left <= 0 {
			s.faults = slices.Delete(s.faults, i, i+1)
		}
		return f
	}
	return nil
}

// Calls returns the recorded calls of action ("" = all), oldest first.
func (s *Server) Calls(action string) []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.callsLocked(action)
}

func (s *Server) callsLocked(action string) []Call {
	var out []Call
	for _, c := range s.calls {
		if action == "" || c.Action == action {
			// Copy the maps so callers cannot edit the record.
			c.Params, c.Query, c.Form = cloneValues(c.Params), cloneValues(c.Query), cloneValues(c.Form)
			out = append(out, c)
		}
	}
	return out
}

// WaitCalls blocks until at least n calls of action ("" = all) have been
// recorded, then returns all of them. A call is recorded as soon as the
// server has decided its answer, before any HangNext delay.
func (s *Server) WaitCalls(ctx context.Context, action string, n int) ([]Call, error) {
	for {
		s.mu.Lock()
		calls := s.callsLocked(action)
		ch := s.changed
		s.mu.Unlock()
		if len(calls) >= n {
			return calls, nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return calls, ctx.Err()
		}
	}
}

// Jobs returns snapshots of all jobs, oldest first.
func (s *Server) Jobs() []Job {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Job, 0, len(s.jobs))
	for _, j := range s.jobs {
		out = append(out, j.snapshot())
	}
	return out
}

// WaitJobs blocks until at least n jobs exist and returns them.
func (s *Server) WaitJobs(ctx context.Context, n int) ([]Job, error) {
	for {
		s.mu.Lock()
		ch := s.changed
		enough := len(s.jobs) >= n
		s.mu.Unlock()
		if enough {
			return s.Jobs(), nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return s.Jobs(), ctx.Err()
		}
	}
}

func (j *job) snapshot() Job {
	c := j.Job
	c.InstanceIDs = slices.Clone(j.InstanceIDs)
	c.ClientIDs = slices.Clone(j.ClientIDs)
	c.Targets = slices.Clone(j.Targets)
	c.Script = slices.Clone(j.Script)
	c.Params = cloneValues(j.Params)
	return c
}

// notifyLocked wakes WaitCalls/WaitJobs. Caller holds s.mu.
func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

func cloneValues(v url.Values) url.Values {
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = slices.Clone(vs)
	}
	return out
}

// newRequestID returns an upper-case UUID v4, like Alibaba's RequestId.
func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := strings.ToUpper(hex.EncodeToString(b[:]))
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}

// newTaskIDLocked returns a unique "t-" + 20 lower-case alphanumerics.
func (s *Server) newTaskIDLocked() string {
	const alphabet = "0123456789abcdefghijklmnopqrstuvwxyz"
	for {
		var b [20]byte
		_, _ = rand.Read(b[:])
		for i := range b {
			b[i] = alphabet[int(b[i])%len(alphabet)]
		}
		id := "t-" + string(b[:])
		if _, dup := s.jobByID[id]; !dup {
			return id
		}
	}
}
