// The tests are in package hbr to reach the unexported endpoint method; all
// else goes through the exported API against the fake HBR server.
package hbr

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hbrbot/hbrbot"
	"github.com/hbrbot/hbrbot/hbrtest"
	"github.com/hbrbot/hbrbot/internal/logrec"
)

const (
	testRegion = "cn-hangzhou"
	testSecret = hbrtest.DefaultSecret // "testsecret": must never show in an error
)

// ---- helpers ----

func newServer(t *testing.T) *hbrtest.Server {
	t.Helper()
	srv := hbrtest.NewServer()
	t.Cleanup(srv.Close)
	return srv
}

func testOptions(host string) Options {
	return Options{
		Region:          testRegion,
		Endpoint:        &url.URL{Scheme: "http", Host: host},
		AccessKeyID:     hbrtest.DefaultAccessKeyID,
		AccessKeySecret: testSecret,
		InitialBackoff:  time.Millisecond,
		RetryFor:        2 * time.Second,
		Timeout:         2 * time.Second,
	}
}

func newClient(t *testing.T, o Options) *Client {
	t.Helper()
	c, err := New(o)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return c
}

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// checkErr fails unless err is an error that does not reveal the secret.
func checkErr(t *testing.T, err error, secrets ...string) {
	t.Helper()
	if err == nil {
		t.Fatal("error = nil, want an error")
	}
	for _, s := range append(secrets, testSecret) {
		if strings.Contains(err.Error(), s) {
			t.Errorf("error reveals the secret %q: %v", s, err)
		}
	}
}

func hbrError(t *testing.T, err error) *hbrbot.HBRError {
	t.Helper()
	var he *hbrbot.HBRError
	if !errors.As(err, &he) {
		t.Fatalf("error %v (%T) is not an *hbrbot.HBRError", err, err)
	}
	return he
}

// startJob creates a job on srv through the client and returns its TaskId.
func startJob(t *testing.T, ctx context.Context, c *Client, ids ...string) string {
	t.Helper()
	sub, err := c.UpgradeBackupClients(ctx, testRegion, hbrbot.Targets{InstanceIDs: ids}, nil)
	if err != nil {
		t.Fatalf("UpgradeBackupClients: %v", err)
	}
	return sub.TaskID
}

// ---- endpoint and construction ----

func TestEndpoint(t *testing.T) {
	tests := []struct {
		name       string
		endpoint   *url.URL
		region     string
		wantScheme string
		wantHost   string
	}{
		{"default, client region", nil, "cn-hangzhou", "https", "hbr.cn-hangzhou.aliyuncs.com"},
		{"default, other region", nil, "ap-southeast-1", "https", "hbr.ap-southeast-1.aliyuncs.com"},
		{"override wins over region", &url.URL{Scheme: "http", Host: "127.0.0.1:8080"}, "cn-shanghai", "http", "127.0.0.1:8080"},
		{"vpc endpoint", &url.URL{Scheme: "https", Host: "hbr-vpc.cn-hangzhou.aliyuncs.com"}, "cn-beijing", "https", "hbr-vpc.cn-hangzhou.aliyuncs.com"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := testOptions("unused")
			o.Endpoint = tt.endpoint
			c := newClient(t, o)
			scheme, host := c.endpoint(tt.region)
			if scheme != tt.wantScheme || host != tt.wantHost {
				t.Errorf("endpoint(%q) = %s://%s, want %s://%s", tt.region, scheme, host, tt.wantScheme, tt.wantHost)
			}
		})
	}
}

func TestNewRequiresRegion(t *testing.T) {
	o := testOptions("127.0.0.1:1")
	o.Region = ""
	if _, err := New(o); err == nil {
		t.Error("New without a region: no error")
	}
}

// ---- UpgradeBackupClients: wire format and answer ----

