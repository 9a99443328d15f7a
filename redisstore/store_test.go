package redisstore

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/hbrbot/hbrbot"
	"github.com/hbrbot/hbrbot/internal/redistest"
)

// ---- helpers ----

func newStore(t *testing.T) (*Store, *redis.Client) {
	t.Helper()
	srv := redistest.Start(t)
	rdb := srv.Client()
	return New(rdb), rdb
}

func testCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// base is a wall-clock time near now (request TTLs count from the real
// clock), in UTC without a monotonic reading and at millisecond precision,
// so that it survives JSON and Redis scores unchanged.
func base() time.Time { return time.Now().UTC().Truncate(time.Millisecond) }

// newRequest is a pending request naming n instance IDs and one client ID,
// cross-account, created at created and expiring an hour later.
func newRequest(id, channel string, created time.Time, n int) hbrbot.Request {
	var ids []string
	for i := range n {
		ids = append(ids, fmt.Sprintf("i-%s-%03d", id, i))
	}
	return hbrbot.Request{
		ID:          id,
		TeamID:      "T0001",
		ChannelID:   channel,
		RequesterID: "U0001",
		Spec: hbrbot.UpgradeSpec{
			Targets:      hbrbot.Targets{InstanceIDs: ids, ClientIDs: []string{"c-" + id}},
			Region:       "cn-shanghai",
			CrossAccount: &hbrbot.CrossAccount{UserID: 1234567890123456, RoleName: "hbrcrossrole"},
		},
		State:     hbrbot.RequestPending,
		CreatedAt: created,
		ExpiresAt: created.Add(time.Hour),
	}
}

// batchesOf builds the batches an approval of r creates.
func batchesOf(r hbrbot.Request, threadTS string) []hbrbot.Batch {
	parts := r.BatchTargets()
	out := make([]hbrbot.Batch, len(parts))
	for i, p := range parts {
		out[i] = hbrbot.Batch{
			BatchStatus: hbrbot.BatchStatus{
				RequestID: r.ID, Index: i, Of: len(parts),
				Region: r.Spec.Region, CrossAccount: r.Spec.CrossAccount,
				ChannelID: r.ChannelID, ThreadTS: threadTS, State: hbrbot.BatchPending,
			},
			BatchSpec: hbrbot.BatchSpec{Targets: p},
		}
	}
	return out
}

func mustCreate(t *testing.T, ctx context.Context, s *Store, r hbrbot.Request) {
	t.Helper()
	if err := s.CreateRequest(ctx, r); err != nil {
		t.Fatalf("CreateRequest(%s): %v", r.ID, err)
	}
}

// mustRequest reads request id. Redis keeps the decision's time in
// milliseconds, read back in the local zone: it is returned in UTC, like
// base, so that whole requests compare with reflect.DeepEqual.
func mustRequest(t *testing.T, ctx context.Context, s *Store, id string) hbrbot.Request {
	t.Helper()
	r, err := s.Request(ctx, id)
	if err != nil {
		t.Fatalf("Request(%s): %v", id, err)
	}
	r.DecidedAt, r.ProgressAt = r.DecidedAt.UTC(), r.ProgressAt.UTC()
	return r
}

const cardTS = "1700000000.000100"

func expiryWork(id string) hbrbot.Work { return hbrbot.Work{Kind: hbrbot.WorkExpiry, ID: id} }
func cardWork(id string) hbrbot.Work   { return hbrbot.Work{Kind: hbrbot.WorkCardSync, ID: id} }

func batchWork(requestID string, i int) hbrbot.Work {
	return hbrbot.Work{Kind: hbrbot.WorkBatch, ID: hbrbot.BatchKey(requestID, i)}
}

// versionOf is what a change built from r as read expects.
func versionOf(r hbrbot.Request) hbrbot.RequestVersion {
	return hbrbot.RequestVersion{State: r.State, Approvals: r.Approvals}
}

// approval is a change, built from r as read, in which by approves r at
// at, for good: by joins the approvals, r is approved, its expiry ends and
// its batches are created, each due at once with a card sync. (How many
// approvals a request needs is package upgrade's rule, not the store's.)
func approval(r hbrbot.Request, by string, at time.Time) hbrbot.RequestChange {
	ch := hbrbot.RequestChange{
		Expect:     versionOf(r),
		State:      hbrbot.RequestApproved,
		Approvals:  append(slices.Clone(r.Approvals), by),
		DecidedBy:  by,
		DecidedAt:  at,
		CardTS:     cardTS,
		Batches:    batchesOf(r, cardTS),
		Unschedule: []hbrbot.Work{expiryWork(r.ID)},
		Schedule:   []hbrbot.Due{{Work: cardWork(r.ID), At: at}},
	}
	for _, b := range ch.Batches {
		ch.Schedule = append(ch.Schedule, hbrbot.Due{Work: batchWork(r.ID, b.Index), At: at})
	}
	return ch
}

// approvalStep is a change, built from r as read, in which by approves r
// at at, short of the number: r stays pending, its card syncs.
func approvalStep(r hbrbot.Request, by string, at time.Time) hbrbot.RequestChange {
	return hbrbot.RequestChange{
		Expect:    versionOf(r),
		State:     hbrbot.RequestPending,
		Approvals: append(slices.Clone(r.Approvals), by),
		Schedule:  []hbrbot.Due{{Work: cardWork(r.ID), At: at}},
	}
}

// ending is a change, built from r as read, that cancels or expires r at
// at: its expiry ends, its card syncs, no batch is created.
func ending(r hbrbot.Request, state hbrbot.RequestState, by string, at time.Time) hbrbot.RequestChange {
	return hbrbot.RequestChange{
		Expect:     versionOf(r),
		State:      state,
		Approvals:  r.Approvals,
		DecidedBy:  by,
		DecidedAt:  at,
		CardTS:     cardTS,
		Unschedule: []hbrbot.Work{expiryWork(r.ID)},
		Schedule:   []hbrbot.Due{{Work: cardWork(r.ID), At: at}},
	}
}

// applied is r as a change ch stored on it reads back.
func applied(r hbrbot.Request, ch hbrbot.RequestChange) hbrbot.Request {
	r.State, r.Approvals = ch.State, slices.Clone(ch.Approvals)
	if len(r.Approvals) == 0 {
		r.Approvals = nil
	}
	if ch.DecidedBy != "" || !ch.DecidedAt.IsZero() {
		r.DecidedBy, r.DecidedAt = ch.DecidedBy, ch.DecidedAt
	}
	if ch.CardTS != "" {
		r.CardTS = ch.CardTS
	}
	return r
}

func mustChange(t *testing.T, ctx context.Context, s *Store, id string, ch hbrbot.RequestChange) {
	t.Helper()
	if err := s.ChangeRequest(ctx, id, ch); err != nil {
		t.Fatalf("ChangeRequest(%s, to %s %v): %v", id, ch.State, ch.Approvals, err)
	}
}

// mustApprove creates r and approves it at at.
func mustApprove(t *testing.T, ctx context.Context, s *Store, r hbrbot.Request, at time.Time) hbrbot.RequestChange {
	t.Helper()
	mustCreate(t, ctx, s, r)
	ch := approval(mustRequest(t, ctx, s, r.ID), "U0002", at)
	mustChange(t, ctx, s, r.ID, ch)
	return ch
}

// score is the schedule's score of w; ok false when w is not scheduled.
func score(t *testing.T, ctx context.Context, rdb *redis.Client, w hbrbot.Work) (float64, bool) {
	t.Helper()
	v, err := rdb.ZScore(ctx, keyDue, member(w)).Result()
	if errors.Is(err, redis.Nil) {
		return 0, false
	}
	if err != nil {
		t.Fatalf("ZSCORE %s: %v", member(w), err)
	}
	return v, true
}

