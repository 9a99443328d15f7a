package hbrtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/aliyun/alibaba-cloud-sdk-go/sdk"
	"github.com/aliyun/alibaba-cloud-sdk-go/sdk/auth/credentials"
	sdkerrors "github.com/aliyun/alibaba-cloud-sdk-go/sdk/errors"
	"github.com/aliyun/alibaba-cloud-sdk-go/sdk/requests"
	"github.com/aliyun/alibaba-cloud-sdk-go/sdk/responses"
)

// ---- helpers ----

func newServer(t *testing.T, opts ...Option) *Server {
	t.Helper()
	s := NewServer(opts...)
	t.Cleanup(s.Close)
	return s
}

func akClient(t *testing.T, id, secret string) *sdk.Client {
	t.Helper()
	c, err := sdk.NewClientWithOptions("cn-hangzhou", sdk.NewConfig(), credentials.NewStaticAKCredentialsProvider(id, secret))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func stsClient(t *testing.T, id, secret, token string) *sdk.Client {
	t.Helper()
	c, err := sdk.NewClientWithOptions("cn-hangzhou", sdk.NewConfig(), credentials.NewStaticSTSCredentialsProvider(id, secret, token))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// params are the API parameters of one SDK call.
type params struct {
	query, form map[string]string
}

func sdkCall(c *sdk.Client, s *Server, action string, p params) (*responses.CommonResponse, error) {
	req := requests.NewCommonRequest()
	req.Method = requests.POST
	req.Scheme = "http"
	req.Domain = s.Host()
	req.Product, req.Version, req.ApiName = "hbr", APIVersion, action
	for k, v := range p.query {
		req.QueryParams[k] = v
	}
	for k, v := range p.form {
		req.FormParams[k] = v
	}
	return c.ProcessCommonRequest(req)
}

// mustOK runs an SDK call that must succeed and decodes its body.
func mustOK(t *testing.T, c *sdk.Client, s *Server, action string, p params, out any) {
	t.Helper()
	resp, err := sdkCall(c, s, action, p)
	if err != nil {
		t.Fatalf("%s: %v", action, err)
	}
	if err := json.Unmarshal(resp.GetHttpContentBytes(), out); err != nil {
		t.Fatalf("%s: decode %s: %v", action, resp.GetHttpContentString(), err)
	}
}

func serverError(t *testing.T, err error) *sdkerrors.ServerError {
	t.Helper()
	var se *sdkerrors.ServerError
	if !errors.As(err, &se) {
		t.Fatalf("error = %T %v, want *errors.ServerError", err, err)
	}
	return se
}

type upgradeOut struct {
	RequestId        string
	Success          bool
	Code             string
	Message          string
	TaskId           string
	InstanceStatuses []struct {
		ValidInstance bool
		InstanceId    string
		ErrorCode     string
	}
}

type taskOut struct {
	RequestId     string
	Success       bool
	Code          string
	Message       string
	Name          string
	Progress      int
	Description   string
	Result        string
	CreatedTime   int64
	UpdatedTime   int64
	CompletedTime int64
}

type resultEntry struct {
	InstanceID   string `json:"instanceId"`
	ClientID     string `json:"clientId"`
	ClientStatus string `json:"clientStatus"`
	ErrorCode    string `json:"errorCode"`
}

func describeTask(t *testing.T, c *sdk.Client, s *Server, taskID string) taskOut {
	t.Helper()
	var out taskOut
	mustOK(t, c, s, ActionDescribeTask, params{query: map[string]string{"TaskId": taskID}}, &out)
	return out
}

// pollTask calls DescribeTask until the job is terminal, bounded so a
// broken script cannot loop forever. No sleeps: the script advances per call.
func pollTask(t *testing.T, c *sdk.Client, s *Server, taskID string) (seen []taskOut) {
	t.Helper()
	for range 20 {
		out := describeTask(t, c, s, taskID)
		seen = append(seen, out)
		if out.Description != TaskCreated || out.Progress == -1 {
			return seen
		}
	}
	t.Fatalf("task %s never terminal: %+v", taskID, seen)
	return nil
}

func parseResult(t *testing.T, r string) []resultEntry {
	t.Helper()
	var es []resultEntry
	if err := json.Unmarshal([]byte(r), &es); err != nil {
		t.Fatalf("Result %q is not a JSON array: %v", r, err)
	}
	return es
}

func ids(list ...string) string {
	b, _ := json.Marshal(list)
	return string(b)
}

var (
	taskIDRe    = regexp.MustCompile(`^t-[0-9a-z]{20}$`)
	requestIDRe = regexp.MustCompile(`^[0-9A-F]{8}-[0-9A-F]{4}-4[0-9A-F]{3}-[89AB][0-9A-F]{3}-[0-9A-F]{12}$`)
)

// rawParams returns a fresh, unsigned set of common parameters.
func rawParams(action string) url.Values {
	var nonce [16]byte
	_, _ = rand.Read(nonce[:])
	return url.Values{
		"Action":           {action},
		"Version":          {APIVersion},
		"Format":           {"JSON"},
		"AccessKeyId":      {DefaultAccessKeyID},
		"SignatureMethod":  {"HMAC-SHA1"},
		"SignatureVersion": {"1.0"},
		"SignatureType":    {""},
		"SignatureNonce":   {hex.EncodeToString(nonce[:])},
		"Timestamp":        {time.Now().UTC().Format(timestampLayout)},
		"RegionId":         {"cn-hangzhou"},
	}
}

// rawDo sends query (with Signature) and form by hand and checks the
// invariants of every answer: JSON, RequestId uuid-like, Code a string.
func rawDo(t *testing.T, s *Server, method string, query, form url.Values) (int, map[string]any) {
	t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, s.URL()+"/?"+query.Encode(), body)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatalf("body is not JSON: %v", err)
	}
	if _, ok := m["Code"].(string); !ok {
		t.Errorf("Code is %T (%v), must be a string", m["Code"], m["Code"])
	}
	if id, _ := m["RequestId"].(string); !requestIDRe.MatchString(id) {
		t.Errorf("RequestId %q is not uuid-like", id)
	}
	return resp.StatusCode, m
}