func TestUpgradeWireFormat(t *testing.T) {
	tests := []struct {
		name    string
		region  string
		targets hbrbot.Targets
		cross   *hbrbot.CrossAccount
		want    map[string]string // parameters that must be sent as given
		absent  []string          // parameters that must not be sent
	}{
		{
			name:    "instances, own account",
			region:  testRegion,
			targets: hbrbot.Targets{InstanceIDs: []string{"i-aaa", "i-bbb"}},
			want:    map[string]string{"RegionId": testRegion, "InstanceIds": `["i-aaa","i-bbb"]`},
			absent:  []string{"ClientIds", "CrossAccountType", "CrossAccountUserId", "CrossAccountRoleName"},
		},
		{
			name:    "clients, cross account, other region",
			region:  "cn-shanghai",
			targets: hbrbot.Targets{ClientIDs: []string{"c-ccc"}},
			cross:   &hbrbot.CrossAccount{UserID: 1234567890123456, RoleName: "hbrcrossrole"},
			want: map[string]string{"RegionId": "cn-shanghai", "ClientIds": `["c-ccc"]`,
				"CrossAccountType": "CROSS_ACCOUNT", "CrossAccountUserId": "1234567890123456",
				"CrossAccountRoleName": "hbrcrossrole"},
			absent: []string{"InstanceIds"},
		},
		{
			name:    "both kinds",
			region:  testRegion,
			targets: hbrbot.Targets{InstanceIDs: []string{"i-aaa"}, ClientIDs: []string{"c-bbb", "c-ccc"}},
			want:    map[string]string{"RegionId": testRegion, "InstanceIds": `["i-aaa"]`, "ClientIds": `["c-bbb","c-ccc"]`},
			absent:  []string{"CrossAccountType", "CrossAccountUserId", "CrossAccountRoleName"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testCtx(t)
			srv := newServer(t)
			c := newClient(t, testOptions(srv.Host()))
			sub, err := c.UpgradeBackupClients(ctx, tt.region, tt.targets, tt.cross)
			if err != nil {
				t.Fatalf("UpgradeBackupClients: %v", err)
			}
			calls := srv.Calls(hbrtest.ActionUpgradeBackupClients)
			if len(calls) != 1 {
				t.Fatalf("%d calls, want 1", len(calls))
			}
			call := calls[0]
			if call.Method != http.MethodPost {
				t.Errorf("method %s, want POST", call.Method)
			}
			if !call.SignatureOK || call.Status != http.StatusOK {
				t.Errorf("fake answered %d %s (signature ok %v), want 200 with a valid signature", call.Status, call.Code, call.SignatureOK)
			}
			if got := call.Params.Get("Action"); got != hbrtest.ActionUpgradeBackupClients {
				t.Errorf("Action = %q", got)
			}
			if got := call.Params.Get("Version"); got != "2017-09-08" {
				t.Errorf("Version = %q, want 2017-09-08", got)
			}
			checkParams(t, call.Params, tt.want, tt.absent)
			jobs := srv.Jobs()
			if len(jobs) != 1 {
				t.Fatalf("%d jobs, want 1", len(jobs))
			}
			if sub.TaskID != jobs[0].TaskID || sub.RequestID != call.RequestID {
				t.Errorf("submission = task %q request %q; the fake made task %q in request %q",
					sub.TaskID, sub.RequestID, jobs[0].TaskID, call.RequestID)
			}
			if !reflect.DeepEqual(jobs[0].InstanceIDs, tt.targets.InstanceIDs) || !reflect.DeepEqual(jobs[0].ClientIDs, tt.targets.ClientIDs) {
				t.Errorf("job targets = %q %q, want %q %q", jobs[0].InstanceIDs, jobs[0].ClientIDs, tt.targets.InstanceIDs, tt.targets.ClientIDs)
			}
		})
	}
}

func TestUpgradeInvalidInstances(t *testing.T) {
	ctx := testCtx(t)
	srv := newServer(t)
	srv.SetInstance("i-ok", hbrtest.Instance{})
	srv.SetInstance("i-stopped", hbrtest.Instance{Invalid: hbrtest.InstanceNotRunning})
	srv.SetInstance("i-gone", hbrtest.Instance{Invalid: hbrtest.InstanceNotExists})
	srv.SetInstance("i-noassist", hbrtest.Instance{Invalid: hbrtest.CloudAssistNotRunningOnInstance})
	c := newClient(t, testOptions(srv.Host()))

	tests := []struct {
		name        string
		ids         []string
		wantInvalid []hbrbot.InvalidTarget
	}{
		{"all valid", []string{"i-ok", "i-new"}, nil},
		{"some invalid", []string{"i-stopped", "i-ok", "i-gone", "i-noassist"}, []hbrbot.InvalidTarget{
			{ID: "i-stopped", ErrorCode: hbrtest.InstanceNotRunning},
			{ID: "i-gone", ErrorCode: hbrtest.InstanceNotExists},
			{ID: "i-noassist", ErrorCode: hbrtest.CloudAssistNotRunningOnInstance},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sub, err := c.UpgradeBackupClients(ctx, testRegion, hbrbot.Targets{InstanceIDs: tt.ids}, nil)
			if err != nil {
				t.Fatalf("UpgradeBackupClients: %v", err)
			}
			if sub.TaskID == "" {
				t.Error("no TaskID")
			}
			if !reflect.DeepEqual(sub.Invalid, tt.wantInvalid) {
				t.Errorf("Invalid = %+v, want %+v", sub.Invalid, tt.wantInvalid)
			}
		})
	}

	// A lone invalid instance fails the whole call with its code; nothing
	// was started, so it is not outcome-unknown, and it is not retried.
	before := len(srv.Calls(hbrtest.ActionUpgradeBackupClients))
	_, err := c.UpgradeBackupClients(ctx, testRegion, hbrbot.Targets{InstanceIDs: []string{"i-stopped"}}, nil)
	checkErr(t, err)
	if code := hbrbot.ErrorCode(err); code != hbrtest.InstanceNotRunning {
		t.Errorf("ErrorCode = %q, want %s (err %v)", code, hbrtest.InstanceNotRunning, err)
	}
	if errors.Is(err, hbrbot.ErrOutcomeUnknown) {
		t.Errorf("refused call reported as outcome unknown: %v", err)
	}
	if n := len(srv.Calls(hbrtest.ActionUpgradeBackupClients)) - before; n != 1 {
		t.Errorf("%d calls for a refused upgrade, want 1", n)
	}
}

