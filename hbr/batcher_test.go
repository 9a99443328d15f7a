package hbr

import (
	"context"
	"maps"
	"net/http"
	"reflect"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hbrbot/hbrbot"
	"github.com/hbrbot/hbrbot/hbrtest"
)

func targetsOf(ns ...int) hbrbot.Targets {
	var t hbrbot.Targets
	for _, n := range ns {
		t.InstanceIDs = append(t.InstanceIDs, instanceID(n))
	}
	return t
}

// TestBatcherMerges: look-ups of one region and account that wait at the
// same moment share calls of at most a page of IDs, and each waiter gets
// exactly the clients it asked for. Each full page goes at once; the rest
// when the window ends (here an hour: the test ends it once the full pages
// went). The ID filters go in the form body.
func TestBatcherMerges(t *testing.T) {
	tests := []struct {
		name      string
		waiters   [][]int // each waiter's instance numbers
		wantCalls []int   // IDs named by each call, sorted
	}{
		{"three look-ups of 33 IDs: one call", [][]int{seq(0, 33), seq(33, 66), seq(66, 99)}, []int{99}},
		{"two of 60: a page and the rest", [][]int{seq(0, 60), seq(60, 120)}, []int{21, 99}},
		// Not two pages each: the last ID of a job shares the next one's page.
		{"two of 100: two pages and the rest", [][]int{seq(0, 100), seq(100, 200)}, []int{2, 99, 99}},
		{"overlapping IDs named once", [][]int{seq(0, 45), seq(30, 75), seq(60, 99)}, []int{99}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testCtx(t)
			srv := newServer(t)
			register(srv, 200)
			o := testOptions(srv.Host())
			o.LookupWindow = time.Hour
			c := newClient(t, o)
			got := make([][]hbrbot.ClientInfo, len(tc.waiters))
			errs := make([]error, len(tc.waiters))
			var wg sync.WaitGroup
			for i, ns := range tc.waiters {
				wg.Go(func() { got[i], errs[i] = c.DescribeBackupClients(ctx, testRegion, targetsOf(ns...), nil) })
			}
			full := 0
			for _, n := range tc.wantCalls {
				if n == describePageSize {
					full++
				}
			}
			if _, err := srv.WaitCalls(ctx, hbrtest.ActionDescribeBackupClients, full); err != nil {
				t.Fatalf("full pages not sent at once: %v", err)
			}
			endWindows(c)
			wg.Wait()
			for i, ns := range tc.waiters {
				if errs[i] != nil {
					t.Fatalf("waiter %d: %v", i, errs[i])
				}
				if !reflect.DeepEqual(got[i], wants(ns...)) {
					t.Errorf("waiter %d got %d clients, want %d (or not the same)", i, len(got[i]), len(ns))
				}
			}
			var sizes []int
			for _, call := range srv.Calls(hbrtest.ActionDescribeBackupClients) {
				if call.Query.Has("InstanceIds") || !call.Form.Has("InstanceIds") {
					t.Errorf("InstanceIds not (only) in the form: query %v form %v", call.Query, call.Form)
				}
				sizes = append(sizes, len(sentIDs(t, call, "InstanceIds")))
			}
			slices.Sort(sizes)
			if !slices.Equal(sizes, tc.wantCalls) {
				t.Errorf("calls named %v IDs, want %v", sizes, tc.wantCalls)
			}
		})
	}
}

// mergingClient is a client whose look-ups merge (a window of an hour:
// batches go when full or when the test ends their window), against a
// fake with 100 clients.
func mergingClient(t *testing.T) (context.Context, *hbrtest.Server, *Client) {
	t.Helper()
	srv := newServer(t)
	register(srv, 100)
	o := testOptions(srv.Host())
	o.LookupWindow = time.Hour
	return testCtx(t), srv, newClient(t, o)
}

// leave makes a look-up of ns whose context has ended: it joins the open
// batch and leaves at once.
func leave(t *testing.T, ctx context.Context, c *Client, ns []int) {
	t.Helper()
	gone, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := c.DescribeBackupClients(gone, testRegion, targetsOf(ns...), nil); err != context.Canceled {
		t.Fatalf("left waiter: %v", err)
	}
}