func tokenScore(t *testing.T, l hbrbot.Lease) float64 {
	t.Helper()
	f, err := strconv.ParseFloat(l.Token, 64)
	if err != nil {
		t.Fatalf("lease token %q is not a number: %v", l.Token, err)
	}
	return f
}

func claim(t *testing.T, ctx context.Context, s *Store, now time.Time, n int, lease time.Duration) []hbrbot.Lease {
	t.Helper()
	ls, err := s.ClaimDue(ctx, now, n, lease)
	if err != nil {
		t.Fatalf("ClaimDue(%v): %v", now, err)
	}
	return ls
}

func works(ls []hbrbot.Lease) []string {
	var out []string
	for _, l := range ls {
		out = append(out, member(l.Work))
	}
	slices.Sort(out)
	return out
}

func leaseOf(t *testing.T, ls []hbrbot.Lease, w hbrbot.Work) hbrbot.Lease {
	t.Helper()
	for _, l := range ls {
		if l.Work == w {
			return l
		}
	}
	t.Fatalf("no lease on %s among %v", member(w), works(ls))
	return hbrbot.Lease{}
}

func mustStatus(t *testing.T, ctx context.Context, s *Store, key string) hbrbot.BatchStatus {
	t.Helper()
	b, err := s.BatchStatus(ctx, key)
	if err != nil {
		t.Fatalf("BatchStatus(%s): %v", key, err)
	}
	return b
}

func mustSpec(t *testing.T, ctx context.Context, s *Store, key string) hbrbot.BatchSpec {
	t.Helper()
	sp, err := s.BatchSpec(ctx, key)
	if err != nil {
		t.Fatalf("BatchSpec(%s): %v", key, err)
	}
	return sp
}

// dump is everything the database holds, key by key (expiries aside): two
// dumps differ if anything was written in between.
func dump(t *testing.T, ctx context.Context, rdb *redis.Client) map[string]string {
	t.Helper()
	out := map[string]string{}
	iter := rdb.Scan(ctx, 0, "*", 100).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		var v any
		var err error
		switch typ := rdb.Type(ctx, k).Val(); typ {
		case "string":
			v, err = rdb.Get(ctx, k).Result()
		case "hash":
			v, err = rdb.HGetAll(ctx, k).Result()
		case "zset":
			v, err = rdb.ZRangeWithScores(ctx, k, 0, -1).Result()
		default:
			t.Fatalf("key %s has type %q", k, typ)
		}
		if err != nil {
			t.Fatalf("read %s: %v", k, err)
		}
		out[k] = fmt.Sprint(v) // fmt prints maps sorted
	}
	if err := iter.Err(); err != nil {
		t.Fatalf("SCAN: %v", err)
	}
	return out
}

// ---- requests and their changes ----

func TestCreateRequestRoundTrip(t *testing.T) {
	ctx := testCtx(t)
	s, _ := newStore(t)
	t0 := base()

	tests := []struct {
		name string
		req  hbrbot.Request
	}{
		{"cross account with card", func() hbrbot.Request {
			r := newRequest("rt-cross", "C0001", t0, 3)
			r.CardTS = "1700000000.123456"
			r.RequiredApprovals = 2
			r.Preflight = []hbrbot.ClientInfo{{ClientID: "c-rt-cross", InstanceID: "i-rt-cross-000", Version: "2.4.0"}}
			return r
		}()},
		{"same account, clients only, default region, look-up failed", hbrbot.Request{
			ID: "rt-plain", TeamID: "T0002", ChannelID: "C0002", RequesterID: "W0002",
			Spec:  hbrbot.UpgradeSpec{Targets: hbrbot.Targets{ClientIDs: []string{"c-1", "c-2"}}},
			State: hbrbot.RequestPending, CreatedAt: t0, ExpiresAt: t0.Add(time.Minute),
			PreflightFailure: hbrbot.FailureTimeout,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mustCreate(t, ctx, s, tt.req)
			got, err := s.Request(ctx, tt.req.ID)
			if err != nil {
				t.Fatalf("Request: %v", err)
			}
			if !reflect.DeepEqual(got, tt.req) {
				t.Errorf("Request round trip:\n got %+v\nwant %+v", got, tt.req)
			}
		})
	}
}

// TestChangeRequestWritesChange: a change that finds the request as it
// expects is stored whole: the request's fields, the batches it creates
// (status and spec) and the work it schedules and ends.
func TestChangeRequestWritesChange(t *testing.T) {
	t0 := base()
	at := t0.Add(time.Minute)

	tests := []struct {
		name   string
		ids    int // instance IDs, besides the one client ID
		change func(r hbrbot.Request) hbrbot.RequestChange
		// wantDue is the work due at at, none of it sooner; wantExpiry,
		// whether the expiry is still scheduled (at ExpiresAt, later).
		wantDue    []string
		wantExpiry bool
	}{
		{"approval creating 3 batches", 2*hbrbot.MaxBatchSize + 49, // 250 IDs
			func(r hbrbot.Request) hbrbot.RequestChange { return approval(r, "U0002", at) },
			[]string{"bat:%s.0", "bat:%s.1", "bat:%s.2", "card:%s"}, false},
		{"approval short of the number", 3,
			func(r hbrbot.Request) hbrbot.RequestChange { return approvalStep(r, "U0002", at) },
			[]string{"card:%s"}, true},
		{"approvals written in their order", 3,
			func(r hbrbot.Request) hbrbot.RequestChange {
				ch := approvalStep(r, "U0003", at)
				ch.Approvals = []string{"U0003", "U0002"}
				return ch
			},
			[]string{"card:%s"}, true},
		{"cancellation", 3,
			func(r hbrbot.Request) hbrbot.RequestChange {
				return ending(r, hbrbot.RequestCancelled, "U0002", at)
			},
			[]string{"card:%s"}, false},
		{"expiry: decided at, by nobody", 3,
			func(r hbrbot.Request) hbrbot.RequestChange { return ending(r, hbrbot.RequestExpired, "", at) },
			[]string{"card:%s"}, false},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testCtx(t)
			s, rdb := newStore(t)
			r := newRequest(fmt.Sprintf("req-%d", i), "C0001", t0, tt.ids)
			mustCreate(t, ctx, s, r)
			if _, ok := score(t, ctx, rdb, expiryWork(r.ID)); !ok {
				t.Fatal("CreateRequest did not schedule the request's expiry")
			}
			read := mustRequest(t, ctx, s, r.ID)
			ch := tt.change(read)
			if err := s.ChangeRequest(ctx, r.ID, ch); err != nil {
				t.Fatalf("ChangeRequest: %v", err)
			}

			want := applied(read, ch)
			if got := mustRequest(t, ctx, s, r.ID); !reflect.DeepEqual(got, want) {
				t.Errorf("Request after the change:\n got %+v\nwant %+v", got, want)
			}

			for _, b := range ch.Batches {
				if got := mustStatus(t, ctx, s, b.Key()); !reflect.DeepEqual(got, b.BatchStatus) {
					t.Errorf("BatchStatus(%s):\n got %+v\nwant %+v", b.Key(), got, b.BatchStatus)
				}
				if got := mustSpec(t, ctx, s, b.Key()); !reflect.DeepEqual(got, b.BatchSpec) {
					t.Errorf("BatchSpec(%s):\n got %+v\nwant %+v", b.Key(), got, b.BatchSpec)
				}
				for _, k := range []string{keyBatch(b.Key()), keyBatchSpec(b.Key())} {
					if ttl := rdb.PTTL(ctx, k).Val(); ttl <= 0 {
						t.Errorf("%s has no expiry (PTTL %v)", k, ttl)
					}
				}
			}
			bs, err := s.Batches(ctx, r.ID)
			if err != nil || len(bs) != len(ch.Batches) || (len(bs) > 0 && !reflect.DeepEqual(bs, ch.Batches)) {
				t.Errorf("Batches = %+v, %v; want the %d created, in order", bs, err, len(ch.Batches))
			}
			sts, err := s.BatchStatuses(ctx, r.ID)
			if err != nil || len(sts) != len(ch.Batches) {
				t.Fatalf("BatchStatuses = %d, %v; want %d", len(sts), err, len(ch.Batches))
			}
			for i, st := range sts {
				if !reflect.DeepEqual(st, ch.Batches[i].BatchStatus) {
					t.Errorf("BatchStatuses[%d] = %+v, want %+v", i, st, ch.Batches[i].BatchStatus)
				}
			}
			if _, err := s.BatchStatus(ctx, hbrbot.BatchKey(r.ID, len(ch.Batches))); !errors.Is(err, hbrbot.ErrNotFound) {
				t.Errorf("BatchStatus past the last batch = %v, want ErrNotFound", err)
			}

			if _, ok := score(t, ctx, rdb, expiryWork(r.ID)); ok != tt.wantExpiry {
				t.Errorf("expiry scheduled = %v, want %v", ok, tt.wantExpiry)
			}
			wantN := int64(len(tt.wantDue))
			if tt.wantExpiry {
				wantN++
			}
			if n, err := s.Scheduled(ctx); err != nil || n != wantN {
				t.Errorf("Scheduled = %d, %v; want %d", n, err, wantN)
			}
			if ls := claim(t, ctx, s, at.Add(-time.Millisecond), 100, time.Minute); len(ls) != 0 {
				t.Errorf("claimed before the change's time: %v", works(ls))
			}
			var wantWork []string
			for _, w := range tt.wantDue {
				wantWork = append(wantWork, fmt.Sprintf(w, r.ID))
			}
			if ls := claim(t, ctx, s, at, 100, time.Minute); !slices.Equal(works(ls), wantWork) {
				t.Errorf("due at the change's time: %v, want %v", works(ls), wantWork)
			}
		})
	}
}