// signed signs query+form with the default secret and puts the Signature
// in the query, like the SDK.
func signed(method string, query, form url.Values) url.Values {
	all := cloneValues(query)
	for k, v := range form {
		all[k] = v
	}
	q := cloneValues(query)
	q.Set("Signature", Sign(method, all, DefaultSecret))
	return q
}

// ---- tests: the real SDK ----

func TestSDKUpgradeAndDescribeTask(t *testing.T) {
	tests := []struct {
		name   string
		inForm bool
	}{
		{"InstanceIds in query", false},
		{"InstanceIds in form body", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t)
			c := akClient(t, "testid", "testsecret")
			p := params{query: map[string]string{}, form: map[string]string{}}
			if tc.inForm {
				p.form["InstanceIds"] = `["i-a","i-b"]`
			} else {
				p.query["InstanceIds"] = `["i-a","i-b"]`
			}
			var up upgradeOut
			mustOK(t, c, s, ActionUpgradeBackupClients, p, &up)
			if !up.Success || up.Code != "200" || up.Message != "successful" || !taskIDRe.MatchString(up.TaskId) ||
				!requestIDRe.MatchString(up.RequestId) {
				t.Fatalf("upgrade response %+v", up)
			}
			if len(up.InstanceStatuses) != 2 || !up.InstanceStatuses[0].ValidInstance ||
				up.InstanceStatuses[1].InstanceId != "i-b" || up.InstanceStatuses[1].ErrorCode != "" {
				t.Fatalf("InstanceStatuses %+v", up.InstanceStatuses)
			}

			calls := s.Calls(ActionUpgradeBackupClients)
			if len(calls) != 1 || !calls[0].SignatureOK || calls[0].Status != 200 || calls[0].Method != "POST" {
				t.Fatalf("calls %+v", calls)
			}
			gotQ, gotF := calls[0].Query.Get("InstanceIds"), calls[0].Form.Get("InstanceIds")
			if tc.inForm && (gotQ != "" || gotF != `["i-a","i-b"]`) || !tc.inForm && (gotF != "" || gotQ != `["i-a","i-b"]`) {
				t.Fatalf("InstanceIds placement: query %q form %q", gotQ, gotF)
			}
			if calls[0].Params.Get("InstanceIds") != `["i-a","i-b"]` {
				t.Fatalf("merged params %v", calls[0].Params)
			}

			seen := pollTask(t, c, s, up.TaskId)
			var progress []int
			for _, o := range seen {
				progress = append(progress, o.Progress)
				if o.Name != "UpgradeBackupClientsTask" || !o.Success || o.Code != "200" || o.CreatedTime == 0 {
					t.Fatalf("describe %+v", o)
				}
			}
			if fmt.Sprint(progress) != "[0 50 100]" || seen[0].Result != "" || seen[1].Result != "" {
				t.Fatalf("progress %v, results %q %q", progress, seen[0].Result, seen[1].Result)
			}
			last := seen[len(seen)-1]
			if last.Description != TaskCompleted || last.CompletedTime == 0 {
				t.Fatalf("last %+v", last)
			}
			want := []resultEntry{
				{"i-a", "c-a", "ACTIVATED", ""},
				{"i-b", "c-b", "ACTIVATED", ""},
			}
			if got := parseResult(t, last.Result); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("Result %v, want %v", got, want)
			}
			// The last step repeats.
			if again := describeTask(t, c, s, up.TaskId); again.Progress != 100 || again.Result != last.Result {
				t.Fatalf("repeat %+v", again)
			}
			jobs := s.Jobs()
			if len(jobs) != 1 || jobs[0].TaskID != up.TaskId || jobs[0].DescribeCount != 4 ||
				fmt.Sprint(jobs[0].InstanceIDs) != "[i-a i-b]" {
				t.Fatalf("jobs %+v", jobs)
			}
		})
	}
}

func TestSDKAuthFailures(t *testing.T) {
	tests := []struct {
		name       string
		opts       []Option
		client     func(t *testing.T) *sdk.Client
		wantStatus int
		wantCode   string
	}{
		{
			name:       "wrong secret",
			client:     func(t *testing.T) *sdk.Client { return akClient(t, "testid", "wrong") },
			wantStatus: 400, wantCode: CodeSignatureDoesNotMatch,
		},
		{
			name:       "unknown access key",
			client:     func(t *testing.T) *sdk.Client { return akClient(t, "nobody", "testsecret") },
			wantStatus: 404, wantCode: CodeInvalidAccessKeyIDNotFound,
		},
		{
			name: "sts token expected but missing",
			opts: []Option{WithSecurityToken("tok")},
			client: func(t *testing.T) *sdk.Client {
				return akClient(t, "testid", "testsecret")
			},
			wantStatus: 400, wantCode: CodeMissingSecurityToken,
		},
		{
			name:       "sts token wrong",
			opts:       []Option{WithSecurityToken("tok")},
			client:     func(t *testing.T) *sdk.Client { return stsClient(t, "testid", "testsecret", "other") },
			wantStatus: 400, wantCode: CodeInvalidSecurityToken,
		},
		{
			name:       "sts token not expected",
			client:     func(t *testing.T) *sdk.Client { return stsClient(t, "testid", "testsecret", "tok") },
			wantStatus: 400, wantCode: CodeInvalidSecurityToken,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newServer(t, tc.opts...)
			_, err := sdkCall(tc.client(t), s, ActionUpgradeBackupClients,
				params{query: map[string]string{"InstanceIds": `["i-a"]`}})
			se := serverError(t, err)
			if se.HttpStatus() != tc.wantStatus || se.ErrorCode() != tc.wantCode || !requestIDRe.MatchString(se.RequestId()) {
				t.Fatalf("got %d %s (request %q), want %d %s", se.HttpStatus(), se.ErrorCode(), se.RequestId(), tc.wantStatus, tc.wantCode)
			}
			if tc.wantCode == CodeSignatureDoesNotMatch {
				if !strings.Contains(se.Message(), "server string to sign is:POST&%2F&") {
					t.Fatalf("message %q", se.Message())
				}
				// The SDK compares the server's string to sign with its own;
				// equality means "wrong secret", which is what happened here.
				if !strings.HasPrefix(se.Recommend(), "InvalidAccessKeySecret") {
					t.Fatalf("Recommend %q: server string to sign differs from the SDK's", se.Recommend())
				}
			}
			if n := len(s.Jobs()); n != 0 {
				t.Fatalf("%d jobs created by a rejected call", n)
			}
			calls := s.Calls("")
			if len(calls) != 1 || calls[0].SignatureOK || calls[0].Code != tc.wantCode {
				t.Fatalf("calls %+v", calls)
			}
		})
	}
}

