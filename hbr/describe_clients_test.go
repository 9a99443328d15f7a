package hbr

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hbrbot/hbrbot"
	"github.com/hbrbot/hbrbot/hbrtest"
)

// instanceID is the i-… ID of the n-th registered test instance.
func instanceID(n int) string { return fmt.Sprintf("i-%04d", n) }

// clientID is the c-… ID hbrtest derives for instanceID(n).
func clientID(n int) string { return fmt.Sprintf("c-%04d", n) }

// register adds n instances i-0000…, with the fake's default fields except
// for every 10th, which gets its own name, versions and status so that the
// mapping of each field is checked.
func register(srv *hbrtest.Server, n int) {
	for i := range n {
		inst := hbrtest.Instance{}
		if i%10 == 0 {
			inst = hbrtest.Instance{Name: fmt.Sprintf("web-%d", i), Version: "2.3.9", MaxVersion: "2.6.0", Status: hbrtest.StatusUnknown}
		}
		srv.SetInstance(instanceID(i), inst)
	}
}

// want is the ClientInfo DescribeBackupClients should return for the n-th
// instance of register.
func want(n int) hbrbot.ClientInfo {
	ci := hbrbot.ClientInfo{ClientID: clientID(n), InstanceID: instanceID(n), InstanceName: fmt.Sprintf("ecs-%04d", n),
		Version: hbrtest.DefaultVersion, MaxVersion: hbrtest.DefaultMaxVersion, Status: hbrtest.StatusActivated}
	if n%10 == 0 {
		ci.InstanceName, ci.Version, ci.MaxVersion, ci.Status = fmt.Sprintf("web-%d", n), "2.3.9", "2.6.0", hbrtest.StatusUnknown
	}
	return ci
}

func wants(ns ...int) []hbrbot.ClientInfo {
	out := make([]hbrbot.ClientInfo, 0, len(ns))
	for _, n := range ns {
		out = append(out, want(n))
	}
	return out
}

func seq(from, to int) []int {
	var out []int
	for i := from; i < to; i++ {
		out = append(out, i)
	}
	return out
}

func ids(f func(int) string, ns ...int) []string {
	out := make([]string, 0, len(ns))
	for _, n := range ns {
		out = append(out, f(n))
	}
	return out
}

// sentIDs decodes the JSON array a call sent as key (nil when absent).
func sentIDs(t *testing.T, c hbrtest.Call, key string) []string {
	t.Helper()
	v, ok := c.Params[key]
	if !ok {
		return nil
	}
	var out []string
	if len(v) != 1 || json.Unmarshal([]byte(v[0]), &out) != nil {
		t.Fatalf("%s = %q, want one JSON array string", key, v)
	}
	return out
}