// ---- DescribeTask ----

func TestDescribeTaskFollowsScript(t *testing.T) {
	type resultEntry struct {
		InstanceID   string `json:"instanceId"`
		ClientID     string `json:"clientId"`
		ClientStatus string `json:"clientStatus"`
		ErrorCode    string `json:"errorCode"`
	}
	tests := []struct {
		name      string
		script    []hbrtest.Step
		wantFinal hbrbot.FinalStatus
		// status of each ID in the terminal Result; "": Result is "" (or
		// "{}" with objectResult).
		wantStatus   string
		objectResult bool
	}{
		{"completed", hbrtest.DefaultScript(), hbrbot.JobCompleted, hbrtest.StatusActivated, false},
		{"failed", []hbrtest.Step{{Progress: 10, Description: hbrtest.TaskCreated}, {Progress: -1, Description: hbrtest.TaskCreated}},
			hbrbot.JobFailed, hbrtest.StatusUpgradeFailed, false},
		{"expired, empty result", []hbrtest.Step{{Progress: 0, Description: hbrtest.TaskCreated}, {Progress: 30, Description: hbrtest.TaskExpired, EmptyResult: true}},
			hbrbot.JobExpired, "", false},
		{"cancelled, object result", []hbrtest.Step{{Progress: 0, Description: hbrtest.TaskCancelled, ObjectResult: true}},
			hbrbot.JobCancelled, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testCtx(t)
			srv := newServer(t)
			c := newClient(t, testOptions(srv.Host()))
			srv.QueueJob(tt.script...)
			taskID := startJob(t, ctx, c, "i-one", "i-two")

			// One call per step, and the last step once more: it repeats.
			for i := range len(tt.script) + 1 {
				step := tt.script[min(i, len(tt.script)-1)]
				terminal := i >= len(tt.script)-1
				task, err := c.DescribeTask(ctx, testRegion, taskID)
				if err != nil {
					t.Fatalf("call %d: DescribeTask: %v", i, err)
				}
				if task.ID != taskID || task.Progress != step.Progress || task.Description != step.Description {
					t.Errorf("call %d: task %q progress %d %q; want %q progress %d %q",
						i, task.ID, task.Progress, task.Description, taskID, step.Progress, step.Description)
				}
				final, done := task.Final()
				if done != terminal || (terminal && final != tt.wantFinal) {
					t.Errorf("call %d: Final() = %q, %v; want %q, %v", i, final, done, tt.wantFinal, terminal)
				}

				switch {
				case tt.objectResult:
					if task.Result != "{}" {
						t.Errorf("call %d: Result = %q, want {}", i, task.Result)
					}
				case !terminal || tt.wantStatus == "":
					if task.Result != "" {
						t.Errorf("call %d: Result = %q, want empty", i, task.Result)
					}
				default:
					var entries []resultEntry
					if err := json.Unmarshal([]byte(task.Result), &entries); err != nil {
						t.Fatalf("call %d: Result %q is not a JSON array: %v", i, task.Result, err)
					}
					want := []resultEntry{
						{InstanceID: "i-one", ClientID: "c-one", ClientStatus: tt.wantStatus},
						{InstanceID: "i-two", ClientID: "c-two", ClientStatus: tt.wantStatus},
					}
					if !reflect.DeepEqual(entries, want) {
						t.Errorf("call %d: Result = %+v, want %+v", i, entries, want)
					}
				}
			}
			if calls := srv.Calls(hbrtest.ActionDescribeTask); len(calls) != len(tt.script)+1 {
				t.Errorf("%d DescribeTask calls, want %d", len(calls), len(tt.script)+1)
			} else if p := calls[0].Params; p.Get("TaskId") != taskID || p.Get("RegionId") != testRegion || calls[0].Method != http.MethodPost {
				t.Errorf("DescribeTask sent %s TaskId %q RegionId %q", calls[0].Method, p.Get("TaskId"), p.Get("RegionId"))
			}
		})
	}
}