func TestSDKSTSClient(t *testing.T) {
	s := newServer(t, WithCredentials("STS.key", "stssecret"), WithSecurityToken("the-token"))
	c := stsClient(t, "STS.key", "stssecret", "the-token")
	var up upgradeOut
	mustOK(t, c, s, ActionUpgradeBackupClients, params{form: map[string]string{"ClientIds": `["c-x"]`}}, &up)
	if !up.Success {
		t.Fatalf("%+v", up)
	}
	if got := s.Calls("")[0].Query.Get("SecurityToken"); got != "the-token" {
		t.Fatalf("SecurityToken in query = %q", got)
	}
	if j := s.Jobs()[0]; fmt.Sprint(j.Targets) != "[{i-x c-x}]" {
		t.Fatalf("targets %+v", j.Targets)
	}
}

func TestSDKFailNext(t *testing.T) {
	tests := []struct {
		status int
		code   string
	}{
		{400, CodeThrottlingUser},
		{400, CodeThrottling},
		{503, CodeServiceUnavailable},
		{500, CodeInternalError},
	}
	for _, tc := range tests {
		t.Run(tc.code, func(t *testing.T) {
			s := newServer(t)
			c := akClient(t, "testid", "testsecret")
			s.FailNext(ActionUpgradeBackupClients, 2, tc.status, tc.code)
			p := params{query: map[string]string{"InstanceIds": `["i-a"]`}}
			for i := range 2 {
				_, err := sdkCall(c, s, ActionUpgradeBackupClients, p)
				se := serverError(t, err)
				if se.HttpStatus() != tc.status || se.ErrorCode() != tc.code || se.Message() == "" {
					t.Fatalf("call %d: %d %q %q", i, se.HttpStatus(), se.ErrorCode(), se.Message())
				}
			}
			if n := len(s.Jobs()); n != 0 {
				t.Fatalf("failed calls created %d jobs", n)
			}
			// Other actions are unaffected; the fault is used up.
			var out struct{ Success bool }
			mustOK(t, c, s, ActionDescribeBackupClients, params{query: map[string]string{"ClientType": "ECS_CLIENT"}}, &out)
			var up upgradeOut
			mustOK(t, c, s, ActionUpgradeBackupClients, p, &up)
			if len(s.Jobs()) != 1 {
				t.Fatal("third call should create a job")
			}
			calls := s.Calls(ActionUpgradeBackupClients)
			if len(calls) != 3 || calls[0].Status != tc.status || calls[0].Code != tc.code || !calls[0].SignatureOK || calls[2].Code != "200" {
				t.Fatalf("calls %+v", calls)
			}
		})
	}
}

func TestSDKSuccessFalse(t *testing.T) {
	s := newServer(t)
	c := akClient(t, "testid", "testsecret")
	s.SuccessFalseNext(ActionUpgradeBackupClients, 1, "Hbr.SomethingWrong")
	resp, err := sdkCall(c, s, ActionUpgradeBackupClients, params{query: map[string]string{"InstanceIds": `["i-a"]`}})
	if err != nil {
		t.Fatalf("SDK must not treat HTTP 200 as an error: %v", err)
	}
	var out upgradeOut
	if err := json.Unmarshal(resp.GetHttpContentBytes(), &out); err != nil {
		t.Fatal(err)
	}
	if resp.GetHttpStatus() != 200 || out.Success || out.Code != "Hbr.SomethingWrong" || out.TaskId != "" {
		t.Fatalf("%d %+v", resp.GetHttpStatus(), out)
	}
	if len(s.Jobs()) != 0 {
		t.Fatal("Success:false call created a job")
	}
}