func TestDescribeBackupClientsResults(t *testing.T) {
	tests := []struct {
		name       string
		registered int
		targets    hbrbot.Targets
		want       []hbrbot.ClientInfo
		// pages lists, per call, the PageNumber and how many IDs of each
		// kind it named.
		pages []string
	}{
		{
			name:       "whole region, 3 pages",
			registered: 250,
			want:       wants(seq(0, 250)...),
			pages:      []string{"1 i0 c0", "2 i0 c0", "3 i0 c0"},
		},
		{
			name:       "exactly one full page",
			registered: 99,
			want:       wants(seq(0, 99)...),
			pages:      []string{"1 i0 c0"},
		},
		{
			name:       "exactly two full pages",
			registered: 198,
			want:       wants(seq(0, 198)...),
			pages:      []string{"1 i0 c0", "2 i0 c0"},
		},
		{
			name:  "empty region",
			want:  nil,
			pages: []string{"1 i0 c0"},
		},
		{
			name:       "a few instances, registration order",
			registered: 250,
			targets:    hbrbot.Targets{InstanceIDs: ids(instanceID, 200, 3, 10)},
			want:       wants(3, 10, 200),
			pages:      []string{"1 i3 c0"},
		},
		{
			name:       "a few clients",
			registered: 250,
			targets:    hbrbot.Targets{ClientIDs: ids(clientID, 7, 120)},
			want:       wants(7, 120),
			pages:      []string{"1 i0 c2"},
		},
		{
			name:       "both kinds: union, instances first, no duplicates",
			registered: 20,
			targets:    hbrbot.Targets{InstanceIDs: ids(instanceID, 5, 1), ClientIDs: ids(clientID, 1, 0)},
			want:       wants(1, 5, 0),
			pages:      []string{"1 i2 c0", "1 i0 c2"},
		},
		{
			name:       "unknown IDs are absent",
			registered: 5,
			targets:    hbrbot.Targets{InstanceIDs: []string{"i-nope", instanceID(2)}, ClientIDs: []string{"c-nope"}},
			want:       wants(2),
			pages:      []string{"1 i2 c0", "1 i0 c1"},
		},
		{
			name:       "150 instances: 2 chunks",
			registered: 250,
			targets:    hbrbot.Targets{InstanceIDs: ids(instanceID, seq(0, 150)...)},
			want:       wants(seq(0, 150)...),
			pages:      []string{"1 i99 c0", "1 i51 c0"},
		},
		{
			name:       "150 clients: 2 chunks",
			registered: 250,
			targets:    hbrbot.Targets{ClientIDs: ids(clientID, seq(100, 250)...)},
			want:       wants(seq(100, 250)...),
			pages:      []string{"1 i0 c99", "1 i0 c51"},
		},
		{
			name:       "100 instances and 50 clients: 3 chunks",
			registered: 250,
			targets:    hbrbot.Targets{InstanceIDs: ids(instanceID, seq(0, 100)...), ClientIDs: ids(clientID, seq(150, 200)...)},
			want:       wants(append(seq(0, 100), seq(150, 200)...)...),
			pages:      []string{"1 i99 c0", "1 i1 c0", "1 i0 c50"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testCtx(t)
			srv := newServer(t)
			register(srv, tt.registered)
			c := newClient(t, testOptions(srv.Host()))

			got, err := c.DescribeBackupClients(ctx, testRegion, tt.targets, nil)
			if err != nil {
				t.Fatalf("DescribeBackupClients: %v", err)
			}
			if len(got) != len(tt.want) {
				t.Errorf("%d clients, want %d", len(got), len(tt.want))
			}
			for i := range min(len(got), len(tt.want)) {
				if got[i] != tt.want[i] {
					t.Errorf("client %d = %+v, want %+v", i, got[i], tt.want[i])
					break
				}
			}
			var pages []string
			for _, call := range srv.Calls(hbrtest.ActionDescribeBackupClients) {
				if call.Status != http.StatusOK {
					t.Errorf("fake answered %d %s", call.Status, call.Code)
				}
				pages = append(pages, fmt.Sprintf("%s i%d c%d", call.Params.Get("PageNumber"),
					len(sentIDs(t, call, "InstanceIds")), len(sentIDs(t, call, "ClientIds"))))
			}
			// A look-up's filters are asked for in parallel.
			slices.Sort(pages)
			want := slices.Sorted(slices.Values(tt.pages))
			if !reflect.DeepEqual(pages, want) {
				t.Errorf("calls = %q, want %q", pages, tt.pages)
			}
		})
	}
}

func TestDescribeBackupClientsWireFormat(t *testing.T) {
	tests := []struct {
		name    string
		region  string
		targets hbrbot.Targets
		cross   *hbrbot.CrossAccount
		want    map[string]string // parameters every call must send as given
		absent  []string          // parameters no call may send
	}{
		{
			name:   "whole region, own account",
			region: testRegion,
			want:   map[string]string{"RegionId": testRegion, "ClientType": "ECS_CLIENT", "PageSize": "99", "PageNumber": "1"},
			absent: []string{"InstanceIds", "ClientIds", "CrossAccountType", "CrossAccountUserId", "CrossAccountRoleName", "SourceType"},
		},
		{
			name:    "instances, cross account, other region",
			region:  "cn-shanghai",
			targets: hbrbot.Targets{InstanceIDs: []string{"i-aaa", "i-bbb"}},
			cross:   &hbrbot.CrossAccount{UserID: 1234567890123456, RoleName: "hbrcrossrole"},
			want: map[string]string{"RegionId": "cn-shanghai", "ClientType": "ECS_CLIENT", "PageSize": "99",
				"InstanceIds": `["i-aaa","i-bbb"]`, "CrossAccountType": "CROSS_ACCOUNT",
				"CrossAccountUserId": "1234567890123456", "CrossAccountRoleName": "hbrcrossrole"},
			absent: []string{"ClientIds"},
		},
		{
			name:    "clients",
			region:  testRegion,
			targets: hbrbot.Targets{ClientIDs: []string{"c-ccc"}},
			want:    map[string]string{"ClientType": "ECS_CLIENT", "PageSize": "99", "ClientIds": `["c-ccc"]`},
			absent:  []string{"InstanceIds", "CrossAccountType"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testCtx(t)
			srv := newServer(t)
			c := newClient(t, testOptions(srv.Host()))
			if _, err := c.DescribeBackupClients(ctx, tt.region, tt.targets, tt.cross); err != nil {
				t.Fatalf("DescribeBackupClients: %v", err)
			}
			calls := srv.Calls(hbrtest.ActionDescribeBackupClients)
			if len(calls) != 1 {
				t.Fatalf("%d calls, want 1", len(calls))
			}
			call := calls[0]
			if call.Method != http.MethodPost || !call.SignatureOK || call.Status != http.StatusOK {
				t.Errorf("call = %s, signature ok %v, answered %d %s", call.Method, call.SignatureOK, call.Status, call.Code)
			}
			checkParams(t, call.Params, tt.want, tt.absent)
		})
	}
}

