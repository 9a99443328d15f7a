// Package hbr calls Alibaba Cloud Backup (HBR, API 2017-09-08) through the
// Alibaba Cloud Go SDK. The SDK has no HBR service package, so every call is
// an sdk.Client CommonRequest: POST, signed by the SDK's own RPC signer.
package hbr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/aliyun/alibaba-cloud-sdk-go/sdk"
	"github.com/aliyun/alibaba-cloud-sdk-go/sdk/auth"
	"github.com/aliyun/alibaba-cloud-sdk-go/sdk/auth/credentials"
	sdkerrors "github.com/aliyun/alibaba-cloud-sdk-go/sdk/errors"
	"github.com/aliyun/alibaba-cloud-sdk-go/sdk/requests"
	"github.com/cenkalti/backoff/v5"

	"github.com/hbrbot/hbrbot"
)

const apiVersion = "2017-09-08"

// Options configure a Client.
type Options struct {
	// Region is the client's default region (the SDK's RegionId).
	Region string
	// Endpoint, when set, receives every call whatever its region (VPC
	// endpoints, proxies, tests). Nil: https://hbr.<region>.aliyuncs.com.
	Endpoint *url.URL
	// Static credentials. All empty: the SDK's default credential chain
	// (environment, OIDC, CLI profile, ECS RAM role), resolved per call.
	AccessKeyID, AccessKeySecret, SecurityToken string
	// Timeout bounds one HTTP exchange (default 10s).
	Timeout time.Duration
	// RetryFor bounds the retries of one call (default 1m).
	RetryFor time.Duration
	// InitialBackoff is the first retry's wait before jitter (default 500ms).
	InitialBackoff time.Duration
	// Concurrency is how many calls may be in flight at once (default 4).
	Concurrency int
	// Limiter, when set, is waited on before every attempt: HBR throttles
	// per API and account, whatever the number of replicas. With Budget
	// it is the cap on all actions together, taken after the action's.
	Limiter Limiter
	// Budget, when set, is each action's shared budget: the calls of this
	// client wait for it by priority (WithPriority), and HBR's Throttling*
	// answers are reported to it.
	Budget Budget
	// LookupWindow is how long DescribeBackupClients look-ups are collected
	// to be merged into shared calls (default 20ms; negative: no merging).
	LookupWindow time.Duration
	// Observe, when set, is told of every attempt: its action, HBR's error
	// code ("" on success, "Transport" without an answer) and latency.
	Observe func(action, code string, d time.Duration)
	Logger  *slog.Logger
}

// Limiter spaces calls out.
type Limiter interface {
	Wait(ctx context.Context) error
}

// Client calls HBR.
type Client struct {
	opts Options
	// The SDK's DoAction writes the shared http.Client's timeout and dialer
	// on every call, so one sdk.Client must not serve two calls at once:
	// calls borrow a client from this pool instead.
	pool    chan *sdk.Client
	log     *slog.Logger
	queue   *queue   // nil without a Budget
	lookups *batcher // nil without merging
}

