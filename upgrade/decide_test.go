package upgrade

import (
	"cmp"
	"fmt"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/hbrbot/hbrbot"
)

func TestDecide(t *testing.T) {
	t0 := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	at := t0.Add(10 * time.Minute)
	pending := func(required int, approvals ...string) hbrbot.Request {
		return hbrbot.Request{ID: "r1", ChannelID: channel, RequesterID: requester, State: hbrbot.RequestPending,
			Spec:      hbrbot.UpgradeSpec{Targets: targetsOf(instanceIDs("a", 150)...), Region: region},
			CreatedAt: t0, ExpiresAt: t0.Add(time.Hour), RequiredApprovals: required, Approvals: approvals}
	}
	withCard := func(r hbrbot.Request) hbrbot.Request { r.CardTS = "111.1"; return r }
	decided := func(state hbrbot.RequestState) hbrbot.Request {
		r := pending(1, approverA)
		r.State = state
		return r
	}
	cardSync := hbrbot.Due{Work: hbrbot.Work{Kind: hbrbot.WorkCardSync, ID: "r1"}, At: at}
	expiry := []hbrbot.Work{{Kind: hbrbot.WorkExpiry, ID: "r1"}}
	batchesDue := func(when time.Time) []hbrbot.Due {
		return []hbrbot.Due{cardSync, {Work: batchWork("r1.0"), At: when}, {Work: batchWork("r1.1"), At: when}}
	}
	for _, tc := range []struct {
		name    string
		r       hbrbot.Request
		d       decision
		ok      bool
		want    hbrbot.RequestChange // Batches left out: wantThread says where they report
		thread  string               // the batches' thread; "" for none
		batches int
	}{
		{
			name: "first of two approvals adds the approver", r: pending(2),
			d:  decision{want: hbrbot.RequestApproved, by: approverA, cardTS: "222.2", at: at},
			ok: true,
			want: hbrbot.RequestChange{Expect: hbrbot.RequestVersion{State: hbrbot.RequestPending}, State: hbrbot.RequestPending,
				Approvals: []string{approverA}, CardTS: "222.2", Schedule: []hbrbot.Due{cardSync}},
		},
		{
			name: "the last required approval approves and creates the batches", r: pending(2, approverA),
			d:  decision{want: hbrbot.RequestApproved, by: approverB, cardTS: "222.2", at: at},
			ok: true,
			want: hbrbot.RequestChange{Expect: hbrbot.RequestVersion{State: hbrbot.RequestPending, Approvals: []string{approverA}},
				State: hbrbot.RequestApproved, Approvals: []string{approverA, approverB}, DecidedBy: approverB, DecidedAt: at,
				CardTS: "222.2", Schedule: batchesDue(at), Unschedule: expiry},
			thread: "222.2", batches: 2,
		},
		{
			name: "each approver counts once", r: pending(2, approverA),
			d: decision{want: hbrbot.RequestApproved, by: approverA, cardTS: "222.2", at: at},
			want: hbrbot.RequestChange{Expect: hbrbot.RequestVersion{State: hbrbot.RequestPending, Approvals: []string{approverA}},
				State: hbrbot.RequestPending, Approvals: []string{approverA}, CardTS: "222.2"},
		},
		{
			name: "no required approvals means one", r: withCard(pending(0)),
			d:  decision{want: hbrbot.RequestApproved, by: approverA, cardTS: "222.2", at: at},
			ok: true,
			want: hbrbot.RequestChange{Expect: hbrbot.RequestVersion{State: hbrbot.RequestPending}, State: hbrbot.RequestApproved,
				Approvals: []string{approverA}, DecidedBy: approverA, DecidedAt: at, Schedule: batchesDue(at), Unschedule: expiry},
			thread: "111.1", batches: 2,
		},
		{
			name: "cancel", r: withCard(pending(2, approverA)),
			d:  decision{want: hbrbot.RequestCancelled, by: requester, cardTS: "111.1", at: at},
			ok: true,
			want: hbrbot.RequestChange{Expect: hbrbot.RequestVersion{State: hbrbot.RequestPending, Approvals: []string{approverA}},
				State: hbrbot.RequestCancelled, Approvals: []string{approverA}, DecidedBy: requester, DecidedAt: at,
				Schedule: []hbrbot.Due{cardSync}, Unschedule: expiry},
		},
		{
			name: "expiry", r: withCard(pending(1)),
			d:  decision{want: hbrbot.RequestExpired, at: at},
			ok: true,
			want: hbrbot.RequestChange{Expect: hbrbot.RequestVersion{State: hbrbot.RequestPending}, State: hbrbot.RequestExpired,
				DecidedAt: at, Schedule: []hbrbot.Due{cardSync}, Unschedule: expiry},
		},
		{
			name: "an approval at ExpiresAt expires the request", r: withCard(pending(1)),
			d:  decision{want: hbrbot.RequestApproved, by: approverA, at: t0.Add(time.Hour)},
			ok: true,
			want: hbrbot.RequestChange{Expect: hbrbot.RequestVersion{State: hbrbot.RequestPending}, State: hbrbot.RequestExpired,
				DecidedAt: t0.Add(time.Hour), Unschedule: expiry,
				Schedule: []hbrbot.Due{{Work: cardSync.Work, At: t0.Add(time.Hour)}}},
		},
		{
			name: "a cancel after ExpiresAt expires the request", r: withCard(pending(1)),
			d:  decision{want: hbrbot.RequestCancelled, by: requester, at: t0.Add(2 * time.Hour)},
			ok: true,
			want: hbrbot.RequestChange{Expect: hbrbot.RequestVersion{State: hbrbot.RequestPending}, State: hbrbot.RequestExpired,
				DecidedAt: t0.Add(2 * time.Hour), Unschedule: expiry,
				Schedule: []hbrbot.Due{{Work: cardSync.Work, At: t0.Add(2 * time.Hour)}}},
		},
		{
			name: "an approved request changes no more", r: decided(hbrbot.RequestApproved),
			d: decision{want: hbrbot.RequestCancelled, by: requester, at: at},
			want: hbrbot.RequestChange{Expect: hbrbot.RequestVersion{State: hbrbot.RequestApproved, Approvals: []string{approverA}},
				State: hbrbot.RequestApproved, Approvals: []string{approverA}},
		},
		{
			name: "an expired request is not expired again", r: decided(hbrbot.RequestExpired),
			d: decision{want: hbrbot.RequestExpired, at: at},
			want: hbrbot.RequestChange{Expect: hbrbot.RequestVersion{State: hbrbot.RequestExpired, Approvals: []string{approverA}},
				State: hbrbot.RequestExpired, Approvals: []string{approverA}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ch, ok := decide(tc.r, tc.d)
			if ok != tc.ok {
				t.Fatalf("changed %v, want %v", ok, tc.ok)
			}
			batches := ch.Batches
			ch.Batches = nil
			if !reflect.DeepEqual(ch, tc.want) {
				t.Errorf("change\n got %+v\nwant %+v", ch, tc.want)
			}
			if len(batches) != tc.batches {
				t.Fatalf("%d batches, want %d", len(batches), tc.batches)
			}
			for i, b := range batches {
				if b.ThreadTS != tc.thread || b.State != hbrbot.BatchPending || b.Key() != fmt.Sprintf("r1.%d", i) {
					t.Errorf("batch %d: %+v, want pending in thread %s", i, b.BatchStatus, tc.thread)
				}
			}
			if ok {
				got := applied(tc.r, ch)
				if got.State != tc.want.State || !slices.Equal(got.Approvals, tc.want.Approvals) {
					t.Errorf("applied: %s %v, want %s %v", got.State, got.Approvals, tc.want.State, tc.want.Approvals)
				}
				if tc.want.DecidedAt.IsZero() != got.DecidedAt.IsZero() || got.DecidedBy != tc.want.DecidedBy {
					t.Errorf("applied: decided by %q at %v, want %q at %v", got.DecidedBy, got.DecidedAt, tc.want.DecidedBy, tc.want.DecidedAt)
				}
				if wantTS := cmp.Or(tc.r.CardTS, tc.want.CardTS); got.CardTS != wantTS {
					t.Errorf("applied: card %q, want %q", got.CardTS, wantTS)
				}
			}
		})
	}
}