// A page that fails transiently is asked for again, whichever page it is,
// and the result is still complete and in order.
func TestDescribeBackupClientsRetries(t *testing.T) {
	tests := []struct {
		name   string
		page   int // the call (1-based) before which the fault is injected
		inject func(*hbrtest.Server)
		// wantPages is the PageNumber of every call made.
		wantPages []string
	}{
		{"throttled first page", 1, func(s *hbrtest.Server) {
			s.FailNext(hbrtest.ActionDescribeBackupClients, 2, http.StatusBadRequest, hbrtest.CodeThrottlingUser)
		}, []string{"1", "1", "1", "2", "3"}},
		{"throttled second page", 2, func(s *hbrtest.Server) {
			s.FailNext(hbrtest.ActionDescribeBackupClients, 1, http.StatusBadRequest, hbrtest.CodeThrottling)
		}, []string{"1", "2", "2", "3"}},
		{"throttled in a 200, last page", 3, func(s *hbrtest.Server) {
			s.SuccessFalseNext(hbrtest.ActionDescribeBackupClients, 1, hbrtest.CodeThrottlingUser)
		}, []string{"1", "2", "3", "3"}},
		{"unavailable", 2, func(s *hbrtest.Server) {
			s.FailNext(hbrtest.ActionDescribeBackupClients, 1, http.StatusServiceUnavailable, hbrtest.CodeServiceUnavailable)
		}, []string{"1", "2", "2", "3"}},
		{"timed out", 1, func(s *hbrtest.Server) {
			s.HangNext(hbrtest.ActionDescribeBackupClients, 1, 5*time.Second)
		}, []string{"1", "1", "2", "3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testCtx(t)
			srv := newServer(t)
			register(srv, 250)
			o := testOptions(srv.Host())
			o.Timeout = 500 * time.Millisecond // for the hung call
			// Observe runs after each attempt, before the next one: it
			// injects the fault right before the chosen call.
			var mu sync.Mutex
			next := 1 // the number of the call about to be made
			if tt.page == next {
				tt.inject(srv)
			}
			o.Observe = func(action, _ string, _ time.Duration) {
				mu.Lock()
				defer mu.Unlock()
				if action != hbrtest.ActionDescribeBackupClients {
					return
				}
				if next++; next == tt.page {
					tt.inject(srv)
				}
			}
			c := newClient(t, o)

			got, err := c.DescribeBackupClients(ctx, testRegion, hbrbot.Targets{}, nil)
			if err != nil {
				t.Fatalf("DescribeBackupClients: %v", err)
			}
			if !reflect.DeepEqual(got, wants(seq(0, 250)...)) {
				t.Errorf("got %d clients, not the 250 registered in order", len(got))
			}
			var pages []string
			for _, call := range srv.Calls(hbrtest.ActionDescribeBackupClients) {
				pages = append(pages, call.Params.Get("PageNumber"))
			}
			if !reflect.DeepEqual(pages, tt.wantPages) {
				t.Errorf("pages asked = %q, want %q", pages, tt.wantPages)
			}
		})
	}
}