func TestDescribeTaskRetries(t *testing.T) {
	tests := []struct {
		name        string
		inject      func(srv *hbrtest.Server)
		wantCalls   int
		wantErrCode string // "" = success
	}{
		{"throttled", func(s *hbrtest.Server) {
			s.FailNext(hbrtest.ActionDescribeTask, 2, http.StatusBadRequest, hbrtest.CodeThrottlingUser)
		}, 3, ""},
		{"unavailable", func(s *hbrtest.Server) {
			s.FailNext(hbrtest.ActionDescribeTask, 2, http.StatusServiceUnavailable, hbrtest.CodeServiceUnavailable)
		}, 3, ""},
		{"internal error", func(s *hbrtest.Server) {
			s.FailNext(hbrtest.ActionDescribeTask, 2, http.StatusInternalServerError, hbrtest.CodeInternalError)
		}, 3, ""},
		{"other 5xx", func(s *hbrtest.Server) {
			s.FailNext(hbrtest.ActionDescribeTask, 1, http.StatusBadGateway, "BadGateway")
		}, 2, ""},
		{"mixed", func(s *hbrtest.Server) {
			s.FailNext(hbrtest.ActionDescribeTask, 1, http.StatusBadRequest, hbrtest.CodeThrottling)
			s.FailNext(hbrtest.ActionDescribeTask, 1, http.StatusServiceUnavailable, hbrtest.CodeServiceUnavailable)
			s.FailNext(hbrtest.ActionDescribeTask, 1, http.StatusInternalServerError, hbrtest.CodeInternalError)
		}, 4, ""},
		{"throttled in a 200", func(s *hbrtest.Server) {
			s.SuccessFalseNext(hbrtest.ActionDescribeTask, 1, hbrtest.CodeThrottlingUser)
		}, 2, ""},
		{"internal error in a 200", func(s *hbrtest.Server) {
			s.SuccessFalseNext(hbrtest.ActionDescribeTask, 1, hbrtest.CodeInternalError)
		}, 2, ""},
		{"not retried: unknown task", func(*hbrtest.Server) {}, 1, hbrtest.CodeInvalidTaskIDNotFound},
		{"not retried: forbidden", func(s *hbrtest.Server) {
			s.FailNext(hbrtest.ActionDescribeTask, 1, http.StatusForbidden, "Forbidden.RAM")
		}, 1, "Forbidden.RAM"},
		{"not retried: Success false", func(s *hbrtest.Server) {
			s.SuccessFalseNext(hbrtest.ActionDescribeTask, 1, "InvalidParameter")
		}, 1, "InvalidParameter"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testCtx(t)
			srv := newServer(t)
			c := newClient(t, testOptions(srv.Host()))
			taskID := startJob(t, ctx, c, "i-one")
			if tt.wantErrCode == hbrtest.CodeInvalidTaskIDNotFound {
				taskID = "t-doesnotexist"
			}
			tt.inject(srv)

			task, err := c.DescribeTask(ctx, testRegion, taskID)
			calls := srv.Calls(hbrtest.ActionDescribeTask)
			if len(calls) != tt.wantCalls {
				t.Errorf("%d DescribeTask calls, want %d", len(calls), tt.wantCalls)
			}
			if tt.wantErrCode != "" {
				checkErr(t, err)
				if code := hbrbot.ErrorCode(err); code != tt.wantErrCode {
					t.Errorf("ErrorCode = %q, want %q (err %v)", code, tt.wantErrCode, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("DescribeTask: %v", err)
			}
			// The faults did no work: the job is read once, at its first step.
			if task.Progress != 0 || task.Description != hbrtest.TaskCreated {
				t.Errorf("task = progress %d %q, want the first step", task.Progress, task.Description)
			}
			if n := srv.Jobs()[0].DescribeCount; n != 1 {
				t.Errorf("job read %d times, want 1", n)
			}
		})
	}
}

// ---- UpgradeBackupClients: what is retried ----

func TestUpgradeRetries(t *testing.T) {
	tests := []struct {
		name        string
		inject      func(srv *hbrtest.Server)
		wantCalls   int
		wantJobs    int
		wantErrCode string // "" = success
		wantStatus  int
	}{
		{"throttled", func(s *hbrtest.Server) {
			s.FailNext(hbrtest.ActionUpgradeBackupClients, 2, http.StatusBadRequest, hbrtest.CodeThrottlingUser)
		}, 3, 1, "", 0},
		{"throttled, plain code", func(s *hbrtest.Server) {
			s.FailNext(hbrtest.ActionUpgradeBackupClients, 1, http.StatusBadRequest, hbrtest.CodeThrottling)
		}, 2, 1, "", 0},
		{"unavailable", func(s *hbrtest.Server) {
			s.FailNext(hbrtest.ActionUpgradeBackupClients, 2, http.StatusServiceUnavailable, hbrtest.CodeServiceUnavailable)
		}, 3, 1, "", 0},
		{"throttled in a 200", func(s *hbrtest.Server) {
			s.SuccessFalseNext(hbrtest.ActionUpgradeBackupClients, 1, hbrtest.CodeThrottlingUser)
		}, 2, 1, "", 0},
		{"internal error: not retried", func(s *hbrtest.Server) {
			s.FailNext(hbrtest.ActionUpgradeBackupClients, 1, http.StatusInternalServerError, hbrtest.CodeInternalError)
		}, 1, 0, hbrtest.CodeInternalError, http.StatusInternalServerError},
		{"other 5xx: not retried", func(s *hbrtest.Server) {
			s.FailNext(hbrtest.ActionUpgradeBackupClients, 1, http.StatusBadGateway, "BadGateway")
		}, 1, 0, "BadGateway", http.StatusBadGateway},
		{"forbidden: not retried", func(s *hbrtest.Server) {
			s.FailNext(hbrtest.ActionUpgradeBackupClients, 1, http.StatusForbidden, "Forbidden.RAM")
		}, 1, 0, "Forbidden.RAM", http.StatusForbidden},
		{"invalid parameter: not retried", func(s *hbrtest.Server) {
			s.FailNext(hbrtest.ActionUpgradeBackupClients, 1, http.StatusBadRequest, hbrtest.CodeInvalidParameter)
		}, 1, 0, hbrtest.CodeInvalidParameter, http.StatusBadRequest},
		{"Success false: not retried", func(s *hbrtest.Server) {
			s.SuccessFalseNext(hbrtest.ActionUpgradeBackupClients, 1, "OperationDenied")
		}, 1, 0, "OperationDenied", http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testCtx(t)
			srv := newServer(t)
			c := newClient(t, testOptions(srv.Host()))
			tt.inject(srv)

			sub, err := c.UpgradeBackupClients(ctx, testRegion, hbrbot.Targets{InstanceIDs: []string{"i-one", "i-two"}}, nil)
			if n := len(srv.Calls(hbrtest.ActionUpgradeBackupClients)); n != tt.wantCalls {
				t.Errorf("%d UpgradeBackupClients calls, want %d", n, tt.wantCalls)
			}
			jobs := srv.Jobs()
			if len(jobs) != tt.wantJobs {
				t.Errorf("%d jobs created, want %d", len(jobs), tt.wantJobs)
			}
			if tt.wantErrCode == "" {
				if err != nil {
					t.Fatalf("UpgradeBackupClients: %v", err)
				}
				if len(jobs) == 1 && sub.TaskID != jobs[0].TaskID {
					t.Errorf("TaskID = %q, want %q", sub.TaskID, jobs[0].TaskID)
				}
				return
			}
			checkErr(t, err)
			he := hbrError(t, err)
			if he.Code != tt.wantErrCode || he.HTTPStatus != tt.wantStatus || he.Action != hbrtest.ActionUpgradeBackupClients {
				t.Errorf("HBRError = %s %q status %d, want %s %q status %d",
					he.Action, he.Code, he.HTTPStatus, hbrtest.ActionUpgradeBackupClients, tt.wantErrCode, tt.wantStatus)
			}
			if errors.Is(err, hbrbot.ErrOutcomeUnknown) {
				t.Errorf("a refusal is reported as outcome unknown: %v", err)
			}
		})
	}
}