// TestChangeRequestStaleExpectConflicts: a change built from a request
// that has moved on since (decided, or approved by someone else) is
// refused with ErrConflict and writes nothing at all; built again from the
// request as it now stands, it goes through.
func TestChangeRequestStaleExpectConflicts(t *testing.T) {
	t0 := base()
	pending := func(approvals ...string) hbrbot.RequestVersion {
		return hbrbot.RequestVersion{State: hbrbot.RequestPending, Approvals: approvals}
	}

	tests := []struct {
		name   string
		before func(r hbrbot.Request) hbrbot.RequestChange // stored first; nil for none
		expect hbrbot.RequestVersion                       // what the late change expects
	}{
		{"approved meanwhile", func(r hbrbot.Request) hbrbot.RequestChange {
			return approval(r, "U0002", t0.Add(time.Second))
		}, pending()},
		{"cancelled meanwhile", func(r hbrbot.Request) hbrbot.RequestChange {
			return ending(r, hbrbot.RequestCancelled, "U0002", t0.Add(time.Second))
		}, pending()},
		{"expired meanwhile", func(r hbrbot.Request) hbrbot.RequestChange {
			return ending(r, hbrbot.RequestExpired, "", t0.Add(time.Second))
		}, pending()},
		{"approved meanwhile, expected with its approvals", func(r hbrbot.Request) hbrbot.RequestChange {
			return approval(r, "U0002", t0.Add(time.Second))
		}, pending("U0002")},
		{"one more approval meanwhile", func(r hbrbot.Request) hbrbot.RequestChange {
			return approvalStep(r, "U0002", t0.Add(time.Second))
		}, pending()},
		{"expecting more approvals than there are", func(r hbrbot.Request) hbrbot.RequestChange {
			return approvalStep(r, "U0002", t0.Add(time.Second))
		}, pending("U0002", "U0003")},
		{"expecting fewer approvals than there are", func(r hbrbot.Request) hbrbot.RequestChange {
			r.Approvals = []string{"U0002"}
			ch := approvalStep(r, "U0003", t0.Add(time.Second))
			ch.Expect = pending()
			return ch
		}, pending("U0002")},
		{"expecting the approvals in another order", func(r hbrbot.Request) hbrbot.RequestChange {
			r.Approvals = []string{"U0002"}
			ch := approvalStep(r, "U0003", t0.Add(time.Second))
			ch.Expect = pending()
			return ch
		}, pending("U0003", "U0002")},
		{"expecting a state it is not in", nil, hbrbot.RequestVersion{State: hbrbot.RequestApproved}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testCtx(t)
			s, rdb := newStore(t)
			r := newRequest(fmt.Sprintf("stale-%d", i), "C0001", t0, hbrbot.MaxBatchSize) // 2 batches
			mustCreate(t, ctx, s, r)
			if tt.before != nil {
				mustChange(t, ctx, s, r.ID, tt.before(mustRequest(t, ctx, s, r.ID)))
			}
			before := dump(t, ctx, rdb)

			// The late change carries every kind of write: any of them
			// leaking through shows in the dump.
			late := approval(r, "U0009", t0.Add(2*time.Second))
			late.Expect, late.CardTS = tt.expect, "1700000001.000000"
			for i := range late.Batches {
				late.Batches[i].ThreadTS = "late"
				late.Batches[i].Before = []hbrbot.ClientInfo{{ClientID: "c-late"}}
			}
			late.Schedule = append(late.Schedule, hbrbot.Due{Work: hbrbot.Work{Kind: hbrbot.WorkProgress, ID: r.ID}, At: t0})
			err := s.ChangeRequest(ctx, r.ID, late)
			if !errors.Is(err, hbrbot.ErrConflict) {
				t.Fatalf("ChangeRequest with a stale Expect = %v, want ErrConflict", err)
			}
			if after := dump(t, ctx, rdb); !reflect.DeepEqual(after, before) {
				t.Errorf("a refused change wrote:\nbefore %v\n after %v", before, after)
			}

			// Built again from a fresh read, the change is stored.
			now := mustRequest(t, ctx, s, r.ID)
			late.Expect = versionOf(now)
			if err := s.ChangeRequest(ctx, r.ID, late); err != nil {
				t.Fatalf("ChangeRequest expecting the request as read again: %v", err)
			}
			if got, want := mustRequest(t, ctx, s, r.ID), applied(now, late); !reflect.DeepEqual(got, want) {
				t.Errorf("Request after the retried change:\n got %+v\nwant %+v", got, want)
			}
		})
	}
}

// TestChangeRequestCreatesBatchesOnlyIfAbsent: a change's batches are
// written only where none exists: an existing batch's status and spec are
// kept, the missing ones created.
func TestChangeRequestCreatesBatchesOnlyIfAbsent(t *testing.T) {
	ctx := testCtx(t)
	s, _ := newStore(t)
	t0 := base()
	r := newRequest("nx", "C0001", t0, hbrbot.MaxBatchSize) // 2 batches
	mustCreate(t, ctx, s, r)

	// A first change that leaves the request pending writes batch 0.
	first := approvalStep(mustRequest(t, ctx, s, r.ID), "U0002", t0)
	b0 := batchesOf(r, "first")[0]
	b0.Before = []hbrbot.ClientInfo{{ClientID: "c-first"}}
	first.Batches = []hbrbot.Batch{b0}
	mustChange(t, ctx, s, r.ID, first)

	second := approval(mustRequest(t, ctx, s, r.ID), "U0003", t0)
	for i := range second.Batches {
		second.Batches[i].ThreadTS = "second"
		second.Batches[i].Before = []hbrbot.ClientInfo{{ClientID: "c-second"}}
	}
	mustChange(t, ctx, s, r.ID, second)

	want := []hbrbot.Batch{b0, second.Batches[1]}
	if got, err := s.Batches(ctx, r.ID); err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("Batches = %+v, %v;\nwant the first change's batch 0 and the second's batch 1: %+v", got, err, want)
	}
	if got := mustRequest(t, ctx, s, r.ID); got.State != hbrbot.RequestApproved || !slices.Equal(got.Approvals, []string{"U0002", "U0003"}) {
		t.Errorf("request = %s %v, want approved by U0002 and U0003", got.State, got.Approvals)
	}
}

