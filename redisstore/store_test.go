package redisstore

import (
	"context"
	"encoding/json"
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
	parts := r.Batches()
	out := make([]hbrbot.Batch, len(parts))
	for i, p := range parts {
		out[i] = hbrbot.Batch{
			RequestID: r.ID, Index: i, Of: len(parts), Targets: p,
			Region: r.Spec.Region, CrossAccount: r.Spec.CrossAccount,
			ChannelID: r.ChannelID, ThreadTS: threadTS, State: hbrbot.BatchPending,
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

func approve(r hbrbot.Request, by string, at time.Time) hbrbot.Decision {
	return hbrbot.Decision{State: hbrbot.RequestApproved, By: by, At: at, CardTS: "1700000000.000100",
		Batches: batchesOf(r, "1700000000.000100")}
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

func batchWork(requestID string, i int) hbrbot.Work {
	return hbrbot.Work{Kind: hbrbot.WorkBatch, ID: hbrbot.BatchKey(requestID, i)}
}

func mustBatch(t *testing.T, ctx context.Context, s *Store, key string) hbrbot.Batch {
	t.Helper()
	b, err := s.Batch(ctx, key)
	if err != nil {
		t.Fatalf("Batch(%s): %v", key, err)
	}
	return b
}

// ---- requests and decisions ----

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
			return r
		}()},
		{"same account, clients only, default region", hbrbot.Request{
			ID: "rt-plain", TeamID: "T0002", ChannelID: "C0002", RequesterID: "W0002",
			Spec:  hbrbot.UpgradeSpec{Targets: hbrbot.Targets{ClientIDs: []string{"c-1", "c-2"}}},
			State: hbrbot.RequestPending, CreatedAt: t0, ExpiresAt: t0.Add(time.Minute),
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

func TestDecideApproveCreatesAndSchedulesBatches(t *testing.T) {
	ctx := testCtx(t)
	s, rdb := newStore(t)
	t0 := base()
	r := newRequest("req-approve", "C0001", t0, 2*hbrbot.MaxBatchSize+49) // 250 IDs: 3 batches
	mustCreate(t, ctx, s, r)
	if _, ok := score(t, ctx, rdb, hbrbot.Work{Kind: hbrbot.WorkExpiry, ID: r.ID}); !ok {
		t.Fatal("CreateRequest did not schedule the request's expiry")
	}

	at := t0.Add(time.Minute)
	d := approve(r, "U0002", at)
	if len(d.Batches) != 3 {
		t.Fatalf("test setup: %d batches, want 3", len(d.Batches))
	}
	got, won, err := s.Decide(ctx, r.ID, d)
	if err != nil {
		t.Fatalf("Decide: %v", err)
	}
	if !won {
		t.Error("first Decide: won = false")
	}
	if got.State != hbrbot.RequestApproved || got.DecidedBy != "U0002" || !got.DecidedAt.Equal(at) || got.CardTS != d.CardTS {
		t.Errorf("decided request = state %q by %q at %v card %q; want approved by U0002 at %v card %q",
			got.State, got.DecidedBy, got.DecidedAt, got.CardTS, at, d.CardTS)
	}
	if reread, err := s.Request(ctx, r.ID); err != nil || !reflect.DeepEqual(reread, got) {
		t.Errorf("Request after Decide = %+v, %v; want what Decide returned, %+v", reread, err, got)
	}

	for _, want := range d.Batches {
		if b := mustBatch(t, ctx, s, want.Key()); !reflect.DeepEqual(b, want) {
			t.Errorf("batch %s:\n got %+v\nwant %+v", want.Key(), b, want)
		}
		if ttl := rdb.PTTL(ctx, keyBatch(want.Key())).Val(); ttl <= 0 {
			t.Errorf("batch %s has no expiry (PTTL %v)", want.Key(), ttl)
		}
	}
	if bs, err := s.Batches(ctx, got); err != nil || !reflect.DeepEqual(bs, d.Batches) {
		t.Errorf("Batches = %+v, %v; want all %d in order", bs, err, len(d.Batches))
	}

	// The expiry is off the schedule; every batch and a card sync are due at
	// the decision's time, not before.
	if _, ok := score(t, ctx, rdb, hbrbot.Work{Kind: hbrbot.WorkExpiry, ID: r.ID}); ok {
		t.Error("expiry still scheduled after the decision")
	}
	if n, err := s.Scheduled(ctx); err != nil || n != 4 {
		t.Errorf("Scheduled = %d, %v; want 4 (3 batches + card sync)", n, err)
	}
	if ls := claim(t, ctx, s, at.Add(-time.Millisecond), 100, time.Minute); len(ls) != 0 {
		t.Errorf("claimed before the decision's time: %v", works(ls))
	}
	wantWork := []string{"bat:req-approve.0", "bat:req-approve.1", "bat:req-approve.2", "card:req-approve"}
	if ls := claim(t, ctx, s, at, 100, time.Minute); !slices.Equal(works(ls), wantWork) {
		t.Errorf("due at the decision's time: %v, want %v", works(ls), wantWork)
	}
}

func TestDecideTwiceReturnsFirstDecision(t *testing.T) {
	ctx := testCtx(t)
	s, rdb := newStore(t)
	t0 := base()

	tests := []struct {
		name   string
		first  hbrbot.RequestState
		second hbrbot.RequestState
	}{
		{"approved then cancelled", hbrbot.RequestApproved, hbrbot.RequestCancelled},
		{"approved then approved", hbrbot.RequestApproved, hbrbot.RequestApproved},
		{"cancelled then approved", hbrbot.RequestCancelled, hbrbot.RequestApproved},
		{"cancelled then expired", hbrbot.RequestCancelled, hbrbot.RequestExpired},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRequest(fmt.Sprintf("twice-%d", i), "C0001", t0, 2)
			mustCreate(t, ctx, s, r)
			d1 := approve(r, "U0002", t0.Add(time.Second))
			d1.State = tt.first
			if _, won, err := s.Decide(ctx, r.ID, d1); err != nil || !won {
				t.Fatalf("first Decide = won %v, %v", won, err)
			}
			b0 := hbrbot.BatchKey(r.ID, 0)
			before, _ := rdb.Get(ctx, keyBatch(b0)).Result()

			d2 := approve(r, "U0003", t0.Add(2*time.Second))
			d2.State = tt.second
			d2.CardTS = "1700000001.000000"
			for i := range d2.Batches {
				d2.Batches[i].ThreadTS = "other"
			}
			got, won, err := s.Decide(ctx, r.ID, d2)
			if err != nil {
				t.Fatalf("second Decide: %v", err)
			}
			if won {
				t.Error("second Decide: won = true")
			}
			if got.State != tt.first || got.DecidedBy != "U0002" || !got.DecidedAt.Equal(d1.At) || got.CardTS != d1.CardTS {
				t.Errorf("second Decide returned state %q by %q at %v card %q; want the first decision (%q by U0002 at %v card %q)",
					got.State, got.DecidedBy, got.DecidedAt, got.CardTS, tt.first, d1.At, d1.CardTS)
			}
			after, _ := rdb.Get(ctx, keyBatch(b0)).Result()
			if after != before {
				t.Errorf("second Decide changed batch %s: %q -> %q", b0, before, after)
			}
			// The card sync stays due at the first decision's time.
			if sc, ok := score(t, ctx, rdb, hbrbot.Work{Kind: hbrbot.WorkCardSync, ID: r.ID}); !ok || sc != ms(d1.At) {
				t.Errorf("card sync score = %v (scheduled %v), want %v", sc, ok, ms(d1.At))
			}
		})
	}
}

func TestDecideRaceOneWinner(t *testing.T) {
	ctx := testCtx(t)
	s, rdb := newStore(t)
	t0 := base()
	const deciders = 20
	outcomes := map[hbrbot.RequestState]int{}

	for round := range 10 {
		r := newRequest(fmt.Sprintf("race-%d", round), "C0001", t0, hbrbot.MaxBatchSize+1) // 2 batches
		mustCreate(t, ctx, s, r)

		type result struct {
			asked hbrbot.Decision
			req   hbrbot.Request
			won   bool
			err   error
		}
		results := make([]result, deciders)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range deciders {
			d := approve(r, fmt.Sprintf("U%04d", i), t0.Add(time.Duration(i)*time.Millisecond))
			if i%2 == 1 {
				d.State, d.Batches = hbrbot.RequestCancelled, nil
			}
			results[i].asked = d
			wg.Go(func() {
				<-start
				results[i].req, results[i].won, results[i].err = s.Decide(ctx, r.ID, d)
			})
		}
		close(start)
		wg.Wait()

		var winners []result
		for i, res := range results {
			if res.err != nil {
				t.Fatalf("round %d decider %d: %v", round, i, res.err)
			}
			if res.won {
				winners = append(winners, res)
			}
		}
		if len(winners) != 1 {
			t.Fatalf("round %d: %d winners, want exactly 1", round, len(winners))
		}
		w := winners[0]
		outcomes[w.asked.State]++
		for i, res := range results {
			if res.req.State != w.asked.State || res.req.DecidedBy != w.asked.By {
				t.Errorf("round %d decider %d sees %q by %q; the winner decided %q by %q",
					round, i, res.req.State, res.req.DecidedBy, w.asked.State, w.asked.By)
			}
		}
		bs, err := s.Batches(ctx, w.req)
		if err != nil {
			t.Fatal(err)
		}
		wantBatches := 0
		if w.asked.State == hbrbot.RequestApproved {
			wantBatches = 2
		}
		if len(bs) != wantBatches {
			t.Errorf("round %d: decided %q, %d batches exist; want %d", round, w.asked.State, len(bs), wantBatches)
		}
		for i := range 2 {
			if _, ok := score(t, ctx, rdb, batchWork(r.ID, i)); ok != (wantBatches > 0) {
				t.Errorf("round %d: batch %d scheduled = %v, want %v", round, i, ok, wantBatches > 0)
			}
		}
	}
	t.Logf("winning decisions over 10 rounds: %v", outcomes)
}

func TestDecideAfterExpiry(t *testing.T) {
	ctx := testCtx(t)
	s, rdb := newStore(t)
	t0 := base()

	tests := []struct {
		name      string
		asked     hbrbot.RequestState
		at        time.Duration // after ExpiresAt
		wantState hbrbot.RequestState
	}{
		{"approve just before expiry", hbrbot.RequestApproved, -time.Millisecond, hbrbot.RequestApproved},
		{"approve at expiry", hbrbot.RequestApproved, 0, hbrbot.RequestExpired},
		{"approve after expiry", hbrbot.RequestApproved, time.Hour, hbrbot.RequestExpired},
		{"cancel after expiry", hbrbot.RequestCancelled, time.Second, hbrbot.RequestExpired},
		{"expire at expiry", hbrbot.RequestExpired, 0, hbrbot.RequestExpired},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newRequest(fmt.Sprintf("exp-%d", i), "C0001", t0, 3)
			mustCreate(t, ctx, s, r)
			d := approve(r, "U0002", r.ExpiresAt.Add(tt.at))
			d.State = tt.asked
			got, won, err := s.Decide(ctx, r.ID, d)
			if err != nil || !won {
				t.Fatalf("Decide = won %v, %v; want won", won, err)
			}
			if got.State != tt.wantState {
				t.Errorf("state = %q, want %q", got.State, tt.wantState)
			}
			wantBatch := tt.wantState == hbrbot.RequestApproved
			if _, err := s.Batch(ctx, hbrbot.BatchKey(r.ID, 0)); (err == nil) != wantBatch {
				t.Errorf("batch exists = %v (err %v), want %v", err == nil, err, wantBatch)
			}
			if _, ok := score(t, ctx, rdb, batchWork(r.ID, 0)); ok != wantBatch {
				t.Errorf("batch scheduled = %v, want %v", ok, wantBatch)
			}
			if _, ok := score(t, ctx, rdb, hbrbot.Work{Kind: hbrbot.WorkExpiry, ID: r.ID}); ok {
				t.Error("expiry still scheduled")
			}
			if sc, ok := score(t, ctx, rdb, hbrbot.Work{Kind: hbrbot.WorkCardSync, ID: r.ID}); !ok || sc != ms(d.At) {
				t.Errorf("card sync score = %v (scheduled %v), want %v", sc, ok, ms(d.At))
			}
		})
	}
}