func TestUpgradeHangIsOutcomeUnknownAndNotResubmitted(t *testing.T) {
	ctx := testCtx(t)
	srv := newServer(t)
	c := newClient(t, testOptions(srv.Host()))
	// Longer than the client's 2s Timeout; the fake stops waiting as soon
	// as the client hangs up (or at Close).
	srv.HangNext(hbrtest.ActionUpgradeBackupClients, 1, time.Minute)

	start := time.Now()
	_, err := c.UpgradeBackupClients(ctx, testRegion, hbrbot.Targets{InstanceIDs: []string{"i-one"}}, nil)
	elapsed := time.Since(start)
	checkErr(t, err)
	if !errors.Is(err, hbrbot.ErrOutcomeUnknown) {
		t.Errorf("error = %v, want it to wrap ErrOutcomeUnknown", err)
	}
	if code := hbrbot.ErrorCode(err); code != "" {
		t.Errorf("ErrorCode = %q for a call HBR never answered", code)
	}
	calls := srv.Calls(hbrtest.ActionUpgradeBackupClients)
	if len(calls) != 1 || !calls[0].Hung {
		t.Errorf("%d calls (first hung: %v), want exactly 1 hung call", len(calls), len(calls) > 0 && calls[0].Hung)
	}
	if jobs := srv.Jobs(); len(jobs) != 1 {
		t.Errorf("%d jobs, want 1: the fake acted although the client timed out", len(jobs))
	}
	if elapsed > 10*time.Second {
		t.Errorf("took %v: the 2s Timeout did not bound the call", elapsed)
	}
}

func TestConnectionRefusedIsRetriedAndNotOutcomeUnknown(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nobody listens there now: every dial is refused

	tests := []struct {
		name string
		call func(ctx context.Context, c *Client) error
	}{
		{"UpgradeBackupClients", func(ctx context.Context, c *Client) error {
			_, err := c.UpgradeBackupClients(ctx, testRegion, hbrbot.Targets{InstanceIDs: []string{"i-one"}}, nil)
			return err
		}},
		{"DescribeTask", func(ctx context.Context, c *Client) error {
			_, err := c.DescribeTask(ctx, testRegion, "t-one")
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testCtx(t)
			o := testOptions(addr)
			o.RetryFor = 500 * time.Millisecond
			logs := &logrec.Handler{}
			o.Logger = slog.New(logs)
			c := newClient(t, o)

			err := tt.call(ctx, c)
			checkErr(t, err)
			if errors.Is(err, hbrbot.ErrOutcomeUnknown) {
				t.Errorf("a refused connection is reported as outcome unknown: %v", err)
			}
			var oe *net.OpError
			if !errors.As(err, &oe) || oe.Op != "dial" {
				t.Errorf("error = %v, want it to wrap the dial error", err)
			}
			if n := logs.Count(slog.LevelWarn, "retrying"); n < 2 {
				t.Errorf("%d retries of a refused connection, want several", n)
			}
		})
	}
}

