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

type openBudget struct{}

func (openBudget) Wait(context.Context, string) error { return nil }
func (openBudget) Throttled(context.Context, string)  {}

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