func TestSDKInstancePrecheck(t *testing.T) {
	s := newServer(t)
	c := akClient(t, "testid", "testsecret")
	s.SetInstance("i-ok", Instance{})
	s.SetInstance("i-gone", Instance{Invalid: InstanceNotExists})
	s.SetInstance("i-stopped", Instance{Invalid: InstanceNotRunning})
	s.SetInstance("i-noassist", Instance{Invalid: CloudAssistNotRunningOnInstance})

	t.Run("single invalid instance fails the call", func(t *testing.T) {
		for _, id := range []string{"i-gone", "i-stopped", "i-noassist"} {
			_, err := sdkCall(c, s, ActionUpgradeBackupClients, params{query: map[string]string{"InstanceIds": ids(id)}})
			se := serverError(t, err)
			want, _ := s.Instance(id)
			if se.HttpStatus() != 400 || se.ErrorCode() != want.Invalid {
				t.Fatalf("%s: %d %s", id, se.HttpStatus(), se.ErrorCode())
			}
		}
		if len(s.Jobs()) != 0 {
			t.Fatal("job created")
		}
	})

	t.Run("several instances are reported one by one", func(t *testing.T) {
		var up upgradeOut
		mustOK(t, c, s, ActionUpgradeBackupClients,
			params{query: map[string]string{"InstanceIds": ids("i-ok", "i-gone", "i-stopped", "i-new")}}, &up)
		got := fmt.Sprint(up.InstanceStatuses)
		want := "[{true i-ok } {false i-gone InstanceNotExists} {false i-stopped InstanceNotRunning} {true i-new }]"
		if got != want {
			t.Fatalf("InstanceStatuses\n got %s\nwant %s", got, want)
		}
		last := pollTask(t, c, s, up.TaskId)
		es := parseResult(t, last[len(last)-1].Result)
		if len(es) != 2 || es[0].InstanceID != "i-ok" || es[1].InstanceID != "i-new" {
			t.Fatalf("Result must list only the valid IDs: %+v", es)
		}
	})

	t.Run("unknown IDs can be made invalid", func(t *testing.T) {
		s.SetUnknownInstanceError(InstanceNotExists)
		defer s.SetUnknownInstanceError("")
		_, err := sdkCall(c, s, ActionUpgradeBackupClients, params{query: map[string]string{"InstanceIds": `["i-unregistered"]`}})
		if se := serverError(t, err); se.ErrorCode() != InstanceNotExists {
			t.Fatal(se.ErrorCode())
		}
	})
}

func TestSDKScripts(t *testing.T) {
	s := newServer(t)
	c := akClient(t, "testid", "testsecret")
	s.SetInstance("i-a", Instance{})
	s.SetInstance("i-b", Instance{UpgradeStatus: "UNKNOWN", ErrorCode: "ClientDisconnected"})

	s.QueueJob(Step{Progress: 0, Description: TaskCreated}, Step{Progress: -1, Description: TaskCreated})
	s.QueueJob(Step{Progress: 0, Description: TaskCreated, ObjectResult: true},
		Step{Progress: 100, Description: TaskCompleted, EmptyResult: true},
		Step{Progress: 100, Description: TaskCompleted})
	s.QueueJob(Step{Progress: 30, Description: TaskExpired})

	upgrade := func() string {
		var up upgradeOut
		mustOK(t, c, s, ActionUpgradeBackupClients, params{query: map[string]string{"InstanceIds": `["i-a","i-b"]`}}, &up)
		return up.TaskId
	}
	describeN := func(task string, n int) []taskOut {
		var out []taskOut
		for range n {
			out = append(out, describeTask(t, c, s, task))
		}
		return out
	}

	// Job 1: Progress -1 is terminal whatever Description says.
	d := describeN(upgrade(), 3)
	if d[0].Result != "" || d[1].Progress != -1 || d[1].CompletedTime == 0 {
		t.Fatalf("job 1: %+v", d)
	}
	want := "[{i-a c-a UPGRADE_FAILED } {i-b c-b UNKNOWN ClientDisconnected}]"
	if got := fmt.Sprint(parseResult(t, d[1].Result)); got != want {
		t.Fatalf("job 1 result %s, want %s", got, want)
	}
	if inst, _ := s.Instance("i-a"); inst.Status != StatusUpgradeFailed || inst.Version != DefaultVersion {
		t.Fatalf("after failed job: %+v", inst)
	}

	// Job 2: "{}" early, "" when completed but empty, then the array.
	d = describeN(upgrade(), 4)
	if d[0].Result != "{}" || d[1].Result != "" || d[1].Description != TaskCompleted || len(parseResult(t, d[2].Result)) != 2 {
		t.Fatalf("job 2: %+v", d)
	}

	// Job 3: expired is terminal; default outcome is a failure.
	d = describeN(upgrade(), 1)
	if d[0].Description != TaskExpired || !strings.Contains(d[0].Result, `"clientStatus":"UPGRADE_FAILED"`) {
		t.Fatalf("job 3: %+v", d)
	}

	// Job 4: queue empty, so the default script (changed here).
	s.SetDefaultScript(Step{Progress: 100, Description: TaskCompleted})
	d = describeN(upgrade(), 1)
	if d[0].Progress != 100 || !strings.Contains(d[0].Result, `"instanceId":"i-a","clientId":"c-a","clientStatus":"ACTIVATED"`) {
		t.Fatalf("job 4: %+v", d)
	}

	_, err := sdkCall(c, s, ActionDescribeTask, params{query: map[string]string{"TaskId": "t-doesnotexist00000000"}})
	if se := serverError(t, err); se.HttpStatus() != 400 || se.ErrorCode() != CodeInvalidTaskIDNotFound {
		t.Fatalf("%d %s", se.HttpStatus(), se.ErrorCode())
	}
}

type clientsOut struct {
	Success    bool
	Code       string
	TotalCount int64
	PageNumber int
	PageSize   int
	Clients    []struct {
		ClientId, InstanceId, InstanceName, ClientType  string
		ClientVersion, MaxClientVersion, Status, OsType string
	}
}

