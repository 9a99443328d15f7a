package hbr

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/hbrbot/hbrbot"
)

// stepBudget hands out one grant per value sent on grants.
type stepBudget struct {
	grants    chan struct{}
	throttled chan string
}

func (b *stepBudget) Wait(ctx context.Context, _ string) error {
	select {
	case <-b.grants:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (b *stepBudget) MovesWaiting(string)                            {}
func (b *stepBudget) InformsTurn(context.Context, string, int) error { return nil }

func (b *stepBudget) Throttled(_ context.Context, action string) {
	select {
	case b.throttled <- action:
	default:
	}
}

// TestQueueOrder: each grant goes to the waiter first by class (Moves
// before Informs, with Informs served every informsShare-th grant while
// both wait), then by rank, then by arrival.
func TestQueueOrder(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	at := func(s int) time.Time { return t0.Add(time.Duration(s) * time.Second) }
	type w struct {
		name string
		prio Priority
	}
	tests := []struct {
		name    string
		waiters []w
		want    []string
	}{
		{"moves first", []w{{"i1", Priority{Informs, at(1)}}, {"m1", Priority{Moves, at(2)}}}, []string{"m1", "i1"}},
		{"rank within a class", []w{{"m3", Priority{Moves, at(3)}}, {"m1", Priority{Moves, at(1)}}, {"m2", Priority{Moves, at(2)}}},
			[]string{"m1", "m2", "m3"}},
		{"equal ranks: first come", []w{{"a", Priority{Moves, at(1)}}, {"b", Priority{Moves, at(1)}}}, []string{"a", "b"}},
		{"informs keeps its share", []w{
			{"m1", Priority{Moves, at(1)}}, {"m2", Priority{Moves, at(2)}}, {"m3", Priority{Moves, at(3)}},
			{"m4", Priority{Moves, at(4)}}, {"m5", Priority{Moves, at(5)}}, {"m6", Priority{Moves, at(6)}},
			{"m7", Priority{Moves, at(7)}}, {"i1", Priority{Informs, at(0)}}, {"i2", Priority{Informs, at(0)}},
		}, []string{"m1", "m2", "m3", "i1", "m4", "m5", "m6", "i2", "m7"}},
		{"a poll predicted to have ended goes before one predicted later", []w{
			{"later", Priority{Informs, at(30)}}, {"ended", Priority{Moves, at(-5)}}, {"sooner", Priority{Informs, at(10)}},
		}, []string{"ended", "sooner", "later"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := &stepBudget{grants: make(chan struct{})}
			q := newQueue(b, nil)
			served := make(chan string, len(tc.waiters))
			for _, wt := range tc.waiters {
				wa, _ := q.enqueue("DescribeTask", wt.prio)
				go func() {
					if err := <-wa.ready; err == nil {
						served <- wt.name
					}
				}()
			}
			var got []string
			for range tc.waiters {
				b.grants <- struct{}{}
				got = append(got, <-served)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("served %q, want %q", got, tc.want)
			}
		})
	}
}

// TestQueueWaiterLeaves: a waiter whose context ends leaves the queue; the
// next grant goes to the next waiter.
func TestQueueWaiterLeaves(t *testing.T) {
	b := &stepBudget{grants: make(chan struct{})}
	q := newQueue(b, nil)
	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan error, 1)
	go func() { first <- q.wait(WithPriority(ctx, Priority{Class: Moves}), "DescribeTask") }()
	second, _ := q.enqueue("DescribeTask", Priority{Class: Informs})
	cancel()
	if err := <-first; err != context.Canceled {
		t.Fatalf("cancelled waiter: %v", err)
	}
	b.grants <- struct{}{}
	if err := <-second.ready; err != nil {
		t.Fatalf("second waiter: %v", err)
	}
}

// sharedTurnBudget grants after delay, records who said Moves wait, and
// holds Informs calls at their turn until one is let through.
type sharedTurnBudget struct {
	delay        time.Duration
	movesWaiting chan string
	informsTurn  chan struct{}
}

func (b *sharedTurnBudget) Wait(context.Context, string) error {
	time.Sleep(b.delay) // an empty budget's grant takes its time
	return nil
}

func (b *sharedTurnBudget) Throttled(context.Context, string) {}

func (b *sharedTurnBudget) MovesWaiting(action string) {
	select {
	case b.movesWaiting <- action:
	default:
	}
}

func (b *sharedTurnBudget) InformsTurn(ctx context.Context, _ string, share int) error {
	if share != informsShare {
		return errors.New("not the queue's share")
	}
	select {
	case <-b.informsTurn:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// TestQueueTurnsAcrossReplicas: a Moves call that had to wait for the
// budget says so to every replica (through the budget), one granted at
// once does not; an Informs call takes its turn there before it queues, a
// Moves call never does.
func TestQueueTurnsAcrossReplicas(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		delay time.Duration
		said  bool
	}{
		{"granted at once", 0, false},
		{"the budget was short", shortAfter, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := &sharedTurnBudget{delay: tc.delay, movesWaiting: make(chan string, 8), informsTurn: make(chan struct{})}
			q := newQueue(b, nil)
			if err := q.wait(WithPriority(ctx, Priority{Class: Moves}), "DescribeBackupClients"); err != nil {
				t.Fatal(err)
			}
			// Said, if at all, before the grant was handed over.
			select {
			case got := <-b.movesWaiting:
				if !tc.said || got != "DescribeBackupClients" {
					t.Errorf("Moves waiting said for %q", got)
				}
			default:
				if tc.said {
					t.Error("Moves waited for the budget and did not say so")
				}
			}
		})
	}
	b := &sharedTurnBudget{movesWaiting: make(chan string, 8), informsTurn: make(chan struct{})}
	q := newQueue(b, nil)
	informs := make(chan error, 1)
	go func() { informs <- q.wait(WithPriority(ctx, Priority{Class: Informs}), "DescribeBackupClients") }()
	wctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	select {
	case err := <-informs:
		t.Fatalf("an Informs call went without its turn (%v)", err)
	case <-wctx.Done():
	}
	b.informsTurn <- struct{}{}
	if err := <-informs; err != nil {
		t.Fatalf("Informs call after its turn: %v", err)
	}
}

// TestQueueActionsAreSeparate: a waiter of one action is not held up by
// another action's empty budget.
func TestQueueActionsAreSeparate(t *testing.T) {
	blocked := &stepBudget{grants: make(chan struct{})}
	q := newQueue(perAction{"DescribeTask": blocked, "UpgradeBackupClients": openBudget{}}, nil)
	_, _ = q.enqueue("DescribeTask", Priority{Class: Moves})
	if err := q.wait(context.Background(), "UpgradeBackupClients"); err != nil {
		t.Fatal(err)
	}
	blocked.grants <- struct{}{} // let the dispatcher end
}

type perAction map[string]Budget

func (p perAction) Wait(ctx context.Context, action string) error { return p[action].Wait(ctx, action) }
func (p perAction) Throttled(context.Context, string)             {}
func (p perAction) MovesWaiting(string)                           {}
func (p perAction) InformsTurn(context.Context, string, int) error {
	return nil
}

type openBudget struct{}

func (openBudget) Wait(context.Context, string) error { return nil }
func (openBudget) Throttled(context.Context, string)  {}
func (openBudget) MovesWaiting(string)                {}
func (openBudget) InformsTurn(context.Context, string, int) error {
	return nil
}

// TestNoBudgetIsNotSent: a call that gets no budget before its context
// ends fails with ErrNoBudget and is never sent.
func TestNoBudgetIsNotSent(t *testing.T) {
	srv := newServer(t)
	o := testOptions(srv.Host())
	o.Budget = &stepBudget{grants: make(chan struct{})} // never grants
	c := newClient(t, o)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := c.UpgradeBackupClients(ctx, testRegion, targetsOf(1), nil)
	if !errors.Is(err, ErrNoBudget) || errors.Is(err, hbrbot.ErrOutcomeUnknown) {
		t.Fatalf("err = %v, want ErrNoBudget, not outcome unknown", err)
	}
	if n := len(srv.Calls("")); n != 0 {
		t.Errorf("%d calls sent", n)
	}
}