// TestChangeRequestRaceOneWinner: deciders that all read the pending
// request and then change it at once (approving or cancelling): exactly one
// change is stored, every other is refused with ErrConflict, and what
// stands is the winner's change whole.
func TestChangeRequestRaceOneWinner(t *testing.T) {
	ctx := testCtx(t)
	s, rdb := newStore(t)
	t0 := base()
	const deciders = 20
	outcomes := map[hbrbot.RequestState]int{}

	for round := range 10 {
		r := newRequest(fmt.Sprintf("race-%d", round), "C0001", t0, hbrbot.MaxBatchSize) // 2 batches
		mustCreate(t, ctx, s, r)

		changes := make([]hbrbot.RequestChange, deciders)
		errs := make([]error, deciders)
		read := make(chan struct{}, deciders)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range deciders {
			wg.Go(func() {
				got, err := s.Request(ctx, r.ID)
				read <- struct{}{}
				if err != nil {
					errs[i] = err
					return
				}
				by, at := fmt.Sprintf("U%04d", i), t0.Add(time.Duration(i)*time.Millisecond)
				ch := approval(got, by, at)
				for j := range ch.Batches {
					ch.Batches[j].ThreadTS = by // which change created it
				}
				if i%2 == 1 {
					ch = ending(got, hbrbot.RequestCancelled, by, at)
				}
				changes[i] = ch
				<-start
				errs[i] = s.ChangeRequest(ctx, r.ID, ch)
			})
		}
		for range deciders {
			<-read // every decider has read the pending request
		}
		close(start)
		wg.Wait()

		winner := -1
		for i, err := range errs {
			switch {
			case err == nil:
				if winner >= 0 {
					t.Fatalf("round %d: deciders %d and %d both stored their change", round, winner, i)
				}
				winner = i
			case !errors.Is(err, hbrbot.ErrConflict):
				t.Fatalf("round %d decider %d: %v, want nil or ErrConflict", round, i, err)
			}
		}
		if winner < 0 {
			t.Fatalf("round %d: no change was stored", round)
		}
		w := changes[winner]
		outcomes[w.State]++
		if got, want := mustRequest(t, ctx, s, r.ID), applied(r, w); !reflect.DeepEqual(got, want) {
			t.Errorf("round %d: request is\n %+v\nwant the winner's (%d) change\n %+v", round, got, winner, want)
		}
		bs, err := s.Batches(ctx, r.ID)
		if err != nil {
			t.Fatal(err)
		}
		if len(bs) != len(w.Batches) {
			t.Errorf("round %d: winner %s, %d batches exist; want %d", round, w.State, len(bs), len(w.Batches))
		}
		for _, b := range bs {
			if b.ThreadTS != w.DecidedBy {
				t.Errorf("round %d: batch %s created by %s's change, not the winner %s's", round, b.Key(), b.ThreadTS, w.DecidedBy)
			}
		}
		for i := range 2 {
			if _, ok := score(t, ctx, rdb, batchWork(r.ID, i)); ok != (len(w.Batches) > 0) {
				t.Errorf("round %d: batch %d scheduled = %v, want %v", round, i, ok, len(w.Batches) > 0)
			}
		}
		if sc, ok := score(t, ctx, rdb, cardWork(r.ID)); !ok || sc != ms(w.DecidedAt) {
			t.Errorf("round %d: card sync due %v (scheduled %v), want the winner's %v", round, sc, ok, ms(w.DecidedAt))
		}
	}
	t.Logf("winning changes over 10 rounds: %v", outcomes)
}

func TestUnknownRequestNotFound(t *testing.T) {
	ctx := testCtx(t)
	s, rdb := newStore(t)
	ghost := newRequest("ghost", "C0001", base(), 2)

	if err := s.ChangeRequest(ctx, "ghost", approval(ghost, "U0002", base())); !errors.Is(err, hbrbot.ErrNotFound) {
		t.Errorf("ChangeRequest(unknown) = %v, want ErrNotFound", err)
	}
	if _, err := s.Request(ctx, "ghost"); !errors.Is(err, hbrbot.ErrNotFound) {
		t.Errorf("Request(unknown) = %v, want ErrNotFound", err)
	}
	if _, err := s.BatchStatus(ctx, hbrbot.BatchKey("ghost", 0)); !errors.Is(err, hbrbot.ErrNotFound) {
		t.Errorf("BatchStatus(unknown) = %v, want ErrNotFound", err)
	}
	if _, err := s.BatchSpec(ctx, hbrbot.BatchKey("ghost", 0)); !errors.Is(err, hbrbot.ErrNotFound) {
		t.Errorf("BatchSpec(unknown) = %v, want ErrNotFound", err)
	}
	if bs, err := s.Batches(ctx, "ghost"); err != nil || len(bs) != 0 {
		t.Errorf("Batches(unknown) = %v, %v; want none", bs, err)
	}
	if sts, err := s.BatchStatuses(ctx, "ghost"); err != nil || len(sts) != 0 {
		t.Errorf("BatchStatuses(unknown) = %v, %v; want none", sts, err)
	}
	// A change to nothing writes nothing: no request, batch or schedule.
	if keys := rdb.Keys(ctx, "*").Val(); len(keys) != 0 {
		t.Errorf("keys after changing an unknown request: %v", keys)
	}
}

// TestChangeRequestCardTS: a change records the card it gives, and keeps
// the request's card when it gives none. (That a click records its card
// only on a request without one is package upgrade's rule.)
func TestChangeRequestCardTS(t *testing.T) {
	ctx := testCtx(t)
	s, _ := newStore(t)
	t0 := base()

	tests := []struct {
		name     string
		created  string // CardTS at creation
		set      string // SetCardTS before the change ("" = not called)
		given    string // RequestChange.CardTS
		wantCard string
	}{
		{"unset: taken from the change", "", "", "111.000001", "111.000001"},
		{"set at creation, none given: kept", "100.000001", "", "", "100.000001"},
		{"set later, none given: kept", "", "105.000001", "", "105.000001"},
		{"unset, none given", "", "", "", ""},
		{"set, another given: written", "100.000001", "", "111.000001", "111.000001"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRequest(fmt.Sprintf("card-%d", i), "C0001", t0, 1)
			r.CardTS = tt.created
			mustCreate(t, ctx, s, r)
			if tt.set != "" {
				if err := s.SetCardTS(ctx, r.ID, tt.set); err != nil {
					t.Fatalf("SetCardTS: %v", err)
				}
				if got := mustRequest(t, ctx, s, r.ID); got.CardTS != tt.set {
					t.Fatalf("after SetCardTS: CardTS = %q, want %q", got.CardTS, tt.set)
				}
			}
			ch := ending(mustRequest(t, ctx, s, r.ID), hbrbot.RequestCancelled, "U0002", t0)
			ch.CardTS = tt.given
			mustChange(t, ctx, s, r.ID, ch)
			if got := mustRequest(t, ctx, s, r.ID); got.CardTS != tt.wantCard {
				t.Errorf("CardTS = %q, want %q", got.CardTS, tt.wantCard)
			}
		})
	}
}