func TestUnknownRequestNotFound(t *testing.T) {
	ctx := testCtx(t)
	s, rdb := newStore(t)
	d := approve(newRequest("ghost", "C0001", base(), 2), "U0002", base())

	if _, won, err := s.Decide(ctx, "ghost", d); !errors.Is(err, hbrbot.ErrNotFound) || won {
		t.Errorf("Decide(unknown) = won %v, %v; want ErrNotFound", won, err)
	}
	if _, err := s.Request(ctx, "ghost"); !errors.Is(err, hbrbot.ErrNotFound) {
		t.Errorf("Request(unknown) = %v, want ErrNotFound", err)
	}
	if _, err := s.Batch(ctx, hbrbot.BatchKey("ghost", 0)); !errors.Is(err, hbrbot.ErrNotFound) {
		t.Errorf("Batch(unknown) = %v, want ErrNotFound", err)
	}
	// A decision on nothing writes nothing.
	if keys := rdb.Keys(ctx, "*").Val(); len(keys) != 0 {
		t.Errorf("keys after deciding an unknown request: %v", keys)
	}
}

func TestDecideRecordsCardTSOnlyWhenUnset(t *testing.T) {
	ctx := testCtx(t)
	s, _ := newStore(t)
	t0 := base()

	tests := []struct {
		name      string
		created   string // CardTS at creation
		set       string // SetCardTS before the decision ("" = not called)
		clicked   string // Decision.CardTS
		wantCard  string
		wantState hbrbot.RequestState
	}{
		{"unset: taken from the click", "", "", "111.000001", "111.000001", hbrbot.RequestApproved},
		{"set at creation: kept", "100.000001", "", "111.000001", "100.000001", hbrbot.RequestApproved},
		{"set later: kept", "", "105.000001", "111.000001", "105.000001", hbrbot.RequestCancelled},
		{"unset, click without card", "", "", "", "", hbrbot.RequestCancelled},
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
				if got, _ := s.Request(ctx, r.ID); got.CardTS != tt.set {
					t.Fatalf("after SetCardTS: CardTS = %q, want %q", got.CardTS, tt.set)
				}
			}
			d := approve(r, "U0002", t0)
			d.State, d.CardTS = tt.wantState, tt.clicked
			got, _, err := s.Decide(ctx, r.ID, d)
			if err != nil {
				t.Fatal(err)
			}
			if got.CardTS != tt.wantCard {
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
	r := newRequest(id, "C0001", t0, 2)
	mustCreate(t, ctx, s, r)
	if _, won, err := s.Decide(ctx, r.ID, approve(r, "U0002", t0)); err != nil || !won {
		t.Fatalf("Decide = won %v, %v", won, err)
	}
	ls := claim(t, ctx, s, t0, 10, lease)
	batch = leaseOf(t, ls, batchWork(id, 0))
	card = leaseOf(t, ls, hbrbot.Work{Kind: hbrbot.WorkCardSync, ID: id})
	return batch, card, mustBatch(t, ctx, s, hbrbot.BatchKey(id, 0))
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
	stale := orig
	stale.State, stale.TaskID = hbrbot.BatchRunning, "t-stale"
	for _, op := range []struct {
		name string
		do   func() error
	}{
		{"SaveBatch keeping the lease", func() error { return s.SaveBatch(ctx, l1, stale, l1.Until) }},
		{"SaveBatch rescheduling", func() error { return s.SaveBatch(ctx, l1, stale, t0) }},
		{"SaveBatch ending", func() error { return s.SaveBatch(ctx, l1, stale, time.Time{}) }},
		{"Reschedule", func() error { return s.Reschedule(ctx, l1, t0) }},
		{"Reschedule ending", func() error { return s.Reschedule(ctx, l1, time.Time{}) }},
	} {
		if err := op.do(); !errors.Is(err, hbrbot.ErrLeaseLost) {
			t.Errorf("old holder's %s = %v, want ErrLeaseLost", op.name, err)
		}
		if b := mustBatch(t, ctx, s, w.ID); !reflect.DeepEqual(b, orig) {
			t.Errorf("after old holder's %s the batch is %+v, want unchanged %+v", op.name, b, orig)
		}
		if sc, ok := score(t, ctx, rdb, w); !ok || sc != tokenScore(t, l2) {
			t.Errorf("after old holder's %s the score is %v (scheduled %v), want the new lease's %s", op.name, sc, ok, l2.Token)
		}
	}

	// The new holder writes.
	fresh := orig
	fresh.State, fresh.TaskID = hbrbot.BatchRunning, "t-fresh"
	if err := other.SaveBatch(ctx, l2, fresh, l2.Until); err != nil {
		t.Fatalf("new holder's SaveBatch: %v", err)
	}
	if b := mustBatch(t, ctx, s, w.ID); !reflect.DeepEqual(b, fresh) {
		t.Errorf("batch after the new holder's save = %+v, want %+v", b, fresh)
	}
}

func TestSaveBatchAndReschedule(t *testing.T) {
	t0 := base()
	const lease = 30 * time.Second
	later := t0.Add(5 * time.Minute)   // after the lease ends
	sooner := t0.Add(10 * time.Second) // before the lease ends
	atLeaseEnd := func(l hbrbot.Lease) time.Time { return l.Until }
	at := func(t time.Time) func(hbrbot.Lease) time.Time { return func(hbrbot.Lease) time.Time { return t } }

	tests := []struct {
		name       string
		reschedule bool // Reschedule instead of SaveBatch
		next       func(l hbrbot.Lease) time.Time
		// keep: the lease still holds afterwards, so the item is claimable
		// only once the lease has passed (its score is the token, a fraction
		// of a millisecond after Until); otherwise claimable from next on.
		keep      bool
		wantSaved bool // the batch document was written
	}{
		{"SaveBatch at lease end keeps the lease", false, atLeaseEnd, true, true},
		{"SaveBatch later", false, at(later), false, true},
		{"SaveBatch sooner than lease end", false, at(sooner), false, true},
		{"SaveBatch ending", false, at(time.Time{}), false, true},
		{"Reschedule at lease end keeps the lease", true, atLeaseEnd, true, false},
		{"Reschedule later", true, at(later), false, false},
		{"Reschedule ending", true, at(time.Time{}), false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := testCtx(t)
			s, rdb := newStore(t)
			l, card, orig := leasedBatch(t, ctx, s, "save", t0, lease)
			// Take the card sync off the schedule so only the batch is left.
			if err := s.Reschedule(ctx, card, time.Time{}); err != nil {
				t.Fatalf("Reschedule(card): %v", err)
			}
			before, _ := s.Scheduled(ctx)

			upd := orig
			upd.State, upd.TaskID, upd.Progress = hbrbot.BatchRunning, "t-1", 50
			next := tt.next(l)
			var err error
			if tt.reschedule {
				err = s.Reschedule(ctx, l, next)
			} else {
				err = s.SaveBatch(ctx, l, upd, next)
			}
			if err != nil {
				t.Fatalf("write under a held lease: %v", err)
			}

			wantDoc := orig
			if tt.wantSaved {
				wantDoc = upd
			}
			if b := mustBatch(t, ctx, s, l.Work.ID); !reflect.DeepEqual(b, wantDoc) {
				t.Errorf("batch = %+v, want %+v", b, wantDoc)
			}
			ttl := rdb.PTTL(ctx, keyBatch(l.Work.ID)).Val()
			switch {
			case ttl <= 0:
				t.Errorf("batch PTTL = %v: no expiry", ttl)
			case tt.wantSaved && next.IsZero() && ttl > Retention:
				t.Errorf("ended batch PTTL = %v, want at most Retention %v", ttl, Retention)
			case !next.IsZero() && ttl <= Retention:
				t.Errorf("batch still scheduled has PTTL %v, no more than Retention", ttl)
			}

			n, _ := s.Scheduled(ctx)
			if next.IsZero() {
				if n != before-1 {
					t.Errorf("Scheduled = %d, want %d: ended work stays scheduled", n, before-1)
				}
				if ls := claim(t, ctx, s, t0.Add(24*time.Hour), 10, lease); len(ls) != 0 {
					t.Errorf("ended work was claimed: %v", works(ls))
				}
				if err := s.SaveBatch(ctx, l, upd, l.Until); !errors.Is(err, hbrbot.ErrLeaseLost) {
					t.Errorf("SaveBatch after ending = %v, want ErrLeaseLost", err)
				}
				return
			}
			if n != before {
				t.Errorf("Scheduled = %d, want %d", n, before)
			}
			if due, ok, err := s.NextDue(ctx); err != nil || !ok || !due.Equal(next) {
				t.Errorf("NextDue = %v, %v, %v; want %v", due, ok, err, next)
			}
			claimAt := next
			if tt.keep {
				claimAt = l.Until.Add(time.Millisecond)
				if ls := claim(t, ctx, s, t0.Add(time.Millisecond), 10, lease); len(ls) != 0 {
					t.Errorf("claimed a kept lease's item at now+1ms: %v", works(ls))
				}
				// Still ours: a further write under the same lease succeeds.
				if err := s.SaveBatch(ctx, l, upd, l.Until); err != nil {
					t.Errorf("second SaveBatch under a kept lease: %v", err)
				}
			} else if err := s.SaveBatch(ctx, l, upd, l.Until); !errors.Is(err, hbrbot.ErrLeaseLost) {
				t.Errorf("SaveBatch after giving the item back = %v, want ErrLeaseLost", err)
			}
			if ls := claim(t, ctx, s, claimAt.Add(-time.Millisecond), 10, lease); len(ls) != 0 {
				t.Errorf("claimed 1ms too early: %v", works(ls))
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
	if err := s.SaveBatch(ctx, l, b, l.Until); err != nil {
		t.Fatal(err)
	}
	if err := s.Reschedule(ctx, card, t0.Add(time.Hour)); err != nil {
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
		Prefix + "env:env-keys", Prefix + "req:keys", Prefix + "req:keys-2"}
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

// TestBatchSpecSplit: a batch's IDs and look-up live in a spec written once;
// a status-only read and save (the poll path) keeps them, expiries stay
// aligned, and a batch stored whole by an older version still reads whole
// and moves its spec out on its next save.
func TestBatchSpecSplit(t *testing.T) {
	s, rdb := newStore(t)
	ctx := testCtx(t)
	t0 := base()
	r := newRequest("rspec", "C0OPS", t0, 3)
	r.Preflight = []hbrbot.ClientInfo{{ClientID: "c-1", InstanceID: "i-rspec-000", Version: "2.4.0"}}
	mustCreate(t, ctx, s, r)
	d := approve(r, "U0BOB", t0)
	d.Batches[0].Before = r.Preflight
	if _, won, err := s.Decide(ctx, r.ID, d); err != nil || !won {
		t.Fatalf("Decide = %v, %v", won, err)
	}
	key := d.Batches[0].Key()
	want := d.Batches[0]

	full, err := s.Batch(ctx, key)
	if err != nil || !slices.Equal(full.Targets.All(), want.Targets.All()) || len(full.Before) != 1 {
		t.Fatalf("Batch = %+v, %v; want its targets and look-up", full, err)
	}
	status, err := s.BatchStatus(ctx, key)
	if err != nil || status.Targets.Len() != 0 || status.Before != nil || status.State != hbrbot.BatchPending || status.Region != "cn-shanghai" {
		t.Fatalf("BatchStatus = %+v, %v; want the status without the spec", status, err)
	}
	loaded := status
	if err := s.LoadSpec(ctx, &loaded); err != nil || !slices.Equal(loaded.Targets.All(), want.Targets.All()) || len(loaded.Before) != 1 {
		t.Errorf("LoadSpec = %+v, %v; want the targets and look-up", loaded, err)
	}
	if sts, err := s.BatchStatuses(ctx, r.ID); err != nil || len(sts) != 1 || sts[0].Targets.Len() != 0 || sts[0].Key() != key {
		t.Errorf("BatchStatuses = %+v, %v; want the one batch without its spec", sts, err)
	}
	if n, _ := rdb.StrLen(ctx, keyBatch(key)).Result(); n >= 300 {
		t.Errorf("status document is %d bytes: the IDs went into it", n)
	}

	// The poll path: status in, status out; the spec stays.
	l := claim(t, ctx, s, t0, 10, time.Minute)[0]
	status.State, status.TaskID, status.Polls = hbrbot.BatchRunning, "t-1", 1
	if err := s.SaveBatch(ctx, l, status, t0.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	full, err = s.Batch(ctx, key)
	if err != nil || full.TaskID != "t-1" || !slices.Equal(full.Targets.All(), want.Targets.All()) || len(full.Before) != 1 {
		t.Fatalf("after a status save, Batch = %+v, %v", full, err)
	}

	// Finished: both expire after the retention period.
	l = claim(t, ctx, s, t0.Add(time.Second), 10, time.Minute)[0]
	full.State = hbrbot.BatchFinished
	if err := s.SaveBatch(ctx, l, full, time.Time{}); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{keyBatch(key), keyBatchSpec(key)} {
		ttl, _ := rdb.PTTL(ctx, k).Result()
		if ttl > Retention || ttl < Retention-time.Minute {
			t.Errorf("TTL of %s = %v, want about %v", k, ttl, Retention)
		}
	}

	// A batch written whole (before the split) by an older version.
	old := want
	old.Index, old.State = 7, hbrbot.BatchRunning
	raw, _ := json.Marshal(old)
	if err := rdb.Set(ctx, keyBatch(old.Key()), raw, time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	if err := s.Schedule(ctx, hbrbot.Work{Kind: hbrbot.WorkBatch, ID: old.Key()}, t0); err != nil {
		t.Fatal(err)
	}
	got, err := s.BatchStatus(ctx, old.Key())
	if err != nil || !slices.Equal(got.Targets.All(), want.Targets.All()) {
		t.Fatalf("old whole document: BatchStatus = %+v, %v; want its targets", got, err)
	}
	if err := s.LoadSpec(ctx, &got); err != nil {
		t.Errorf("LoadSpec of an old whole document (no spec key): %v", err)
	}
	var l7 hbrbot.Lease
	for _, l := range claim(t, ctx, s, t0.Add(time.Hour), 10, time.Minute) {
		if l.Work.ID == old.Key() {
			l7 = l
		}
	}
	if err := s.SaveBatch(ctx, l7, got, t0.Add(2*time.Hour)); err != nil {
		t.Fatal(err)
	}
	if n, _ := rdb.Exists(ctx, keyBatchSpec(old.Key())).Result(); n != 1 {
		t.Error("an old whole document's spec was not moved out on save")
	}
	if got, err := s.Batch(ctx, old.Key()); err != nil || !slices.Equal(got.Targets.All(), want.Targets.All()) {
		t.Errorf("old document after its save: Batch = %+v, %v", got, err)
	}
}

// TestBatchStatusesWithoutRequest: a request's batch statuses come from its
// first batch's count, without reading the request; none before approval.
func TestBatchStatusesWithoutRequest(t *testing.T) {
	s, _ := newStore(t)
	ctx := testCtx(t)
	t0 := base()
	r := newRequest("rthree", "C0OPS", t0, 250) // 251 IDs: three batches
	mustCreate(t, ctx, s, r)
	if sts, err := s.BatchStatuses(ctx, r.ID); err != nil || len(sts) != 0 {
		t.Fatalf("before approval: BatchStatuses = %d, %v; want none", len(sts), err)
	}
	if _, _, err := s.Decide(ctx, r.ID, approve(r, "U0BOB", t0)); err != nil {
		t.Fatal(err)
	}
	sts, err := s.BatchStatuses(ctx, r.ID)
	if err != nil || len(sts) != 3 {
		t.Fatalf("BatchStatuses = %d, %v; want 3", len(sts), err)
	}
	for i, b := range sts {
		if b.Index != i || b.Of != 3 || b.Targets.Len() != 0 || b.State != hbrbot.BatchPending {
			t.Errorf("status %d = index %d of %d, %d targets, %s", i, b.Index, b.Of, b.Targets.Len(), b.State)
		}
	}
}