// New builds a Client. It makes no call.
func New(o Options) (*Client, error) {
	if o.Region == "" {
		return nil, errors.New("hbr: region is required")
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.RetryFor <= 0 {
		o.RetryFor = time.Minute
	}
	if o.InitialBackoff <= 0 {
		o.InitialBackoff = 500 * time.Millisecond
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 4
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	var cred auth.Credential // nil: the SDK's default chain
	switch {
	case o.AccessKeyID != "" && o.SecurityToken != "":
		cred = credentials.NewStaticSTSCredentialsProvider(o.AccessKeyID, o.AccessKeySecret, o.SecurityToken)
	case o.AccessKeyID != "":
		cred = credentials.NewStaticAKCredentialsProvider(o.AccessKeyID, o.AccessKeySecret)
	}
	c := &Client{opts: o, pool: make(chan *sdk.Client, o.Concurrency), log: o.Logger}
	if o.Budget != nil {
		c.queue = newQueue(o.Budget, o.Limiter)
	}
	if o.LookupWindow == 0 {
		o.LookupWindow = 20 * time.Millisecond
		c.opts.LookupWindow = o.LookupWindow
	}
	if o.LookupWindow > 0 {
		c.lookups = newBatcher(c, o.LookupWindow)
	}
	for range o.Concurrency {
		// The SDK's default scheme is HTTP; every request sets its scheme
		// explicitly, and the config says HTTPS should one slip through.
		cfg := sdk.NewConfig().WithScheme("HTTPS").WithTimeout(o.Timeout)
		sc, err := sdk.NewClientWithOptions(o.Region, cfg, cred)
		if err != nil {
			return nil, fmt.Errorf("hbr: new sdk client: %w", err)
		}
		sc.SetReadTimeout(o.Timeout)
		sc.SetConnectTimeout(5 * time.Second)
		c.pool <- sc
	}
	return c, nil
}

// endpoint is where calls for region go.
func (c *Client) endpoint(region string) (scheme, host string) {
	if c.opts.Endpoint != nil {
		return c.opts.Endpoint.Scheme, c.opts.Endpoint.Host
	}
	return "https", "hbr." + region + ".aliyuncs.com"
}

// callError is a failed call, classified for retrying.
type callError struct {
	err error
	// notSent: the request provably never reached HBR (dial failure).
	notSent bool
	// ambiguous: HBR may have received and acted on the request.
	ambiguous bool
	// transient: HBR said "try again" (throttling, unavailable, internal).
	transient bool
}

func (e *callError) Error() string { return e.err.Error() }
func (e *callError) Unwrap() error { return e.err }

// admit waits until a call of action may go: its place in the action's
// queue (by ctx's priority) or, without a Budget, the Limiter.
func (c *Client) admit(ctx context.Context, action string) error {
	switch {
	case c.queue != nil:
		return c.queue.wait(ctx, action)
	case c.opts.Limiter != nil:
		return c.opts.Limiter.Wait(ctx)
	}
	return nil
}

// call makes one signed RPC call and returns the body of a successful
// answer. It does not retry. form holds the parameters declared "in:
// formData" (sent in the body, signed all the same); params the others.
func (c *Client) call(ctx context.Context, action, region string, params, form map[string]string) (body []byte, err error) {
	if err := c.admit(ctx, action); err != nil {
		return nil, &callError{err: fmt.Errorf("%s: %w: %w", action, ErrNoBudget, err), notSent: true}
	}
	defer func() {
		// HBR's flow control: the action slows down for every replica.
		if c.opts.Budget != nil && throttling(hbrbot.ErrorCode(err)) {
			c.opts.Budget.Throttled(context.WithoutCancel(ctx), action)
		}
	}()
	var sc *sdk.Client
	select {
	case sc = <-c.pool:
	case <-ctx.Done():
		return nil, &callError{err: fmt.Errorf("%s: %w: no connection free: %w", action, ErrNoBudget, ctx.Err()), notSent: true}
	}
	defer func() { c.pool <- sc }()
	defer func() {
		// The SDK panics on an error body whose "Code" is a number.
		if p := recover(); p != nil {
			err = &callError{err: &hbrbot.HBRError{Action: action, Code: "InvalidResponse",
				Message: fmt.Sprintf("unreadable error answer: %v", p)}, transient: true}
		}
	}()

	scheme, host := c.endpoint(region)
	req := requests.NewCommonRequest()
	req.Method = requests.POST
	req.Scheme = scheme
	req.Domain = host
	req.Product = "hbr"
	req.Version = apiVersion
	req.ApiName = action
	req.RegionId = region
	for k, v := range params {
		req.QueryParams[k] = v
	}
	for k, v := range form {
		req.FormParams[k] = v
	}
	start := time.Now()
	defer func() {
		if c.opts.Observe != nil {
			code := hbrbot.ErrorCode(err)
			if err != nil && code == "" {
				code = "Transport"
			}
			c.opts.Observe(action, code, time.Since(start))
		}
	}()
	resp, err := sc.ProcessCommonRequest(req)
	if err != nil {
		// The SDK's own error may quote the string to sign or the signed
		// URL: only the classified, scrubbed one goes on.
		ce := classify(action, err)
		c.log.DebugContext(ctx, "hbr call", "action", action, "region", region, "elapsed", time.Since(start), "err", ce)
		return nil, ce
	}
	c.log.DebugContext(ctx, "hbr call", "action", action, "region", region, "elapsed", time.Since(start))
	body = resp.GetHttpContentBytes()
	var env struct {
		Success   *bool           `json:"Success"`
		Code      json.RawMessage `json:"Code"`
		Message   string          `json:"Message"`
		RequestID string          `json:"RequestId"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		// A 2xx answer: HBR may have acted on the call.
		return nil, &callError{err: fmt.Errorf("%s: answer (HTTP %d) is not JSON: %w",
			action, resp.GetHttpStatus(), hbrbot.ErrOutcomeUnknown), ambiguous: true}
	}
	code := rawString(env.Code)
	if env.Success != nil && !*env.Success {
		he := &hbrbot.HBRError{Action: action, Code: code, Message: scrub(env.Message),
			RequestID: env.RequestID, HTTPStatus: resp.GetHttpStatus()}
		return nil, &callError{err: he, transient: transientCode(code)}
	}
	return body, nil
}

// classify turns an SDK error into a callError.
func classify(action string, err error) *callError {
	var se *sdkerrors.ServerError
	if errors.As(err, &se) {
		he := &hbrbot.HBRError{Action: action, Code: se.ErrorCode(), Message: scrub(se.Message()),
			RequestID: se.RequestId(), HTTPStatus: se.HttpStatus()}
		return &callError{err: he, transient: transientCode(he.Code) || he.HTTPStatus >= 500}
	}
	var ce *sdkerrors.ClientError
	if errors.As(err, &ce) && ce.ErrorCode() == "SDK.TimeoutError" {
		return &callError{err: fmt.Errorf("%s: timed out: %w", action, hbrbot.ErrOutcomeUnknown), ambiguous: true}
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return &callError{err: fmt.Errorf("%s: connect: %w", action, oe), notSent: true}
	}
	var dnsErr *net.DNSError
	if errors.As(err, &dnsErr) {
		return &callError{err: fmt.Errorf("%s: resolve endpoint: %w", action, dnsErr), notSent: true}
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		// Sent, or partly sent, and no answer read: HBR may have acted.
		return &callError{err: fmt.Errorf("%s: %s: %w", action, scrub(ue.Err.Error()), hbrbot.ErrOutcomeUnknown), ambiguous: true}
	}
	var ne net.Error
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.As(err, &ne) {
		// The answer's body could not be read (cut short, reset, timed
		// out): HBR was answering, so it may have acted.
		return &callError{err: fmt.Errorf("%s: reading answer: %s: %w", action, scrub(err.Error()), hbrbot.ErrOutcomeUnknown), ambiguous: true}
	}
	// Errors the SDK raises before sending (bad endpoint, signing, ...).
	return &callError{err: fmt.Errorf("%s: %s", action, scrub(err.Error())), notSent: true}
}

// transientCode reports whether HBR's code says the call was refused for
// load and may be repeated.
func transientCode(code string) bool {
	return strings.HasPrefix(code, "Throttling") || code == "Rejected.Throttling" ||
		code == "ServiceUnavailable" || code == "InternalError"
}

// throttling reports whether HBR's code is its flow control's.
func throttling(code string) bool {
	return strings.HasPrefix(code, "Throttling") || code == "Rejected.Throttling"
}

// rawString reads a JSON value that should be a string but may be a number.
func rawString(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	return strings.TrimSpace(string(raw))
}

// retry runs op until it succeeds, retryable says no, RetryFor passes or
// ctx ends, backing off exponentially with jitter.
func retry[T any](ctx context.Context, c *Client, action string, retryable func(*callError) bool, op func() (T, error)) (T, error) {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = c.opts.InitialBackoff
	b.MaxInterval = 10 * time.Second
	b.RandomizationFactor = 0.5
	var last error
	v, err := backoff.Retry(ctx, func() (T, error) {
		v, err := op()
		last = err
		var ce *callError
		if err != nil && errors.As(err, &ce) && !retryable(ce) {
			return v, backoff.Permanent(err)
		}
		return v, err
	}, backoff.WithBackOff(b), backoff.WithMaxElapsedTime(c.opts.RetryFor),
		backoff.WithNotify(func(err error, d time.Duration) {
			c.log.WarnContext(ctx, "hbr call failed, retrying", "action", action, "err", err, "wait", d)
		}))
	if err != nil && ctx.Err() != nil {
		var ce *callError
		switch {
		case errors.Is(last, ErrNoBudget):
			return v, last // the call never went: say so, not just "deadline"
		case errors.As(last, &ce) && retryable(ce):
			// Time ran out before a retry that the last answer allowed (it
			// proved, for a submission, that nothing ran): as good as never
			// sent, and to be made again, not reported as HBR's refusal.
			return v, fmt.Errorf("%s: %w: out of time to retry after: %w", action, ErrNoBudget, last)
		}
	}
	return v, err
}

// readRetryable: read-only calls repeat on anything transient.
func readRetryable(e *callError) bool { return e.transient || e.ambiguous || e.notSent }

// upgradeRetryable: UpgradeBackupClients repeats only when the answer proves
// that nothing ran.
func upgradeRetryable(e *callError) bool {
	if e.notSent {
		return true
	}
	code := hbrbot.ErrorCode(e)
	return strings.HasPrefix(code, "Throttling") || code == "Rejected.Throttling" || code == "ServiceUnavailable"
}

func jsonList(ids []string) string {
	b, _ := json.Marshal(ids) // []string always marshals
	return string(b)
}

// UpgradeBackupClients starts one HBR job upgrading the clients of t. An
// error wrapping hbrbot.ErrOutcomeUnknown means HBR may have started the job:
// it must not be resubmitted.
func (c *Client) UpgradeBackupClients(ctx context.Context, region string, t hbrbot.Targets, cross *hbrbot.CrossAccount) (hbrbot.Submission, error) {
	const action = "UpgradeBackupClients"
	params := map[string]string{}
	if len(t.InstanceIDs) > 0 {
		params["InstanceIds"] = jsonList(t.InstanceIDs)
	}
	if len(t.ClientIDs) > 0 {
		params["ClientIds"] = jsonList(t.ClientIDs)
	}
	if cross != nil {
		params["CrossAccountType"] = "CROSS_ACCOUNT"
		params["CrossAccountUserId"] = strconv.FormatInt(cross.UserID, 10)
		params["CrossAccountRoleName"] = cross.RoleName
	}
	// ctx bounds the waits before sending (rate limit, a pooled client) and
	// the retries; the SDK cannot cancel a call once sent, and
	// c.opts.Timeout bounds that.
	sub, err := retry(ctx, c, action, upgradeRetryable, func() (hbrbot.Submission, error) {
		body, err := c.call(ctx, action, region, params, nil)
		if err != nil {
			return hbrbot.Submission{}, err
		}
		var r struct {
			TaskID           string `json:"TaskId"`
			RequestID        string `json:"RequestId"`
			InstanceStatuses []struct {
				ValidInstance bool   `json:"ValidInstance"`
				InstanceID    string `json:"InstanceId"`
				ErrorCode     string `json:"ErrorCode"`
			} `json:"InstanceStatuses"`
		}
		if err := json.Unmarshal(body, &r); err != nil {
			// HBR answered 200 and may have started a job we cannot name.
			return hbrbot.Submission{}, backoff.Permanent(fmt.Errorf("%s: unreadable answer: %v: %w", action, err, hbrbot.ErrOutcomeUnknown))
		}
		if r.TaskID == "" {
			return hbrbot.Submission{}, backoff.Permanent(fmt.Errorf("%s: answer has no TaskId (request %s): %w", action, r.RequestID, hbrbot.ErrOutcomeUnknown))
		}
		s := hbrbot.Submission{TaskID: r.TaskID, RequestID: r.RequestID}
		for _, st := range r.InstanceStatuses {
			if !st.ValidInstance {
				s.Invalid = append(s.Invalid, hbrbot.InvalidTarget{ID: st.InstanceID, ErrorCode: st.ErrorCode})
			}
		}
		return s, nil
	})
	if err != nil {
		return hbrbot.Submission{}, fmt.Errorf("upgrade %d clients: %w", t.Len(), err)
	}
	return sub, nil
}

// DescribeTask reads the state of job taskID.
func (c *Client) DescribeTask(ctx context.Context, region, taskID string) (hbrbot.Task, error) {
	const action = "DescribeTask"
	task, err := retry(ctx, c, action, readRetryable, func() (hbrbot.Task, error) {
		body, err := c.call(ctx, action, region, map[string]string{"TaskId": taskID}, nil)
		if err != nil {
			return hbrbot.Task{}, err
		}
		var r struct {
			Progress    json.Number     `json:"Progress"`
			Description string          `json:"Description"`
			Result      json.RawMessage `json:"Result"`
			RequestID   string          `json:"RequestId"`
		}
		if err := json.Unmarshal(body, &r); err != nil {
			return hbrbot.Task{}, &callError{err: fmt.Errorf("%s: unreadable answer: %w", action, err), transient: true}
		}
		progress, _ := r.Progress.Float64()
		return hbrbot.Task{ID: taskID, RequestID: r.RequestID, Description: r.Description, Progress: int(progress), Result: rawString(r.Result)}, nil
	})
	if err != nil {
		return hbrbot.Task{}, fmt.Errorf("describe task %s: %w", taskID, err)
	}
	return task, nil
}

// DescribeBackupClients looks up the ECS clients of t (all of the region's when t is empty), following pages of 99.
//
// HBR ANDs the InstanceIds and ClientIds filters, so instance and client IDs
// are looked up in separate requests and the answers merged, in that order,
// without duplicates (an instance named both ways is listed once). Each
// request names at most 99 IDs: HBR documents no limit on the filters, but a
// page holds at most 99 clients. IDs that HBR does not know are simply
// absent from the result. Look-ups of the same region and account made
// within LookupWindow of each other share their calls (see batcher).
func (c *Client) DescribeBackupClients(ctx context.Context, region string, t hbrbot.Targets, cross *hbrbot.CrossAccount) ([]hbrbot.ClientInfo, error) {
	if t.Len() == 0 { // every client of the region
		clients, err := c.describeFilter(ctx, region, filter{}, cross)
		if err != nil {
			return nil, err
		}
		return appendNew(nil, map[string]bool{}, clients), nil
	}
	if c.lookups != nil {
		return c.lookups.lookup(ctx, region, t, cross)
	}
	var out []hbrbot.ClientInfo
	seen := map[string]bool{}
	for _, f := range filtersOf(t) {
		clients, err := c.describeFilter(ctx, region, f, cross)
		if err != nil {
			return nil, err
		}
		out = appendNew(out, seen, clients)
	}
	return out, nil
}

// describePageSize is DescribeBackupClients' largest documented page.
const describePageSize = 99

// filter is one DescribeBackupClients ID filter.
type filter struct {
	key string // "InstanceIds", "ClientIds" or "" for none
	ids []string
}

// filtersOf splits t into filters of at most a page of IDs, instances
// first.
func filtersOf(t hbrbot.Targets) []filter {
	var filters []filter
	chunk := func(key string, ids []string) {
		for len(ids) > 0 {
			n := min(len(ids), describePageSize)
			filters = append(filters, filter{key, ids[:n]})
			ids = ids[n:]
		}
	}
	chunk("InstanceIds", t.InstanceIDs)
	chunk("ClientIds", t.ClientIDs)
	return filters
}

// appendNew appends the clients not seen yet (by client ID, else instance).
func appendNew(out []hbrbot.ClientInfo, seen map[string]bool, clients []hbrbot.ClientInfo) []hbrbot.ClientInfo {
	for _, ci := range clients {
		key := ci.ClientID
		if key == "" {
			key = "i:" + ci.InstanceID
		}
		if !seen[key] {
			seen[key] = true
			out = append(out, ci)
		}
	}
	return out
}

// describeFilter lists the clients one filter matches, page by page. The
// ID filters are form parameters ("in: formData, style: json").
func (c *Client) describeFilter(ctx context.Context, region string, f filter, cross *hbrbot.CrossAccount) ([]hbrbot.ClientInfo, error) {
	const action = "DescribeBackupClients"
	var out []hbrbot.ClientInfo
	collected := 0
	for page := 1; ; page++ {
		params := map[string]string{
			"ClientType": "ECS_CLIENT",
			"PageNumber": strconv.Itoa(page),
			"PageSize":   strconv.Itoa(describePageSize),
		}
		var form map[string]string
		if f.key != "" {
			form = map[string]string{f.key: jsonList(f.ids)}
		}
		if cross != nil {
			params["CrossAccountType"] = "CROSS_ACCOUNT"
			params["CrossAccountUserId"] = strconv.FormatInt(cross.UserID, 10)
			params["CrossAccountRoleName"] = cross.RoleName
		}
		type answer struct {
			total   int64
			clients []hbrbot.ClientInfo
		}
		a, err := retry(ctx, c, action, readRetryable, func() (answer, error) {
			body, err := c.call(ctx, action, region, params, form)
			if err != nil {
				return answer{}, err
			}
			var r struct {
				TotalCount json.Number `json:"TotalCount"`
				Clients    []struct {
					ClientID         string `json:"ClientId"`
					InstanceID       string `json:"InstanceId"`
					InstanceName     string `json:"InstanceName"`
					ClientVersion    string `json:"ClientVersion"`
					MaxClientVersion string `json:"MaxClientVersion"`
					Status           string `json:"Status"`
				} `json:"Clients"`
			}
			if err := json.Unmarshal(body, &r); err != nil {
				return answer{}, &callError{err: fmt.Errorf("%s: unreadable answer: %w", action, err), transient: true}
			}
			total, _ := r.TotalCount.Int64()
			a := answer{total: total}
			for _, cl := range r.Clients {
				a.clients = append(a.clients, hbrbot.ClientInfo{ClientID: cl.ClientID, InstanceID: cl.InstanceID,
					InstanceName: cl.InstanceName, Version: cl.ClientVersion, MaxVersion: cl.MaxClientVersion, Status: cl.Status})
			}
			return a, nil
		})
		if err != nil {
			what := "all clients"
			if f.key != "" {
				what = fmt.Sprintf("%d %s from %s", len(f.ids), f.key, f.ids[0])
			}
			return nil, fmt.Errorf("describe backup clients (%s, page %d): %w", what, page, err)
		}
		out = append(out, a.clients...)
		collected += len(a.clients)
		if len(a.clients) == 0 || int64(collected) >= a.total {
			return out, nil
		}
	}
}