func TestSDKDescribeBackupClientsPaging(t *testing.T) {
	s := newServer(t)
	c := akClient(t, "testid", "testsecret")
	for i := range 250 {
		s.SetInstance(fmt.Sprintf("i-%03d", i), Instance{})
	}
	s.SetInstance("i-gone", Instance{Invalid: InstanceNotExists}) // has no client: not listed

	tests := []struct {
		page, size string
		wantN      int
		wantFirst  string
		wantPage   int
		wantSize   int
	}{
		{"", "", 10, "i-000", 1, 10},
		{"1", "99", 99, "i-000", 1, 99},
		{"2", "99", 99, "i-099", 2, 99},
		{"3", "99", 52, "i-198", 3, 99},
		{"4", "99", 0, "", 4, 99},
		{"25", "10", 10, "i-240", 25, 10},
	}
	for _, tc := range tests {
		t.Run("page "+tc.page+" size "+tc.size, func(t *testing.T) {
			q := map[string]string{"ClientType": "ECS_CLIENT"}
			if tc.page != "" {
				q["PageNumber"], q["PageSize"] = tc.page, tc.size
			}
			var out clientsOut
			mustOK(t, c, s, ActionDescribeBackupClients, params{query: q}, &out)
			if out.TotalCount != 250 || out.PageNumber != tc.wantPage || out.PageSize != tc.wantSize || len(out.Clients) != tc.wantN || !out.Success {
				t.Fatalf("total %d page %d size %d n %d", out.TotalCount, out.PageNumber, out.PageSize, len(out.Clients))
			}
			if tc.wantN > 0 {
				cl := out.Clients[0]
				if cl.InstanceId != tc.wantFirst || cl.ClientId != "c-"+strings.TrimPrefix(tc.wantFirst, "i-") ||
					cl.ClientVersion != "2.4.0" || cl.MaxClientVersion != "2.5.1" || cl.Status != "ACTIVATED" || cl.ClientType != "ECS_CLIENT" {
					t.Fatalf("first client %+v", cl)
				}
			}
		})
	}

	// Walking all pages visits every instance exactly once.
	seen := map[string]bool{}
	for page := 1; ; page++ {
		var out clientsOut
		mustOK(t, c, s, ActionDescribeBackupClients, params{query: map[string]string{
			"ClientType": "ECS_CLIENT", "PageNumber": fmt.Sprint(page), "PageSize": "99"}}, &out)
		for _, cl := range out.Clients {
			if seen[cl.InstanceId] {
				t.Fatalf("%s listed twice", cl.InstanceId)
			}
			seen[cl.InstanceId] = true
		}
		if len(out.Clients) < 99 {
			break
		}
	}
	if len(seen) != 250 {
		t.Fatalf("walked %d instances", len(seen))
	}

	t.Run("filters in form body", func(t *testing.T) {
		var out clientsOut
		mustOK(t, c, s, ActionDescribeBackupClients, params{
			query: map[string]string{"ClientType": "ECS_CLIENT"},
			form:  map[string]string{"InstanceIds": ids("i-007", "i-100", "i-gone", "i-nope")},
		}, &out)
		if out.TotalCount != 2 || out.Clients[0].InstanceId != "i-007" || out.Clients[1].InstanceId != "i-100" {
			t.Fatalf("%+v", out)
		}
		mustOK(t, c, s, ActionDescribeBackupClients, params{
			query: map[string]string{"ClientType": "ECS_CLIENT"},
			form:  map[string]string{"ClientIds": ids("c-249")},
		}, &out)
		if out.TotalCount != 1 || out.Clients[0].InstanceId != "i-249" {
			t.Fatalf("%+v", out)
		}
	})

	bad := []struct {
		name string
		q    map[string]string
		code string
	}{
		{"no ClientType", map[string]string{}, CodeMissingParameter},
		{"bad ClientType", map[string]string{"ClientType": "VM"}, CodeInvalidParameter},
		{"PageSize 100", map[string]string{"ClientType": "ECS_CLIENT", "PageSize": "100"}, CodeInvalidParameter},
		{"PageSize 0", map[string]string{"ClientType": "ECS_CLIENT", "PageSize": "0"}, CodeInvalidParameter},
		{"PageNumber 0", map[string]string{"ClientType": "ECS_CLIENT", "PageNumber": "0"}, CodeInvalidParameter},
		{"bad InstanceIds", map[string]string{"ClientType": "ECS_CLIENT", "InstanceIds": "i-1"}, CodeInvalidParameter},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			_, err := sdkCall(c, s, ActionDescribeBackupClients, params{query: tc.q})
			if se := serverError(t, err); se.HttpStatus() != 400 || se.ErrorCode() != tc.code {
				t.Fatalf("%d %s", se.HttpStatus(), se.ErrorCode())
			}
		})
	}
}

func TestSDKUpgradeUpdatesRegistry(t *testing.T) {
	s := newServer(t)
	c := akClient(t, "testid", "testsecret")
	s.SetInstance("i-a", Instance{})
	s.SetInstance("i-old", Instance{StaysOld: true, Version: "2.3.0", MaxVersion: "2.6.0"})
	s.SetInstance("i-idle", Instance{})

	var up upgradeOut
	mustOK(t, c, s, ActionUpgradeBackupClients, params{query: map[string]string{"InstanceIds": ids("i-a", "i-old")}}, &up)
	var before clientsOut
	mustOK(t, c, s, ActionDescribeBackupClients, params{query: map[string]string{"ClientType": "ECS_CLIENT"}}, &before)
	if before.Clients[0].ClientVersion != "2.4.0" {
		t.Fatal("version changed before the job completed")
	}
	pollTask(t, c, s, up.TaskId)

	var after clientsOut
	mustOK(t, c, s, ActionDescribeBackupClients, params{query: map[string]string{"ClientType": "ECS_CLIENT"}}, &after)
	got := map[string]string{}
	for _, cl := range after.Clients {
		got[cl.InstanceId] = cl.ClientVersion + "/" + cl.MaxClientVersion + "/" + cl.Status
	}
	want := map[string]string{"i-a": "2.5.1/2.5.1/ACTIVATED", "i-old": "2.3.0/2.6.0/ACTIVATED", "i-idle": "2.4.0/2.5.1/ACTIVATED"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after upgrade %v, want %v", got, want)
	}
}