// An approval appends to a copy: the request read keeps its approvals.
func TestDecideLeavesTheRequestAlone(t *testing.T) {
	approvals := make([]string, 1, 4)
	approvals[0] = approverA
	r := hbrbot.Request{ID: "r1", State: hbrbot.RequestPending, RequiredApprovals: 3, Approvals: approvals,
		ExpiresAt: time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)}
	ch, ok := decide(r, decision{want: hbrbot.RequestApproved, by: approverB, at: time.Date(2029, 1, 1, 0, 0, 0, 0, time.UTC)})
	if !ok || !slices.Equal(ch.Approvals, []string{approverA, approverB}) {
		t.Fatalf("approvals %v (changed %v)", ch.Approvals, ok)
	}
	if got := approvals[:2]; got[1] != "" {
		t.Errorf("the request's approvals were written to: %v", got)
	}
	if !slices.Equal(ch.Expect.Approvals, []string{approverA}) {
		t.Errorf("expect %v, want the approvals read", ch.Expect.Approvals)
	}
}

func TestBatchesOf(t *testing.T) {
	ids := instanceIDs("b", 150)
	for i := range 100 {
		ids = append(ids, fmt.Sprintf("c-b%04d", i))
	}
	var preflight []hbrbot.ClientInfo
	for i, id := range ids {
		if i%2 == 0 { // every other ID was found
			preflight = append(preflight, clientsAt("1.0.0", "2.0.0", id)...)
		}
	}
	cross := &hbrbot.CrossAccount{UserID: 42, RoleName: "role"}
	r := hbrbot.Request{ID: "r9", ChannelID: channel, RequesterID: requester, DryRun: true, Preflight: preflight,
		Spec: hbrbot.UpgradeSpec{Targets: targetsOf(ids...), Region: region, CrossAccount: cross}}
	batches := batchesOf(r, "333.3")
	if len(batches) != 3 {
		t.Fatalf("%d batches, want 3", len(batches))
	}
	var all []string
	for i, b := range batches {
		if want := []int{100, 100, 50}[i]; b.Targets.Len() != want {
			t.Errorf("batch %d: %d IDs, want %d", i, b.Targets.Len(), want)
		}
		want := hbrbot.BatchStatus{RequestID: "r9", Index: i, Of: 3, Region: region, CrossAccount: cross, DryRun: true,
			RequesterID: requester, ChannelID: channel, ThreadTS: "333.3", State: hbrbot.BatchPending}
		if !reflect.DeepEqual(b.BatchStatus, want) {
			t.Errorf("batch %d: %+v, want %+v", i, b.BatchStatus, want)
		}
		var before []string
		for _, c := range b.Before {
			before = append(before, cmp.Or(c.InstanceID, c.ClientID))
		}
		var found []string
		for j, id := range b.Targets.All() {
			if (len(all)+j)%2 == 0 {
				found = append(found, id)
			}
		}
		if !slices.Equal(before, found) {
			t.Errorf("batch %d: before %v, want %v", i, before, found)
		}
		all = append(all, b.Targets.All()...)
	}
	if !slices.Equal(all, ids) {
		t.Errorf("the batches name %d IDs, not the request's %d in order", len(all), len(ids))
	}
	// A card already recorded wins over the one clicked.
	r.CardTS = "111.1"
	if b := batchesOf(r, "333.3"); b[0].ThreadTS != "111.1" {
		t.Errorf("thread %s, want the recorded card 111.1", b[0].ThreadTS)
	}
}

