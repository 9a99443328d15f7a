package hbrtest

import (
	"net/http"
	"sync"
	"testing"
	"time"
)

// fakeClock is a settable clock for SetNow.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time      { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *fakeClock) add(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// TestSDKQuota: through the real SDK, each action accepts its quota of
// calls in a rolling minute and answers 400 Throttling.User beyond, doing
// no work; the other actions keep their own quota; the window rolls.
func TestSDKQuota(t *testing.T) {
	s := newServer(t, WithQuota(3))
	clock := &fakeClock{t: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)}
	s.SetNow(clock.now)
	c := akClient(t, DefaultAccessKeyID, DefaultSecret)
	s.SetInstance("i-a", Instance{})

	describe := params{query: map[string]string{"ClientType": "ECS_CLIENT"}, form: map[string]string{"InstanceIds": ids("i-a")}}
	upgrade := params{query: map[string]string{"InstanceIds": ids("i-a")}}
	steps := []struct {
		name      string
		advance   time.Duration
		action    string
		p         params
		throttled bool
	}{
		{"1st", 0, ActionDescribeBackupClients, describe, false},
		{"2nd", 10 * time.Second, ActionDescribeBackupClients, describe, false},
		{"3rd", 10 * time.Second, ActionDescribeBackupClients, describe, false},
		{"4th within the minute", 10 * time.Second, ActionDescribeBackupClients, describe, true},
		{"other action has its own quota", 0, ActionUpgradeBackupClients, upgrade, false},
		{"still over: refused calls do not count, but the window has not rolled", 29 * time.Second, ActionDescribeBackupClients, describe, true},
		{"the 1st call left the window", time.Second, ActionDescribeBackupClients, describe, false},
		{"full again", 0, ActionDescribeBackupClients, describe, true},
	}
	wantThrottled := 0
	for _, st := range steps {
		clock.add(st.advance)
		_, err := sdkCall(c, s, st.action, st.p)
		if !st.throttled {
			if err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
			continue
		}
		wantThrottled++
		se := serverError(t, err)
		if se.HttpStatus() != http.StatusBadRequest || se.ErrorCode() != CodeThrottlingUser {
			t.Fatalf("%s: %d %s, want 400 %s", st.name, se.HttpStatus(), se.ErrorCode(), CodeThrottlingUser)
		}
	}
	if got := s.Throttled(ActionDescribeBackupClients); got != wantThrottled {
		t.Errorf("Throttled = %d, want %d", got, wantThrottled)
	}
	if got := len(s.Jobs()); got != 1 {
		t.Errorf("%d jobs, want 1", got)
	}
}

// TestSDKDescribeFiltersAreFormParameters: DescribeBackupClients' ID
// filters are form parameters (style json); in the query they are refused.
func TestSDKDescribeFiltersAreFormParameters(t *testing.T) {
	s := newServer(t)
	c := akClient(t, DefaultAccessKeyID, DefaultSecret)
	s.SetInstance("i-a", Instance{})
	tests := []struct {
		name string
		p    params
		ok   bool
	}{
		{"InstanceIds in the form", params{query: map[string]string{"ClientType": "ECS_CLIENT"}, form: map[string]string{"InstanceIds": ids("i-a")}}, true},
		{"ClientIds in the form", params{query: map[string]string{"ClientType": "ECS_CLIENT"}, form: map[string]string{"ClientIds": ids("c-a")}}, true},
		{"InstanceIds in the query", params{query: map[string]string{"ClientType": "ECS_CLIENT", "InstanceIds": ids("i-a")}}, false},
		{"ClientIds in the query", params{query: map[string]string{"ClientType": "ECS_CLIENT", "ClientIds": ids("c-a")}}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out clientsOut
			if tc.ok {
				mustOK(t, c, s, ActionDescribeBackupClients, tc.p, &out)
				if out.TotalCount != 1 {
					t.Fatalf("total %d", out.TotalCount)
				}
				return
			}
			_, err := sdkCall(c, s, ActionDescribeBackupClients, tc.p)
			if se := serverError(t, err); se.HttpStatus() != http.StatusBadRequest || se.ErrorCode() != CodeInvalidParameter {
				t.Fatalf("%d %s", se.HttpStatus(), se.ErrorCode())
			}
		})
	}
}