// TestSDKResultApartFromEffect: NotInResult, EndStatus and EndVersion
// script what a job's Result says apart from what it does to the client.
func TestSDKResultApartFromEffect(t *testing.T) {
	s := newServer(t)
	c := akClient(t, "testid", "testsecret")
	s.SetInstance("i-saidfail", Instance{UpgradeStatus: StatusUpgradeFailed, ErrorCode: "UPGRADE_FAILED", EndStatus: StatusActivated})
	s.SetInstance("i-saidok", Instance{EndStatus: StatusUnknown})
	s.SetInstance("i-upgrading", Instance{UpgradeStatus: StatusUpgrading, EndStatus: StatusActivated, EndVersion: "2.5.0"})
	s.SetInstance("i-silent", Instance{NotInResult: true})
	s.SetInstance("i-plain", Instance{StaysOld: true, EndVersion: "2.4.1"})

	all := []string{"i-saidfail", "i-saidok", "i-upgrading", "i-silent", "i-plain"}
	var up upgradeOut
	mustOK(t, c, s, ActionUpgradeBackupClients, params{query: map[string]string{"InstanceIds": ids(all...)}}, &up)
	seen := pollTask(t, c, s, up.TaskId)
	want := "[{i-saidfail c-saidfail UPGRADE_FAILED UPGRADE_FAILED} {i-saidok c-saidok ACTIVATED } " +
		"{i-upgrading c-upgrading UPGRADING } {i-plain c-plain ACTIVATED }]"
	if got := fmt.Sprint(parseResult(t, seen[len(seen)-1].Result)); got != want {
		t.Fatalf("Result %s, want %s", got, want)
	}
	// The job acted once: a second terminal answer says the same and
	// changes nothing.
	again := describeTask(t, c, s, up.TaskId)
	if got := fmt.Sprint(parseResult(t, again.Result)); got != want {
		t.Fatalf("second Result %s, want %s", got, want)
	}
	var after clientsOut
	mustOK(t, c, s, ActionDescribeBackupClients, params{form: map[string]string{"ClientType": "ECS_CLIENT", "InstanceIds": ids(all...)}}, &after)
	got := map[string]string{}
	for _, cl := range after.Clients {
		got[cl.InstanceId] = cl.ClientVersion + "/" + cl.MaxClientVersion + "/" + cl.Status
	}
	wantAfter := map[string]string{
		"i-saidfail":  "2.5.1/2.5.1/ACTIVATED", // Result said failed; the client moved
		"i-saidok":    "2.4.0/2.5.1/UNKNOWN",   // Result said done; the client did not
		"i-upgrading": "2.5.0/2.5.1/ACTIVATED", // EndVersion, whatever the status
		"i-silent":    "2.5.1/2.5.1/ACTIVATED", // left out of Result, upgraded all the same
		"i-plain":     "2.4.1/2.5.1/ACTIVATED", // EndVersion wins over StaysOld
	}
	if fmt.Sprint(got) != fmt.Sprint(wantAfter) {
		t.Fatalf("after the job %v, want %v", got, wantAfter)
	}

	// Every ID left out: Result is an empty array, not "" (the job ended).
	s.SetInstance("i-silent", Instance{NotInResult: true})
	mustOK(t, c, s, ActionUpgradeBackupClients, params{query: map[string]string{"InstanceIds": ids("i-silent")}}, &up)
	seen = pollTask(t, c, s, up.TaskId)
	if r := seen[len(seen)-1].Result; r != "[]" {
		t.Fatalf("Result %q with every ID left out, want []", r)
	}
}

func TestSDKHangNext(t *testing.T) {
	s := newServer(t)
	c := akClient(t, "testid", "testsecret")
	s.HangNext(ActionUpgradeBackupClients, 1, time.Hour)

	req := requests.NewCommonRequest()
	req.Method, req.Scheme, req.Domain = requests.POST, "http", s.Host()
	req.Product, req.Version, req.ApiName = "hbr", APIVersion, ActionUpgradeBackupClients
	req.QueryParams["InstanceIds"] = `["i-a"]`
	req.ReadTimeout = 300 * time.Millisecond
	_, err := c.ProcessCommonRequest(req)
	var ue *url.Error
	if !errors.As(err, &ue) || !ue.Timeout() {
		t.Fatalf("want a timeout *url.Error (AutoRetry off), got %T %v", err, err)
	}

	// HBR did run the call: the job exists although the caller saw a timeout.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	jobs, err := s.WaitJobs(ctx, 1)
	if err != nil || len(jobs) != 1 {
		t.Fatalf("jobs %v err %v", jobs, err)
	}
	calls := s.Calls(ActionUpgradeBackupClients)
	if len(calls) != 1 || !calls[0].Hung || calls[0].Status != 200 {
		t.Fatalf("calls %+v", calls)
	}

	// The fault is used up: the caller can find the job by polling it.
	var up upgradeOut
	mustOK(t, c, s, ActionUpgradeBackupClients, params{query: map[string]string{"InstanceIds": `["i-a"]`}}, &up)
	if len(s.Jobs()) != 2 {
		t.Fatal("second call should create a second job")
	}
}