func TestLeaveOutLatest(t *testing.T) {
	clients := []hbrbot.ClientInfo{
		{InstanceID: "i-latest", ClientID: "c-of-i-latest", Version: "2.0.0", MaxVersion: "2.0.0"},
		{InstanceID: "i-old", Version: "1.9.9", MaxVersion: "2.0.0"},
		{InstanceID: "i-noversion", MaxVersion: "2.0.0"},
		{InstanceID: "i-nomax", Version: "2.0.0"},
		{ClientID: "c-latest", Version: "2.10.0", MaxVersion: "2.10.0"},
		{ClientID: "c-newer", Version: "3.0.0", MaxVersion: "2.10.0"},
		{ClientID: "c-old", Version: "2.9.0", MaxVersion: "2.10.0"},
	}
	for _, tc := range []struct {
		name          string
		ids           []string
		keep, skipped []string
	}{
		{"none known", []string{"i-unknown", "c-unknown"}, []string{"i-unknown", "c-unknown"}, nil},
		{"latest left out", []string{"i-old", "i-latest", "c-latest", "c-old"}, []string{"i-old", "c-old"}, []string{"i-latest", "c-latest"}},
		{"a version missing is kept", []string{"i-noversion", "i-nomax"}, []string{"i-noversion", "i-nomax"}, nil},
		{"newer than the latest is left out", []string{"c-newer"}, nil, []string{"c-newer"}},
		{"by client ID of an instance", []string{"c-of-i-latest", "i-old"}, []string{"i-old"}, []string{"c-of-i-latest"}},
		{"all latest", []string{"i-latest", "c-latest"}, nil, []string{"i-latest", "c-latest"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			keep, skipped := leaveOutLatest(targetsOf(tc.ids...), clients)
			if !slices.Equal(keep.All(), tc.keep) || !slices.Equal(skipped, tc.skipped) {
				t.Errorf("kept %v, skipped %v; want %v, %v", keep.All(), skipped, tc.keep, tc.skipped)
			}
		})
	}
}