func TestFirstDelivery(t *testing.T) {
	ctx := testCtx(t)
	s, rdb := newStore(t)

	steps := []struct {
		envelope string
		want     bool
	}{
		{"env-1", true},
		{"env-1", false},
		{"env-2", true},
		{"env-1", false},
		{"env-2", false},
	}
	for i, st := range steps {
		got, err := s.FirstDelivery(ctx, st.envelope)
		if err != nil {
			t.Fatalf("step %d: FirstDelivery(%s): %v", i, st.envelope, err)
		}
		if got != st.want {
			t.Errorf("step %d: FirstDelivery(%s) = %v, want %v", i, st.envelope, got, st.want)
		}
	}
	if ttl := rdb.PTTL(ctx, keyEnvelope("env-1")).Val(); ttl <= 0 || ttl > 24*time.Hour {
		t.Errorf("envelope record PTTL = %v, want in (0, 24h]", ttl)
	}
}

func TestFirstDeliveryConcurrent(t *testing.T) {
	ctx := testCtx(t)
	s, _ := newStore(t)
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		firsts int
	)
	start := make(chan struct{})
	for range 20 {
		wg.Go(func() {
			<-start
			ok, err := s.FirstDelivery(ctx, "env-race")
			if err != nil {
				t.Error(err)
			}
			if ok {
				mu.Lock()
				firsts++
				mu.Unlock()
			}
		})
	}
	close(start)
	wg.Wait()
	if firsts != 1 {
		t.Errorf("%d deliveries were first, want 1", firsts)
	}
}

func TestChannelRequestsNewestFirst(t *testing.T) {
	ctx := testCtx(t)
	s, _ := newStore(t)
	t0 := base()
	for i, id := range []string{"ch-b", "ch-a", "ch-c"} { // created in this order
		mustCreate(t, ctx, s, newRequest(id, "C0001", t0.Add(time.Duration(i)*time.Second), 1))
	}
	mustCreate(t, ctx, s, newRequest("other", "C0002", t0.Add(time.Hour), 1))

	tests := []struct {
		channel string
		limit   int
		want    []string
	}{
		{"C0001", 10, []string{"ch-c", "ch-a", "ch-b"}},
		{"C0001", 2, []string{"ch-c", "ch-a"}},
		{"C0002", 10, []string{"other"}},
		{"C9999", 10, nil},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s limit %d", tt.channel, tt.limit), func(t *testing.T) {
			rs, err := s.ChannelRequests(ctx, tt.channel, tt.limit)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range rs {
				got = append(got, r.ID)
				if r.ChannelID != tt.channel || r.State != hbrbot.RequestPending {
					t.Errorf("request %s: channel %q state %q", r.ID, r.ChannelID, r.State)
				}
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("ChannelRequests = %v, want %v", got, tt.want)
			}
		})
	}
}

// ---- the schedule ----

func TestClaimDueOnlyWhenDue(t *testing.T) {
	ctx := testCtx(t)
	s, _ := newStore(t)
	t0 := base()
	w := hbrbot.Work{Kind: hbrbot.WorkBatch, ID: "r.0"}
	if err := s.Schedule(ctx, w, t0.Add(10*time.Second)); err != nil {
		t.Fatal(err)
	}
	if ls := claim(t, ctx, s, t0.Add(10*time.Second-time.Millisecond), 10, time.Minute); len(ls) != 0 {
		t.Fatalf("claimed before due: %v", works(ls))
	}
	ls := claim(t, ctx, s, t0.Add(10*time.Second), 10, time.Minute)
	if len(ls) != 1 || ls[0].Work != w {
		t.Fatalf("claim when due = %v, want [%s]", works(ls), member(w))
	}
	if want := t0.Add(10*time.Second + time.Minute); !ls[0].Until.Equal(want) {
		t.Errorf("lease until %v, want now+lease = %v", ls[0].Until, want)
	}
	if ls[0].Token == "" {
		t.Error("lease has no token")
	}
}