func TestCloseReleasesHungCalls(t *testing.T) {
	s := NewServer()
	s.HangNext("", 1, time.Hour)
	done := make(chan error, 1)
	go func() {
		q := rawParams(ActionDescribeBackupClients)
		q.Set("ClientType", "ECS_CLIENT")
		resp, err := http.Post(s.URL()+"/?"+signed("POST", q, nil).Encode(), "application/x-www-form-urlencoded", nil)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := s.WaitCalls(ctx, ActionDescribeBackupClients, 1); err != nil {
		t.Fatal(err)
	}
	s.Close() // must not wait an hour
	select {
	case <-done:
	case <-ctx.Done():
		t.Fatal("client still blocked after Close")
	}
	s.Close() // idempotent
}

func TestWaitCalls(t *testing.T) {
	s := newServer(t)
	c := akClient(t, "testid", "testsecret")
	got := make(chan []Call, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	go func() {
		calls, _ := s.WaitCalls(ctx, ActionDescribeTask, 2)
		got <- calls
	}()
	var out taskOut
	var up upgradeOut
	mustOK(t, c, s, ActionUpgradeBackupClients, params{query: map[string]string{"InstanceIds": `["i-a"]`}}, &up)
	mustOK(t, c, s, ActionDescribeTask, params{query: map[string]string{"TaskId": up.TaskId}}, &out)
	mustOK(t, c, s, ActionDescribeTask, params{query: map[string]string{"TaskId": up.TaskId}}, &out)
	calls := <-got
	if len(calls) != 2 || calls[0].Action != ActionDescribeTask || calls[1].Params.Get("TaskId") != up.TaskId {
		t.Fatalf("%+v", calls)
	}

	short, cancelShort := context.WithCancel(context.Background())
	cancelShort()
	if _, err := s.WaitCalls(short, ActionDescribeTask, 3); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v", err)
	}
	if all := s.Calls(""); len(all) != 3 {
		t.Fatalf("%d calls", len(all))
	}
}

// ---- tests: raw HTTP, for what the SDK never gets wrong ----

func TestRawRequestValidation(t *testing.T) {
	s := newServer(t)
	upgrade := func(mut func(q, f url.Values)) (url.Values, url.Values) {
		q := rawParams(ActionUpgradeBackupClients)
		f := url.Values{"InstanceIds": {`["i-a"]`}}
		if mut != nil {
			mut(q, f)
		}
		return q, f
	}
	many := make([]string, 101)
	for i := range many {
		many[i] = fmt.Sprintf("i-%d", i)
	}

	tests := []struct {
		name       string
		mut        func(q, f url.Values)
		unsigned   bool // send without recomputing the signature
		wantStatus int
		wantCode   string
		wantInMsg  string
	}{
		{"ok", nil, false, 200, "200", "successful"},
		{"GET works too", func(q, f url.Values) { q.Set("X-Method", "GET") }, false, 200, "200", ""},
		{"missing Timestamp", func(q, f url.Values) { q.Del("Timestamp") }, false, 400, CodeMissingParameter, `"Timestamp"`},
		{"missing Signature", nil, true, 400, CodeMissingParameter, `"Signature"`},
		{"missing SignatureNonce", func(q, f url.Values) { q.Del("SignatureNonce") }, false, 400, CodeMissingParameter, `"SignatureNonce"`},
		{"wrong Version", func(q, f url.Values) { q.Set("Version", "2014-05-26") }, false, 400, CodeInvalidVersion, ""},
		{"unknown Action", func(q, f url.Values) { q.Set("Action", "DeleteEverything") }, false, 404, CodeInvalidActionNotFound, ""},
		{"XML format", func(q, f url.Values) { q.Set("Format", "XML") }, false, 400, CodeInvalidParameter, "Format"},
		{"SHA256 method", func(q, f url.Values) { q.Set("SignatureMethod", "HMAC-SHA256") }, false, 400, CodeInvalidSignatureMethod, ""},
		{"version 2.0", func(q, f url.Values) { q.Set("SignatureVersion", "2.0") }, false, 400, CodeInvalidSignatureVersion, ""},
		{"timestamp not UTC Z", func(q, f url.Values) { q.Set("Timestamp", "2026-01-02T15:04:05+08:00") }, false, 400, CodeInvalidTimeStampFormat, ""},
		{"timestamp 16m old", func(q, f url.Values) {
			q.Set("Timestamp", time.Now().Add(-16*time.Minute).UTC().Format(timestampLayout))
		}, false, 400, CodeInvalidTimeStampExpired, ""},
		{"timestamp 16m ahead", func(q, f url.Values) {
			q.Set("Timestamp", time.Now().Add(16*time.Minute).UTC().Format(timestampLayout))
		}, false, 400, CodeInvalidTimeStampExpired, ""},
		{"form tampered after signing", func(q, f url.Values) { f.Set("Tampered", "1") }, true, 400, CodeSignatureDoesNotMatch,
			"Specified signature is not matched with our calculation. server string to sign is:POST&%2F&"},
		{"bad InstanceIds JSON", func(q, f url.Values) { f.Set("InstanceIds", "i-a,i-b") }, false, 400, CodeInvalidParameter, "InstanceIds"},
		{"InstanceIds is an object", func(q, f url.Values) { f.Set("InstanceIds", `{"a":1}`) }, false, 400, CodeInvalidParameter, "InstanceIds"},
		{"bad ClientIds JSON", func(q, f url.Values) { f.Set("ClientIds", "[c-1") }, false, 400, CodeInvalidParameter, "ClientIds"},
		{"no IDs", func(q, f url.Values) { f.Del("InstanceIds") }, false, 400, CodeMissingParameter, ""},
		{"empty arrays", func(q, f url.Values) { f.Set("InstanceIds", "[]"); f.Set("ClientIds", "[]") }, false, 400, CodeMissingParameter, ""},
		{"101 IDs", func(q, f url.Values) { f.Set("InstanceIds", ids(many[:60]...)); f.Set("ClientIds", ids(many[60:]...)) },
			false, 400, CodeTooManyIDs, "100"},
		{"100 IDs", func(q, f url.Values) { f.Set("InstanceIds", ids(many[:100]...)) }, false, 200, "200", ""},
		{"bad CrossAccountType", func(q, f url.Values) { q.Set("CrossAccountType", "OTHER") }, false, 400, CodeInvalidParameter, "CrossAccountType"},
		{"cross account without user", func(q, f url.Values) {
			q.Set("CrossAccountType", "CROSS_ACCOUNT")
			q.Set("CrossAccountRoleName", "hbrcrossrole")
		}, false, 400, CodeMissingParameter, "CrossAccountUserId"},
		{"cross account without role", func(q, f url.Values) {
			q.Set("CrossAccountType", "CROSS_ACCOUNT")
			q.Set("CrossAccountUserId", "1639278212345678")
		}, false, 400, CodeMissingParameter, "CrossAccountRoleName"},
		{"cross account user not int", func(q, f url.Values) { q.Set("CrossAccountUserId", "abc") }, false, 400, CodeInvalidParameter, "CrossAccountUserId"},
		{"cross account ok", func(q, f url.Values) {
			q.Set("CrossAccountType", "CROSS_ACCOUNT")
			q.Set("CrossAccountUserId", "1639278212345678")
			q.Set("CrossAccountRoleName", "hbrcrossrole")
		}, false, 200, "200", ""},
		{"DescribeTask without TaskId", func(q, f url.Values) { q.Set("Action", ActionDescribeTask); f.Del("InstanceIds") }, false, 400, CodeMissingParameter, "TaskId"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			method := "POST"
			q, f := upgrade(nil)
			if tc.unsigned {
				q = signed(method, q, f) // sign first, mutate after
				if tc.mut != nil {
					tc.mut(q, f)
				} else {
					q.Del("Signature")
				}
			} else {
				if tc.mut != nil {
					tc.mut(q, f)
				}
				if q.Get("X-Method") == "GET" {
					q.Del("X-Method")
					method = "GET"
					for k, v := range f { // GET carries everything in the query
						q[k] = v
					}
					f = nil
				}
				q = signed(method, q, f)
			}
			status, body := rawDo(t, s, method, q, f)
			msg, _ := body["Message"].(string)
			if status != tc.wantStatus || body["Code"] != tc.wantCode || !strings.Contains(msg, tc.wantInMsg) {
				t.Fatalf("got %d %v %q, want %d %s containing %q", status, body["Code"], msg, tc.wantStatus, tc.wantCode, tc.wantInMsg)
			}
			if status == 200 && body["Success"] != true {
				t.Fatalf("success body %v", body)
			}
		})
	}
}