func TestDescribeBackupClientsErrors(t *testing.T) {
	tests := []struct {
		name      string
		inject    func(*hbrtest.Server)
		wantCalls int
		wantCode  string
		wantText  string
	}{
		{"Success false", func(s *hbrtest.Server) {
			s.SuccessFalseNext(hbrtest.ActionDescribeBackupClients, 1, hbrtest.CodeInvalidParameter)
		}, 1, hbrtest.CodeInvalidParameter, "describe backup clients (2 InstanceIds from i-0001, page 1)"},
		{"forbidden", func(s *hbrtest.Server) {
			s.FailNext(hbrtest.ActionDescribeBackupClients, 1, http.StatusForbidden, "Forbidden.RAM")
		}, 1, "Forbidden.RAM", "describe backup clients"},
		{"throttled for good", func(s *hbrtest.Server) {
			s.FailNext(hbrtest.ActionDescribeBackupClients, 1000, http.StatusBadRequest, hbrtest.CodeThrottlingUser)
		}, -1, hbrtest.CodeThrottlingUser, "describe backup clients"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testCtx(t)
			srv := newServer(t)
			register(srv, 5)
			o := testOptions(srv.Host())
			o.RetryFor = 100 * time.Millisecond
			c := newClient(t, o)
			tt.inject(srv)

			got, err := c.DescribeBackupClients(ctx, testRegion, hbrbot.Targets{InstanceIDs: ids(instanceID, 1, 2)}, nil)
			checkErr(t, err)
			if got != nil {
				t.Errorf("got %v with the error", got)
			}
			if code := hbrbot.ErrorCode(err); code != tt.wantCode {
				t.Errorf("ErrorCode = %q, want %q (err %v)", code, tt.wantCode, err)
			}
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("error %q does not say %q", err, tt.wantText)
			}
			n := len(srv.Calls(hbrtest.ActionDescribeBackupClients))
			if tt.wantCalls >= 0 && n != tt.wantCalls {
				t.Errorf("%d calls, want %d", n, tt.wantCalls)
			}
			if tt.wantCalls < 0 && n < 2 {
				t.Errorf("%d calls, want retries", n)
			}
		})
	}
}

// TestDescribeBackupClientsStops: paging ends when TotalCount clients have
// come or a page is empty, whatever HBR claims; a garbled page is read again.
func TestDescribeBackupClientsStops(t *testing.T) {
	const headers = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
	page := func(total string, ids ...string) string {
		var cs []string
		for _, id := range ids {
			cs = append(cs, fmt.Sprintf(`{"ClientId":"c-%s","InstanceId":"i-%s","ClientVersion":"2.4.0","MaxClientVersion":"2.5.1","Status":"ACTIVATED"}`, id, id))
		}
		return fmt.Sprintf(`{"RequestId":"R","Success":true,"Code":"200","TotalCount":%s,"PageNumber":1,"PageSize":99,"Clients":[%s]}`,
			total, strings.Join(cs, ","))
	}
	tests := []struct {
		name      string
		pages     []string // answer to each call; the last repeats
		wantIDs   []string
		wantCalls int64
	}{
		{"TotalCount overstated, empty page ends", []string{page("500", "a", "b"), page("500")}, []string{"c-a", "c-b"}, 2},
		{"TotalCount reached", []string{page("3", "a", "b"), page("3", "c"), page("3", "never")}, []string{"c-a", "c-b", "c-c"}, 2},
		{"TotalCount as a string", []string{page(`"2"`, "a"), page(`"2"`, "b")}, []string{"c-a", "c-b"}, 2},
		{"no TotalCount: one page", []string{page("null", "a"), page("null", "never")}, []string{"c-a"}, 1},
		{"repeated client listed once", []string{page("2", "a"), page("2", "a")}, []string{"c-a"}, 2},
		{"garbled page read again", []string{page("2", "a"), `{"RequestId":`, page("2", "b")}, []string{"c-a", "c-b"}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testCtx(t)
			host, calls := rawServer(t, func(n int64, conn net.Conn) {
				body := tt.pages[min(int(n), len(tt.pages))-1]
				fmt.Fprintf(conn, headers+"%s", len(body), body)
			})
			c := newClient(t, testOptions(host))
			got, err := c.DescribeBackupClients(ctx, testRegion, hbrbot.Targets{}, nil)
			if err != nil {
				t.Fatalf("DescribeBackupClients: %v", err)
			}
			var gotIDs []string
			for _, ci := range got {
				gotIDs = append(gotIDs, ci.ClientID)
			}
			if !reflect.DeepEqual(gotIDs, tt.wantIDs) {
				t.Errorf("clients = %q, want %q", gotIDs, tt.wantIDs)
			}
			if n := calls.Load(); n != tt.wantCalls {
				t.Errorf("%d calls, want %d", n, tt.wantCalls)
			}
		})
	}
}