func TestWrongSecretNotRetried(t *testing.T) {
	const wrong = "wrongsecret-0123456789"
	tests := []struct {
		action string
		call   func(ctx context.Context, c *Client) error
	}{
		{hbrtest.ActionUpgradeBackupClients, func(ctx context.Context, c *Client) error {
			_, err := c.UpgradeBackupClients(ctx, testRegion, hbrbot.Targets{InstanceIDs: []string{"i-one"}}, nil)
			return err
		}},
		{hbrtest.ActionDescribeTask, func(ctx context.Context, c *Client) error {
			_, err := c.DescribeTask(ctx, testRegion, "t-one")
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.action, func(t *testing.T) {
			ctx := testCtx(t)
			srv := newServer(t)
			o := testOptions(srv.Host())
			o.AccessKeySecret = wrong
			c := newClient(t, o)

			err := tt.call(ctx, c)
			checkErr(t, err, wrong)
			if code := hbrbot.ErrorCode(err); code != hbrtest.CodeSignatureDoesNotMatch {
				t.Errorf("ErrorCode = %q, want %s (err %v)", code, hbrtest.CodeSignatureDoesNotMatch, err)
			}
			calls := srv.Calls(tt.action)
			if len(calls) != 1 {
				t.Errorf("%d calls, want 1: a bad signature is not retried", len(calls))
			}
			if len(calls) > 0 && calls[0].SignatureOK {
				t.Error("fake accepted the signature of a wrong secret")
			}
			if len(srv.Jobs()) != 0 {
				t.Error("a job was created by an unauthenticated call")
			}
		})
	}
}

func TestErrorsNeverRevealSecret(t *testing.T) {
	ctx := testCtx(t)
	srv := newServer(t)
	c := newClient(t, testOptions(srv.Host()))

	srv.FailNext(hbrtest.ActionUpgradeBackupClients, 1, http.StatusBadRequest, hbrtest.CodeInvalidParameter)
	_, err := c.UpgradeBackupClients(ctx, testRegion, hbrbot.Targets{InstanceIDs: []string{"i-one"}}, nil)
	checkErr(t, err)

	srv.SuccessFalseNext(hbrtest.ActionDescribeTask, 1, "InvalidParameter")
	_, err = c.DescribeTask(ctx, testRegion, "t-one")
	checkErr(t, err)

	_, err = c.DescribeTask(ctx, testRegion, "t-unknown")
	checkErr(t, err)
	// The hang, wrong-secret and broken-answer tests check their errors too.
}

// TestNumericErrorCode: a non-2xx answer whose "Code" is a JSON number
// makes the SDK panic inside its error constructor; the client must turn
// that into an error.
func TestNumericErrorCode(t *testing.T) {
	var hits atomic.Int64
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = w.Write([]byte(`{"RequestId":"R-1","Code":400,"Message":"numeric code"}`))
	}))
	t.Cleanup(ts.Close)
	host := strings.TrimPrefix(ts.URL, "http://")
	if !strings.HasPrefix(host, "127.0.0.1:") {
		t.Fatalf("httptest server on %s, want 127.0.0.1", host)
	}

	tests := []struct {
		name      string
		call      func(ctx context.Context, c *Client) error
		wantCalls func(n int64) bool
	}{
		{"UpgradeBackupClients", func(ctx context.Context, c *Client) error {
			_, err := c.UpgradeBackupClients(ctx, testRegion, hbrbot.Targets{InstanceIDs: []string{"i-one"}}, nil)
			return err
		}, func(n int64) bool { return n == 1 }},
		{"DescribeTask", func(ctx context.Context, c *Client) error {
			_, err := c.DescribeTask(ctx, testRegion, "t-one")
			return err
		}, func(n int64) bool { return n >= 1 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testCtx(t)
			hits.Store(0)
			o := testOptions(host)
			o.RetryFor = 200 * time.Millisecond
			c := newClient(t, o)
			var err error
			func() {
				defer func() {
					if p := recover(); p != nil {
						t.Fatalf("panicked: %v", p)
					}
				}()
				err = tt.call(ctx, c)
			}()
			checkErr(t, err)
			if errors.Is(err, hbrbot.ErrOutcomeUnknown) {
				t.Errorf("an error answer is reported as outcome unknown: %v", err)
			}
			if hbrbot.ErrorCode(err) == "" {
				t.Errorf("error %v carries no code", err)
			}
			if n := hits.Load(); !tt.wantCalls(n) {
				t.Errorf("%d calls", n)
			}
			// The pooled SDK client is still usable after the panic.
			if err := tt.call(ctx, c); err == nil {
				t.Error("second call: no error")
			}
		})
	}
}