func TestClaimDueHonoursN(t *testing.T) {
	ctx := testCtx(t)
	s, _ := newStore(t)
	t0 := base()
	for i := range 5 {
		if err := s.Schedule(ctx, batchWork("n", i), t0.Add(time.Duration(i)*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
	}
	ls := claim(t, ctx, s, t0.Add(time.Second), 3, time.Minute)
	if want := []string{"bat:n.0", "bat:n.1", "bat:n.2"}; !slices.Equal(works(ls), want) {
		t.Errorf("ClaimDue(n=3) = %v, want the 3 earliest %v", works(ls), want)
	}
}

// leasedBatch creates an approved one-batch request decided at t0 and
// claims its batch (and its card sync) at t0 with the given lease.
func leasedBatch(t *testing.T, ctx context.Context, s *Store, id string, t0 time.Time, lease time.Duration) (batch, card hbrbot.Lease, b hbrbot.Batch) {
	t.Helper()
	ch := mustApprove(t, ctx, s, newRequest(id, "C0001", t0, 2), t0)
	ls := claim(t, ctx, s, t0, 10, lease)
	batch = leaseOf(t, ls, batchWork(id, 0))
	card = leaseOf(t, ls, cardWork(id))
	return batch, card, ch.Batches[0]
}

func TestLeaseFencing(t *testing.T) {
	ctx := testCtx(t)
	s, rdb := newStore(t)
	t0 := base()
	const lease = 30 * time.Second
	l1, _, orig := leasedBatch(t, ctx, s, "fence", t0, lease)
	w := l1.Work

	// Held: nobody else can claim it until the lease has passed.
	if ls := claim(t, ctx, s, t0.Add(time.Millisecond), 10, lease); len(ls) != 0 {
		t.Fatalf("claimed a held item just after the claim: %v", works(ls))
	}
	if ls := claim(t, ctx, s, l1.Until.Add(-time.Millisecond), 10, lease); len(ls) != 0 {
		t.Fatalf("claimed a held item before its lease ended: %v", works(ls))
	}
	if sc, _ := score(t, ctx, rdb, w); sc != tokenScore(t, l1) {
		t.Errorf("score of a leased item = %v, want its token %s", sc, l1.Token)
	}

	// The lease passes: another replica takes the item over.
	other := New(rdb)
	l2 := leaseOf(t, claim(t, ctx, other, l1.Until.Add(time.Millisecond), 10, lease), w)
	if l2.Token == l1.Token {
		t.Fatalf("takeover reused the token %s", l1.Token)
	}

	// The old holder's writes are refused and change nothing.
	stale := orig.BatchStatus
	stale.State, stale.TaskID = hbrbot.BatchRunning, "t-stale"
	saveBatch := func(next hbrbot.Next) func() error {
		return func() error { _, err := s.SaveBatch(ctx, l1, stale, next); return err }
	}
	reschedule := func(next hbrbot.Next) func() error {
		return func() error { return s.Reschedule(ctx, l1, next) }
	}
	for _, op := range []struct {
		name string
		do   func() error
	}{
		{"SaveBatch holding", saveBatch(hbrbot.Hold())},
		{"SaveBatch extending the lease", saveBatch(hbrbot.HoldUntil(l2.Until.Add(time.Hour)))},
		{"SaveBatch rescheduling", saveBatch(hbrbot.DueAt(t0))},
		{"SaveBatch ending", saveBatch(hbrbot.End())},
		{"Reschedule holding", reschedule(hbrbot.Hold())},
		{"Reschedule extending the lease", reschedule(hbrbot.HoldUntil(l2.Until.Add(time.Hour)))},
		{"Reschedule", reschedule(hbrbot.DueAt(t0))},
		{"Reschedule ending", reschedule(hbrbot.End())},
	} {
		if err := op.do(); !errors.Is(err, hbrbot.ErrLeaseLost) {
			t.Errorf("old holder's %s = %v, want ErrLeaseLost", op.name, err)
		}
		if b := mustStatus(t, ctx, s, w.ID); !reflect.DeepEqual(b, orig.BatchStatus) {
			t.Errorf("after old holder's %s the batch is %+v, want unchanged %+v", op.name, b, orig.BatchStatus)
		}
		if sc, ok := score(t, ctx, rdb, w); !ok || sc != tokenScore(t, l2) {
			t.Errorf("after old holder's %s the score is %v (scheduled %v), want the new lease's %s", op.name, sc, ok, l2.Token)
		}
	}

	// The new holder writes, and keeps its lease.
	fresh := orig.BatchStatus
	fresh.State, fresh.TaskID = hbrbot.BatchRunning, "t-fresh"
	got, err := other.SaveBatch(ctx, l2, fresh, hbrbot.Hold())
	if err != nil {
		t.Fatalf("new holder's SaveBatch: %v", err)
	}
	if got != l2 {
		t.Errorf("SaveBatch holding returned the lease %+v, want the one held %+v", got, l2)
	}
	if b := mustStatus(t, ctx, s, w.ID); !reflect.DeepEqual(b, fresh) {
		t.Errorf("batch after the new holder's save = %+v, want %+v", b, fresh)
	}
	if sp := mustSpec(t, ctx, s, w.ID); !reflect.DeepEqual(sp, orig.BatchSpec) {
		t.Errorf("spec after the saves = %+v, want unchanged %+v", sp, orig.BatchSpec)
	}
}

func TestSaveBatchAndReschedule(t *testing.T) {
	t0 := base()
	const lease = 30 * time.Second
	later := t0.Add(5 * time.Minute)   // after the lease ends
	sooner := t0.Add(10 * time.Second) // before the lease ends
	leaseEnd := func(l hbrbot.Lease) time.Time { return l.Until }
	at := func(t time.Time) func(hbrbot.Lease) time.Time { return func(hbrbot.Lease) time.Time { return t } }

	tests := []struct {
		name       string
		reschedule bool // Reschedule instead of SaveBatch
		next       hbrbot.Next
		// due: when the item can be claimed again; nil when it ended.
		due func(l hbrbot.Lease) time.Time
		// holds: the lease the write returns (SaveBatch) or the one it was
		// made under (Reschedule) still writes afterwards.
		holds     bool
		wantSaved bool // the batch status was written
	}{
		{"SaveBatch holding", false, hbrbot.Hold(), leaseEnd, true, true},
		{"SaveBatch extending the lease", false, hbrbot.HoldUntil(later), at(later), true, true},
		{"SaveBatch due later", false, hbrbot.DueAt(later), at(later), false, true},
		{"SaveBatch due sooner than lease end", false, hbrbot.DueAt(sooner), at(sooner), false, true},
		{"SaveBatch ending", false, hbrbot.End(), nil, false, true},
		{"Reschedule holding", true, hbrbot.Hold(), leaseEnd, true, false},
		// The extended lease's token is not returned: the holder lets
		// the item go until then.
		{"Reschedule extending the lease", true, hbrbot.HoldUntil(later), at(later), false, false},
		{"Reschedule due later", true, hbrbot.DueAt(later), at(later), false, false},
		{"Reschedule ending", true, hbrbot.End(), nil, false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testCtx(t)
			s, rdb := newStore(t)
			l, card, orig := leasedBatch(t, ctx, s, "save", t0, lease)
			// Take the card sync off the schedule so only the batch is left.
			if err := s.Reschedule(ctx, card, hbrbot.End()); err != nil {
				t.Fatalf("Reschedule(card): %v", err)
			}
			before, _ := s.Scheduled(ctx)

			upd := orig.BatchStatus
			upd.State, upd.TaskID, upd.Progress = hbrbot.BatchRunning, "t-1", 50
			holder := l
			var err error
			if tt.reschedule {
				err = s.Reschedule(ctx, l, tt.next)
			} else {
				holder, err = s.SaveBatch(ctx, l, upd, tt.next)
			}
			if err != nil {
				t.Fatalf("write under a held lease: %v", err)
			}
			if !tt.reschedule {
				switch tt.next.Kind {
				case hbrbot.NextHoldUntil:
					if holder.Work != l.Work || !holder.Until.Equal(tt.next.At) || holder.Token == l.Token {
						t.Errorf("SaveBatch extending returned %+v; want a new lease on %s until %v", holder, member(l.Work), tt.next.At)
					}
				default:
					if holder != l {
						t.Errorf("SaveBatch returned the lease %+v, want the one it was given %+v", holder, l)
					}
				}
			}

			wantDoc := orig.BatchStatus
			if tt.wantSaved {
				wantDoc = upd
			}
			if b := mustStatus(t, ctx, s, l.Work.ID); !reflect.DeepEqual(b, wantDoc) {
				t.Errorf("batch = %+v, want %+v", b, wantDoc)
			}
			if sp := mustSpec(t, ctx, s, l.Work.ID); !reflect.DeepEqual(sp, orig.BatchSpec) {
				t.Errorf("spec = %+v, want unchanged %+v", sp, orig.BatchSpec)
			}
			for _, k := range []string{keyBatch(l.Work.ID), keyBatchSpec(l.Work.ID)} {
				ttl := rdb.PTTL(ctx, k).Val()
				switch {
				case ttl <= 0:
					t.Errorf("%s PTTL = %v: no expiry", k, ttl)
				case tt.wantSaved && tt.due == nil && ttl > Retention:
					t.Errorf("ended batch: %s PTTL = %v, want at most Retention %v", k, ttl, Retention)
				case tt.due != nil && ttl <= Retention:
					t.Errorf("batch still scheduled: %s PTTL %v, no more than Retention", k, ttl)
				}
			}

			// Whether the lease still holds, before anything claims.
			switch err := func() error { _, err := s.SaveBatch(ctx, holder, upd, hbrbot.Hold()); return err }(); {
			case tt.holds && err != nil:
				t.Errorf("a further SaveBatch under the lease still held: %v", err)
			case !tt.holds && !errors.Is(err, hbrbot.ErrLeaseLost):
				t.Errorf("a further SaveBatch under the lease given up = %v, want ErrLeaseLost", err)
			}
			if tt.next.Kind == hbrbot.NextHoldUntil && !tt.reschedule {
				if _, err := s.SaveBatch(ctx, l, upd, hbrbot.Hold()); !errors.Is(err, hbrbot.ErrLeaseLost) {
					t.Errorf("SaveBatch under the lease replaced by the extension = %v, want ErrLeaseLost", err)
				}
			}

			n, _ := s.Scheduled(ctx)
			if tt.due == nil {
				if n != before-1 {
					t.Errorf("Scheduled = %d, want %d: ended work stays scheduled", n, before-1)
				}
				if ls := claim(t, ctx, s, t0.Add(24*time.Hour), 10, lease); len(ls) != 0 {
					t.Errorf("ended work was claimed: %v", works(ls))
				}
				return
			}
			if n != before {
				t.Errorf("Scheduled = %d, want %d", n, before)
			}
			due := tt.due(l)
			if got, ok, err := s.NextDue(ctx); err != nil || !ok || !got.Equal(due) {
				t.Errorf("NextDue = %v, %v, %v; want %v", got, ok, err, due)
			}
			claimAt := due
			if tt.next.Kind == hbrbot.NextHold {
				// The score is the token: a fraction of a millisecond
				// past Until (or none at all).
				claimAt = due.Add(time.Millisecond)
				if ls := claim(t, ctx, s, t0.Add(time.Millisecond), 10, lease); len(ls) != 0 {
					t.Errorf("claimed a held lease's item at now+1ms: %v", works(ls))
				}
			}
			if ls := claim(t, ctx, s, due.Add(-time.Millisecond), 10, lease); len(ls) != 0 {
				t.Errorf("claimed 1ms before due: %v", works(ls))
			}
			if ls := claim(t, ctx, s, claimAt, 10, lease); len(ls) != 1 || ls[0].Work != l.Work {
				t.Errorf("claim when due = %v, want %s", works(ls), member(l.Work))
			}
		})
	}
}

func TestScheduleOnlyMovesEarlier(t *testing.T) {
	ctx := testCtx(t)
	s, rdb := newStore(t)
	t0 := base()
	w := hbrbot.Work{Kind: hbrbot.WorkCardSync, ID: "req-1"}

	if _, ok, err := s.NextDue(ctx); err != nil || ok {
		t.Fatalf("NextDue on an empty schedule = ok %v, %v", ok, err)
	}
	steps := []struct {
		at   time.Duration
		want time.Duration
	}{
		{10 * time.Second, 10 * time.Second}, // new item: added
		{20 * time.Second, 10 * time.Second}, // later: ignored
		{10 * time.Second, 10 * time.Second},
		{5 * time.Second, 5 * time.Second}, // sooner: moved
		{-time.Hour, -time.Hour},
		{0, -time.Hour},
	}
	for i, st := range steps {
		if err := s.Schedule(ctx, w, t0.Add(st.at)); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
		if sc, ok := score(t, ctx, rdb, w); !ok || sc != ms(t0.Add(st.want)) {
			t.Errorf("step %d: Schedule(t0 + %v): due t0 + %v, want t0 + %v", i, st.at, fromMS(sc).Sub(t0), st.want)
		}
		if due, ok, err := s.NextDue(ctx); err != nil || !ok || !due.Equal(t0.Add(st.want)) {
			t.Errorf("step %d: NextDue = %v, %v, %v; want t0 + %v", i, due, ok, err, st.want)
		}
	}
	if n, _ := s.Scheduled(ctx); n != 1 {
		t.Errorf("Scheduled = %d, want 1", n)
	}

	// NextDue is the earliest of several.
	if err := s.Schedule(ctx, hbrbot.Work{Kind: hbrbot.WorkBatch, ID: "req-2.0"}, t0.Add(-2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if due, ok, _ := s.NextDue(ctx); !ok || !due.Equal(t0.Add(-2*time.Hour)) {
		t.Errorf("NextDue = %v, %v; want the earliest, t0-2h", due, ok)
	}
}

func TestConcurrentClaimersClaimEachOnce(t *testing.T) {
	ctx := testCtx(t)
	srv := redistest.Start(t)
	setup := New(srv.Client())
	t0 := base()
	const items, claimers = 100, 3
	for i := range items {
		if err := setup.Schedule(ctx, batchWork("many", i), t0.Add(-time.Duration(i)*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
	}

	got := make([][]hbrbot.Lease, claimers)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for c := range claimers {
		s := New(srv.Client()) // its own connection pool, like a replica
		wg.Go(func() {
			<-start
			for {
				ls, err := s.ClaimDue(ctx, t0, 7, time.Minute)
				if err != nil {
					t.Errorf("claimer %d: %v", c, err)
					return
				}
				got[c] = append(got[c], ls...)
				if len(ls) > 0 {
					continue
				}
				// Empty-handed: the others may have won the race for
				// what this claimer listed. Stop once nothing is due.
				due, ok, err := s.NextDue(ctx)
				if err != nil {
					t.Errorf("claimer %d: %v", c, err)
					return
				}
				if !ok || due.After(t0) {
					return
				}
			}
		})
	}
	close(start)
	wg.Wait()

	seen := map[hbrbot.Work]int{}
	for c, ls := range got {
		t.Logf("claimer %d took %d items", c, len(ls))
		for _, l := range ls {
			seen[l.Work]++
		}
	}
	for i := range items {
		if n := seen[batchWork("many", i)]; n != 1 {
			t.Errorf("item %d claimed %d times, want 1", i, n)
		}
	}
	if len(seen) != items {
		t.Errorf("%d distinct items claimed, want %d", len(seen), items)
	}
	if ls := claim(t, ctx, setup, t0, items, time.Minute); len(ls) != 0 {
		t.Errorf("%d items still claimable after the claimers stopped", len(ls))
	}
}

// ---- keys ----

// hashTag is the part of key Redis Cluster hashes: what lies between the
// first "{" and the next "}", if not empty; else the whole key.
func hashTag(key string) string {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			return key[i+1 : i+1+j]
		}
	}
	return key
}

func TestKeysSharePrefixAndHashTag(t *testing.T) {
	ctx := testCtx(t)
	s, rdb := newStore(t)
	t0 := base()

	// Touch every kind of key.
	if _, err := s.FirstDelivery(ctx, "env-keys"); err != nil {
		t.Fatal(err)
	}
	l, card, b := leasedBatch(t, ctx, s, "keys", t0, time.Minute)
	if err := s.SetCardTS(ctx, "keys", "1.2"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SaveBatch(ctx, l, b.BatchStatus, hbrbot.Hold()); err != nil {
		t.Fatal(err)
	}
	if err := s.Reschedule(ctx, card, hbrbot.DueAt(t0.Add(time.Hour))); err != nil {
		t.Fatal(err)
	}
	mustCreate(t, ctx, s, newRequest("keys-2", "C0002", t0, 1))

	var keys []string
	iter := rdb.Scan(ctx, 0, "*", 100).Iterator()
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Fatal(err)
	}
	slices.Sort(keys)
	want := []string{Prefix + "batch:keys.0", Prefix + "bspec:keys.0", Prefix + "chan:C0001", Prefix + "chan:C0002", Prefix + "due",
		Prefix + "env:env-keys", Prefix + "inflight", Prefix + "pending:U0001", Prefix + "req:keys", Prefix + "req:keys-2"}
	if !slices.Equal(keys, want) {
		t.Errorf("keys = %q, want %q", keys, want)
	}
	for _, k := range keys {
		if !strings.HasPrefix(k, Prefix) {
			t.Errorf("key %q lacks the prefix %q", k, Prefix)
		}
		if tag := hashTag(k); tag != "h" {
			t.Errorf("key %q hashes on %q, want the tag {h}", k, tag)
		}
	}
}

// TestProgress: the redraw's gate reads what SetProgress wrote, without the
// request's document, and tells a missing request apart.
func TestProgress(t *testing.T) {
	s, _ := newStore(t)
	ctx := testCtx(t)
	t0 := base()
	if _, _, err := s.Progress(ctx, "rnone"); !errors.Is(err, hbrbot.ErrNotFound) {
		t.Errorf("Progress of a missing request: err = %v, want ErrNotFound", err)
	}
	r := newRequest("rprog", "C0OPS", t0, 3)
	mustCreate(t, ctx, s, r)
	if state, at, err := s.Progress(ctx, r.ID); err != nil || state != "" || !at.IsZero() {
		t.Errorf("Progress before any reply = %q, %v, %v; want empty", state, at, err)
	}
	if err := s.SetProgress(ctx, r.ID, hbrbot.ReportPosted, "1700000000.000300", t0); err != nil {
		t.Fatal(err)
	}
	state, at, err := s.Progress(ctx, r.ID)
	if err != nil || state != hbrbot.ReportPosted || !at.Equal(t0) {
		t.Errorf("Progress = %q, %v, %v; want %q, %v", state, at, err, hbrbot.ReportPosted, t0)
	}
	full, err := s.Request(ctx, r.ID)
	if err != nil || full.ProgressState != state || !full.ProgressAt.Equal(at) || full.ProgressTS != "1700000000.000300" {
		t.Errorf("Request disagrees with Progress: %q %v %q, %v", full.ProgressState, full.ProgressAt, full.ProgressTS, err)
	}
}

// TestBatchSpecSplit: a batch's IDs and look-up live in a spec written once,
// by the approval; the status (the poll path's read and write) carries
// none of them, a status save keeps the spec, and the two expire together.
func TestBatchSpecSplit(t *testing.T) {
	s, rdb := newStore(t)
	ctx := testCtx(t)
	t0 := base()
	r := newRequest("rspec", "C0OPS", t0, 3)
	r.Preflight = []hbrbot.ClientInfo{{ClientID: "c-1", InstanceID: "i-rspec-000", Version: "2.4.0"}}
	mustCreate(t, ctx, s, r)
	ch := approval(mustRequest(t, ctx, s, r.ID), "U0BOB", t0)
	ch.Batches[0].Before = r.Preflight
	mustChange(t, ctx, s, r.ID, ch)
	want := ch.Batches[0]
	key := want.Key()

	if sp := mustSpec(t, ctx, s, key); !reflect.DeepEqual(sp, want.BatchSpec) {
		t.Fatalf("BatchSpec = %+v, want its targets and look-up %+v", sp, want.BatchSpec)
	}
	status := mustStatus(t, ctx, s, key)
	if !reflect.DeepEqual(status, want.BatchStatus) {
		t.Fatalf("BatchStatus = %+v, want %+v", status, want.BatchStatus)
	}
	if raw := rdb.Get(ctx, keyBatch(key)).Val(); strings.Contains(raw, "i-rspec-000") {
		t.Errorf("status document names the IDs: %s", raw)
	}
	if sts, err := s.BatchStatuses(ctx, r.ID); err != nil || len(sts) != 1 || sts[0].Key() != key {
		t.Errorf("BatchStatuses = %+v, %v; want the one batch", sts, err)
	}

	// The poll path: status in, status out; the spec stays.
	l := leaseOf(t, claim(t, ctx, s, t0, 10, time.Minute), batchWork(r.ID, 0))
	status.State, status.TaskID, status.Polls = hbrbot.BatchRunning, "t-1", 1
	if _, err := s.SaveBatch(ctx, l, status, hbrbot.DueAt(t0.Add(time.Second))); err != nil {
		t.Fatal(err)
	}
	bs, err := s.Batches(ctx, r.ID)
	if wantB := (hbrbot.Batch{BatchStatus: status, BatchSpec: want.BatchSpec}); err != nil || len(bs) != 1 || !reflect.DeepEqual(bs[0], wantB) {
		t.Fatalf("after a status save, Batches = %+v, %v; want %+v", bs, err, wantB)
	}

	// Finished: both expire after the retention period.
	l = leaseOf(t, claim(t, ctx, s, t0.Add(time.Second), 10, time.Minute), batchWork(r.ID, 0))
	status.State = hbrbot.BatchFinished
	if _, err := s.SaveBatch(ctx, l, status, hbrbot.End()); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{keyBatch(key), keyBatchSpec(key)} {
		ttl, _ := rdb.PTTL(ctx, k).Result()
		if ttl > Retention || ttl < Retention-time.Minute {
			t.Errorf("TTL of %s = %v, want about %v", k, ttl, Retention)
		}
	}

	// A status without its spec is damage: Batches says so; the status
	// alone still reads.
	if err := rdb.Del(ctx, keyBatchSpec(key)).Err(); err != nil {
		t.Fatal(err)
	}
	if bs, err := s.Batches(ctx, r.ID); err == nil {
		t.Errorf("Batches of a batch without its spec = %+v, want an error", bs)
	}
	if sts, err := s.BatchStatuses(ctx, r.ID); err != nil || len(sts) != 1 {
		t.Errorf("BatchStatuses of a batch without its spec = %+v, %v; want its status", sts, err)
	}
}

// TestBatchStatusesWithoutRequest: a request's batch statuses (and its
// batches) come from its first batch's count, without the request; none
// before approval; a batch gone leaves the others, each with its own spec.
func TestBatchStatusesWithoutRequest(t *testing.T) {
	s, rdb := newStore(t)
	ctx := testCtx(t)
	t0 := base()
	r := newRequest("rthree", "C0OPS", t0, 250) // 251 IDs: three batches
	mustCreate(t, ctx, s, r)
	if sts, err := s.BatchStatuses(ctx, r.ID); err != nil || len(sts) != 0 {
		t.Fatalf("before approval: BatchStatuses = %d, %v; want none", len(sts), err)
	}
	ch := approval(mustRequest(t, ctx, s, r.ID), "U0BOB", t0)
	mustChange(t, ctx, s, r.ID, ch)
	if err := rdb.Del(ctx, keyRequest(r.ID)).Err(); err != nil {
		t.Fatal(err)
	}

	sts, err := s.BatchStatuses(ctx, r.ID)
	if err != nil || len(sts) != 3 {
		t.Fatalf("BatchStatuses = %d, %v; want 3", len(sts), err)
	}
	for i, b := range sts {
		if b.RequestID != r.ID || b.Index != i || b.Of != 3 || b.State != hbrbot.BatchPending {
			t.Errorf("status %d = %s index %d of %d, %s", i, b.RequestID, b.Index, b.Of, b.State)
		}
	}
	if bs, err := s.Batches(ctx, r.ID); err != nil || !reflect.DeepEqual(bs, ch.Batches) {
		t.Errorf("Batches = %+v, %v; want the three created", bs, err)
	}

	// Batch 1 gone (expired): 0 and 2 remain, each with its spec.
	if err := rdb.Del(ctx, keyBatch(hbrbot.BatchKey(r.ID, 1)), keyBatchSpec(hbrbot.BatchKey(r.ID, 1))).Err(); err != nil {
		t.Fatal(err)
	}
	want := []hbrbot.Batch{ch.Batches[0], ch.Batches[2]}
	if bs, err := s.Batches(ctx, r.ID); err != nil || !reflect.DeepEqual(bs, want) {
		t.Errorf("Batches without batch 1 = %+v, %v;\nwant batches 0 and 2 %+v", bs, err, want)
	}
	if sts, err := s.BatchStatuses(ctx, r.ID); err != nil || len(sts) != 2 || sts[0].Index != 0 || sts[1].Index != 2 {
		t.Errorf("BatchStatuses without batch 1 = %+v, %v; want batches 0 and 2", sts, err)
	}
}

// TestBatchStoredWhole: a batch written as one document, by the version
// before the status and the spec were kept apart, still gives its IDs.
func TestBatchStoredWhole(t *testing.T) {
	s, rdb := newStore(t)
	ctx := testCtx(t)
	whole := `{"request_id":"rold","index":0,"of":1,"region":"cn-hangzhou","channel_id":"C0OPS","thread_ts":"1.2",` +
		`"state":"running","task_id":"t-1","targets":{"instance_ids":["i-old1","i-old2"]}}`
	if err := rdb.Set(ctx, keyBatch("rold.0"), whole, time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	sp, err := s.BatchSpec(ctx, "rold.0")
	if err != nil || sp.Targets.Len() != 2 {
		t.Fatalf("BatchSpec = %+v, %v; want the two IDs of the whole document", sp, err)
	}
	bs, err := s.Batches(ctx, "rold")
	if err != nil || len(bs) != 1 || bs[0].Targets.Len() != 2 || bs[0].TaskID != "t-1" {
		t.Fatalf("Batches = %+v, %v", bs, err)
	}
	// A new batch without a spec is damage, not an old one.
	if err := rdb.Set(ctx, keyBatch("rnew.0"), `{"request_id":"rnew","of":1,"state":"running"}`, time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.BatchSpec(ctx, "rnew.0"); !errors.Is(err, hbrbot.ErrNotFound) {
		t.Errorf("BatchSpec of a status without spec: %v, want ErrNotFound", err)
	}
}