// endWindows ends the window of every open batch of c, as its timer would.
func endWindows(c *Client) {
	bt := c.lookups
	bt.mu.Lock()
	open := slices.Collect(maps.Values(bt.open))
	bt.mu.Unlock()
	for _, b := range open {
		bt.due(b)
	}
}

// TestBatcherKeys: look-ups of other regions or accounts are not merged.
func TestBatcherKeys(t *testing.T) {
	ctx := testCtx(t)
	srv := newServer(t)
	register(srv, 10)
	o := testOptions(srv.Host())
	o.LookupWindow = 50 * time.Millisecond // these never fill a page
	c := newClient(t, o)
	cross := &hbrbot.CrossAccount{UserID: 1234567890123456, RoleName: "hbrcrossrole"}
	var wg sync.WaitGroup
	for _, k := range []struct {
		region string
		cross  *hbrbot.CrossAccount
	}{{testRegion, nil}, {"cn-shanghai", nil}, {testRegion, cross}} {
		wg.Go(func() {
			if _, err := c.DescribeBackupClients(ctx, k.region, targetsOf(1, 2), k.cross); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if n := len(srv.Calls(hbrtest.ActionDescribeBackupClients)); n != 3 {
		t.Errorf("%d calls, want 3 (one per region and account)", n)
	}
}

// TestBatcherErrorsAndLeaving: a failed shared call's error reaches every
// waiter that needed it; a waiter whose context ends leaves, and the
// others still get their answer.
func TestBatcherErrorsAndLeaving(t *testing.T) {
	t.Run("error to every waiter", func(t *testing.T) {
		ctx := testCtx(t)
		srv := newServer(t)
		register(srv, 100)
		srv.FailNext(hbrtest.ActionDescribeBackupClients, 1, http.StatusForbidden, "Forbidden.RAM")
		o := testOptions(srv.Host())
		o.LookupWindow = time.Hour
		c := newClient(t, o)
		errs := make([]error, 3)
		var wg sync.WaitGroup
		for i := range 3 {
			wg.Go(func() { _, errs[i] = c.DescribeBackupClients(ctx, testRegion, targetsOf(seq(33*i, 33*i+33)...), nil) })
		}
		wg.Wait()
		for i, err := range errs {
			if hbrbot.ErrorCode(err) != "Forbidden.RAM" {
				t.Errorf("waiter %d: %v, want Forbidden.RAM", i, err)
			}
		}
		if n := len(srv.Calls(hbrtest.ActionDescribeBackupClients)); n != 1 {
			t.Errorf("%d calls, want 1", n)
		}
	})
	t.Run("a waiter leaves: its IDs take no place in a page", func(t *testing.T) {
		ctx, srv, c := mergingClient(t)
		// Joins the batch, then leaves at once: its context has ended.
		leave(t, ctx, c, seq(0, 50))
		var wg sync.WaitGroup
		var got, other []hbrbot.ClientInfo
		var err, otherErr error
		wg.Go(func() { got, err = c.DescribeBackupClients(ctx, testRegion, targetsOf(seq(40, 60)...), nil) })
		openIDs(t, ctx, c, 20)
		other, otherErr = c.DescribeBackupClients(ctx, testRegion, targetsOf(seq(60, 139)...), nil) // fills the page
		wg.Wait()
		if err != nil || otherErr != nil {
			t.Fatal(err, otherErr)
		}
		if !reflect.DeepEqual(got, wants(seq(40, 60)...)) || !reflect.DeepEqual(other, wants(seq(60, 100)...)) {
			t.Errorf("got %d and %d clients, want 20 and the 40 registered", len(got), len(other))
		}
		calls := srv.Calls(hbrtest.ActionDescribeBackupClients)
		if len(calls) != 1 || len(sentIDs(t, calls[0], "InstanceIds")) != 99 {
			t.Errorf("%d calls, want 1 of the remaining waiters' 99 IDs", len(calls))
		}
	})
	t.Run("all waiters leave: no call", func(t *testing.T) {
		ctx, srv, c := mergingClient(t)
		leave(t, ctx, c, seq(0, 50))
		endWindows(c)
		if _, err := c.DescribeBackupClients(ctx, testRegion, targetsOf(seq(50, 149)...), nil); err != nil { // a page of its own
			t.Fatal(err)
		}
		calls := srv.Calls(hbrtest.ActionDescribeBackupClients)
		if len(calls) != 1 || len(sentIDs(t, calls[0], "InstanceIds")) != 99 {
			t.Errorf("%d calls, want 1 of the second waiter's 99 IDs", len(calls))
		}
	})
}

// TestThrottlingReported: a Throttling answer is reported to the budget
// for that action, and the call retried.
func TestThrottlingReported(t *testing.T) {
	ctx := testCtx(t)
	srv := newServer(t)
	srv.FailNext(hbrtest.ActionDescribeTask, 1, http.StatusBadRequest, hbrtest.CodeThrottlingUser)
	b := &stepBudget{grants: make(chan struct{}, 10), throttled: make(chan string, 10)}
	for range 10 {
		b.grants <- struct{}{}
	}
	o := testOptions(srv.Host())
	o.Budget = b
	c := newClient(t, o)
	task := startJob(t, ctx, c, "i-a")
	if _, err := c.DescribeTask(WithPriority(ctx, Priority{Class: Informs}), testRegion, task); err != nil {
		t.Fatal(err)
	}
	select {
	case a := <-b.throttled:
		if a != "DescribeTask" {
			t.Errorf("throttled %q", a)
		}
	default:
		t.Error("throttling not reported")
	}
	if n := len(b.grants); n != 7 {
		t.Errorf("%d grants used, want 3 (a submission, a throttled poll, its retry)", 10-n)
	}
}

// openIDs waits until the open batch of testRegion holds n IDs.
func openIDs(t *testing.T, ctx context.Context, c *Client, n int) {
	t.Helper()
	for {
		c.lookups.mu.Lock()
		got := 0
		if b := c.lookups.open[lookupKey{region: testRegion}]; b != nil {
			got = len(b.inst)
		}
		c.lookups.mu.Unlock()
		if got == n {
			return
		}
		if ctx.Err() != nil {
			t.Fatalf("the open batch holds %d IDs, want %d", got, n)
		}
		runtime.Gosched()
	}
}

// TestBatcherRestWaitsForBudget: under a budget the rest of a batch is
// cut into its page only once the budget has a call for it, so a look-up
// that comes while it waits shares that call, and the call takes no
// second grant.
func TestBatcherRestWaitsForBudget(t *testing.T) {
	ctx := testCtx(t)
	srv := newServer(t)
	register(srv, 100)
	b := &stepBudget{grants: make(chan struct{})}
	o := testOptions(srv.Host())
	o.LookupWindow = time.Hour
	o.Budget = b
	c := newClient(t, o)
	var wg sync.WaitGroup
	got := make([][]hbrbot.ClientInfo, 2)
	errs := make([]error, 2)
	wg.Go(func() { got[0], errs[0] = c.DescribeBackupClients(ctx, testRegion, targetsOf(seq(0, 10)...), nil) })
	openIDs(t, ctx, c, 10)
	endWindows(c) // the rest now waits for a grant
	wg.Go(func() { got[1], errs[1] = c.DescribeBackupClients(ctx, testRegion, targetsOf(seq(10, 30)...), nil) })
	openIDs(t, ctx, c, 30)
	b.grants <- struct{}{}
	wg.Wait()
	for i, want := range [][]int{seq(0, 10), seq(10, 30)} {
		if errs[i] != nil || !reflect.DeepEqual(got[i], wants(want...)) {
			t.Errorf("waiter %d: %d clients, %v", i, len(got[i]), errs[i])
		}
	}
	calls := srv.Calls(hbrtest.ActionDescribeBackupClients)
	if len(calls) != 1 || len(sentIDs(t, calls[0], "InstanceIds")) != 30 {
		t.Errorf("%d calls, want 1 of both look-ups' 30 IDs", len(calls))
	}
}