// TestConcurrentCalls: calls in parallel share the pool of SDK clients
// without mixing up answers.
func TestConcurrentCalls(t *testing.T) {
	ctx := testCtx(t)
	srv := newServer(t)
	o := testOptions(srv.Host())
	o.Concurrency = 3
	c := newClient(t, o)
	const n = 12
	ids := make([]string, n)
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			id := "i-" + string(rune('a'+i))
			sub, err := c.UpgradeBackupClients(ctx, testRegion, hbrbot.Targets{InstanceIDs: []string{id}}, nil)
			if err != nil {
				errs <- err
				return
			}
			ids[i] = sub.TaskID
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("UpgradeBackupClients: %v", err)
	}
	byTask := map[string][]string{}
	for _, j := range srv.Jobs() {
		byTask[j.TaskID] = j.InstanceIDs
	}
	if len(byTask) != n {
		t.Fatalf("%d jobs, want %d", len(byTask), n)
	}
	for i, task := range ids {
		want := "i-" + string(rune('a'+i))
		if got := byTask[task]; len(got) != 1 || got[0] != want {
			t.Errorf("call %d got task %q, which upgrades %q, want [%s]", i, task, got, want)
		}
	}
}

// rawServer answers every call with what answer writes on the raw
// connection, and counts the calls.
func rawServer(t *testing.T, answer func(call int64, conn net.Conn)) (host string, calls *atomic.Int64) {
	t.Helper()
	calls = new(atomic.Int64)
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		_, _ = io.Copy(io.Discard, r.Body)
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		defer conn.Close()
		answer(n, conn)
	}))
	t.Cleanup(ts.Close)
	return strings.TrimPrefix(ts.URL, "http://"), calls
}

// TestUpgradeAmbiguousAnswers: once HBR has started answering, whatever
// goes wrong after may follow a created job. Such a call is outcome
// unknown and is made exactly once.
func TestUpgradeAmbiguousAnswers(t *testing.T) {
	const headers = "HTTP/1.1 200 OK\r\nContent-Type: application/json;charset=utf-8\r\nContent-Length: %d\r\n\r\n"
	full := func(body string) func(net.Conn) {
		return func(conn net.Conn) { fmt.Fprintf(conn, headers+"%s", len(body), body) }
	}
	tests := []struct {
		name   string
		answer func(conn net.Conn)
	}{
		{"body cut short", func(conn net.Conn) {
			fmt.Fprintf(conn, headers+`{"RequestId":"R-1","TaskId":"t-`, 500)
		}},
		{"body stalls past the timeout", func(conn net.Conn) {
			fmt.Fprintf(conn, headers+`{"RequestId":"R-1","TaskId":"t-`, 500)
			// Wait for the client to give up and hang up.
			_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
			_, _ = io.Copy(io.Discard, conn)
		}},
		{"reset after the headers", func(conn net.Conn) {
			fmt.Fprintf(conn, headers+`{"RequestId":"R-1",`, 500)
			_ = conn.(*net.TCPConn).SetLinger(0) // close with RST
		}},
		{"closed without an answer", func(net.Conn) {}},
		{"200 that is not JSON", full(`<html>upstream says hello</html>`)},
		{"200 with an empty body", full(``)},
		{"200 without TaskId", full(`{"RequestId":"R-1","Success":true,"Code":"200"}`)},
		{"200 with a numeric TaskId", full(`{"RequestId":"R-1","Success":true,"TaskId":12345}`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testCtx(t)
			host, calls := rawServer(t, func(_ int64, conn net.Conn) { tt.answer(conn) })
			o := testOptions(host)
			o.Timeout = 500 * time.Millisecond
			c := newClient(t, o)

			_, err := c.UpgradeBackupClients(ctx, testRegion, hbrbot.Targets{InstanceIDs: []string{"i-one"}}, nil)
			checkErr(t, err)
			if !errors.Is(err, hbrbot.ErrOutcomeUnknown) {
				t.Errorf("error = %v, want it to wrap ErrOutcomeUnknown", err)
			}
			if n := calls.Load(); n != 1 {
				t.Errorf("%d calls, want exactly 1: never resubmitted", n)
			}
		})
	}
}