func TestRawNonceReplay(t *testing.T) {
	s := newServer(t)
	q := rawParams(ActionDescribeBackupClients)
	q.Set("ClientType", "ECS_CLIENT")
	q = signed("GET", q, nil)
	if status, body := rawDo(t, s, "GET", q, nil); status != 200 {
		t.Fatalf("first: %d %v", status, body)
	}
	status, body := rawDo(t, s, "GET", q, nil)
	if status != 400 || body["Code"] != CodeSignatureNonceUsed {
		t.Fatalf("replay: %d %v", status, body)
	}
	// A forged request must not burn a nonce.
	forged := rawParams(ActionDescribeBackupClients)
	forged.Set("ClientType", "ECS_CLIENT")
	forged.Set("Signature", "AAAA")
	if status, _ := rawDo(t, s, "GET", forged, nil); status != 400 {
		t.Fatal("forged accepted")
	}
	forged.Del("Signature")
	if status, body := rawDo(t, s, "GET", signed("GET", forged, nil), nil); status != 200 {
		t.Fatalf("nonce of a forged request was consumed: %d %v", status, body)
	}
}

func TestRawResponseShapes(t *testing.T) {
	s := newServer(t)
	s.FailNext(ActionDescribeTask, 1, 503, CodeServiceUnavailable)
	s.SuccessFalseNext(ActionDescribeTask, 1, "SomeCode")

	do := func() (int, map[string]any) {
		q := rawParams(ActionDescribeTask)
		q.Set("TaskId", "t-x")
		return rawDo(t, s, "POST", signed("POST", q, nil), nil)
	}
	// Gateway error: no Success field.
	status, body := do()
	if _, has := body["Success"]; status != 503 || has || body["HostId"] != s.Host() {
		t.Fatalf("gateway error %d %v", status, body)
	}
	// Success:false, HTTP 200.
	status, body = do()
	if status != 200 || body["Success"] != false || body["Code"] != "SomeCode" {
		t.Fatalf("success false %d %v", status, body)
	}
	// Business error: Success false and 400.
	status, body = do()
	if status != 400 || body["Success"] != false || body["Code"] != CodeInvalidTaskIDNotFound {
		t.Fatalf("business error %d %v", status, body)
	}
}

func TestSetNow(t *testing.T) {
	s := newServer(t)
	c := akClient(t, "testid", "testsecret")
	base := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tick := 0
	s.SetNow(func() time.Time { tick++; return base.Add(time.Duration(tick) * time.Minute) })
	var up upgradeOut
	mustOK(t, c, s, ActionUpgradeBackupClients, params{query: map[string]string{"InstanceIds": `["i-a"]`}}, &up)
	seen := pollTask(t, c, s, up.TaskId)
	first, last := seen[0], seen[len(seen)-1]
	if first.CreatedTime <= base.Unix() || first.UpdatedTime != first.CreatedTime ||
		last.UpdatedTime <= first.UpdatedTime || last.CompletedTime != last.UpdatedTime {
		t.Fatalf("times: first %+v last %+v", first, last)
	}
	if j := s.Jobs()[0]; !j.CreatedAt.After(base) || j.CompletedAt.IsZero() {
		t.Fatalf("job %+v", j)
	}
}