// TestDescribeTaskRetriesBrokenAnswers: a read may be repeated whatever
// went wrong with its answer.
func TestDescribeTaskRetriesBrokenAnswers(t *testing.T) {
	const headers = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
	const ok = `{"RequestId":"R-3","Success":true,"Code":"200","Progress":100,"Description":"completed",` +
		`"Result":"[{\"instanceId\":\"i-one\",\"clientStatus\":\"ACTIVATED\"}]","CreatedTime":1700000000}`
	ctx := testCtx(t)
	host, calls := rawServer(t, func(n int64, conn net.Conn) {
		switch n {
		case 1: // cut short
			fmt.Fprintf(conn, headers+`{"RequestId":"R-1",`, 300)
		case 2: // not JSON
			fmt.Fprintf(conn, headers+"%s", 9, "<html/>\r\n")
		case 3: // stalls past the timeout
			fmt.Fprintf(conn, headers+`{"RequestId":"R-2",`, 300)
			_ = conn.SetReadDeadline(time.Now().Add(20 * time.Second))
			_, _ = io.Copy(io.Discard, conn)
		default:
			fmt.Fprintf(conn, headers+"%s", len(ok), ok)
		}
	})
	o := testOptions(host)
	o.Timeout = 500 * time.Millisecond
	c := newClient(t, o)

	task, err := c.DescribeTask(ctx, testRegion, "t-one")
	if err != nil {
		t.Fatalf("DescribeTask: %v", err)
	}
	if n := calls.Load(); n != 4 {
		t.Errorf("%d calls, want 4", n)
	}
	want := hbrbot.Task{ID: "t-one", RequestID: "R-3", Description: "completed", Progress: 100,
		Result: `[{"instanceId":"i-one","clientStatus":"ACTIVATED"}]`}
	if !reflect.DeepEqual(task, want) {
		t.Errorf("task = %+v, want %+v", task, want)
	}
}

func TestDescribeTaskTimeoutIsRetried(t *testing.T) {
	ctx := testCtx(t)
	srv := newServer(t)
	c := newClient(t, testOptions(srv.Host()))
	taskID := startJob(t, ctx, c, "i-one")

	o := testOptions(srv.Host())
	o.Timeout = 300 * time.Millisecond
	c = newClient(t, o)
	srv.HangNext(hbrtest.ActionDescribeTask, 1, time.Minute)
	task, err := c.DescribeTask(ctx, testRegion, taskID)
	if err != nil {
		t.Fatalf("DescribeTask: %v", err)
	}
	calls := srv.Calls(hbrtest.ActionDescribeTask)
	if len(calls) != 2 || !calls[0].Hung || calls[1].Hung {
		t.Errorf("%d calls, want a hung one and its retry", len(calls))
	}
	// The hung call did read the job (step 0); the retry reads step 1.
	if task.Progress != 50 {
		t.Errorf("task progress %d, want 50 (the second step)", task.Progress)
	}
}

// checkParams asserts the parameters a call sent: each of want once, with
// its value, and none of absent.
func checkParams(t *testing.T, params url.Values, want map[string]string, absent []string) {
	t.Helper()
	for k, v := range want {
		if got, ok := params[k]; !ok || len(got) != 1 || got[0] != v {
			t.Errorf("%s = %q, want [%q]", k, got, v)
		}
	}
	for _, k := range absent {
		if got, ok := params[k]; ok {
			t.Errorf("%s sent (%q), want absent", k, got)
		}
	}
}

// TestOutOfTimeToRetryIsNoBudget: a submission HBR throttled (which proves
// nothing ran) whose context ends before the retry is ErrNoBudget, to be
// made again, not HBR's refusal; so is one that found no connection free.
func TestOutOfTimeToRetryIsNoBudget(t *testing.T) {
	t.Run("throttled, then out of time", func(t *testing.T) {
		srv := newServer(t)
		srv.FailNext(hbrtest.ActionUpgradeBackupClients, 100, http.StatusBadRequest, hbrtest.CodeThrottlingUser)
		o := testOptions(srv.Host())
		o.InitialBackoff, o.RetryFor = time.Second, time.Minute // the retry would come after the context's end
		c := newClient(t, o)
		ctx, cancel := context.WithTimeout(testCtx(t), 300*time.Millisecond)
		defer cancel()
		_, err := c.UpgradeBackupClients(ctx, testRegion, hbrbot.Targets{InstanceIDs: []string{"i-one"}}, nil)
		if !errors.Is(err, ErrNoBudget) || errors.Is(err, hbrbot.ErrOutcomeUnknown) {
			t.Errorf("error = %v, want ErrNoBudget", err)
		}
		if n := len(srv.Calls(hbrtest.ActionUpgradeBackupClients)); n != 1 {
			t.Errorf("%d calls, want 1", n)
		}
	})
	t.Run("no connection free", func(t *testing.T) {
		srv := newServer(t)
		o := testOptions(srv.Host())
		o.Concurrency = 1
		c := newClient(t, o)
		held := <-c.pool // the one connection is busy
		defer func() { c.pool <- held }()
		ctx, cancel := context.WithTimeout(testCtx(t), 100*time.Millisecond)
		defer cancel()
		_, err := c.UpgradeBackupClients(ctx, testRegion, hbrbot.Targets{InstanceIDs: []string{"i-one"}}, nil)
		if !errors.Is(err, ErrNoBudget) {
			t.Errorf("error = %v, want ErrNoBudget", err)
		}
		if n := len(srv.Calls(hbrtest.ActionUpgradeBackupClients)); n != 0 {
			t.Errorf("%d calls, want none", n)
		}
	})
}
