package hbr

import (
	"container/heap"
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Budget is the budget of each action's calls that all replicas share
// (HBR's flow control is per action and account).
type Budget interface {
	// Wait blocks until one call of action may go, or ctx ends.
	Wait(ctx context.Context, action string) error
	// Throttled says HBR answered a call of action with Throttling*: the
	// action's budget shrinks for a while, for every replica.
	Throttled(ctx context.Context, action string)
	// MovesWaiting says calls of action that move jobs wait on this
	// replica for want of budget. It must not block: the queue says it
	// on every grant they had to wait for.
	MovesWaiting(action string)
	// InformsTurn blocks an Informs call of action until it may queue:
	// at once unless Moves calls wait on some replica; while they do, at
	// 1/share of action's budget, all replicas together.
	InformsTurn(ctx context.Context, action string, share int) error
}

// informsShare: when both classes wait, one grant in informsShare goes to
// an Informs call, so look-ups and progress are slowed, never starved. A
// replica's own queue keeps that order; InformsTurn keeps it across
// replicas, so one whose queue holds only Informs does not take the
// budget that another's Moves wait for.
const informsShare = 4

// shortAfter: a grant that took this long came from an empty budget, not
// at once: Moves waiting for it then say so to every replica.
const shortAfter = 20 * time.Millisecond

// queue hands out each action's budget to the calls of this replica that
// wait for it, by priority: one dispatcher per action takes a grant from
// the shared budget (then from the total cap), and only then picks the
// waiter it goes to, so the order is decided when the budget is there.
type queue struct {
	budget Budget
	total  Limiter // may be nil

	mu      sync.Mutex
	actions map[string]*actionQueue
	seq     uint64
}

type actionQueue struct {
	classes      [2]waiters // by Class
	busy         bool       // a dispatcher runs
	sinceInforms int        // grants to Moves since the last to Informs
}

type waiter struct {
	prio  Priority
	seq   uint64
	ready chan error // buffered: the dispatcher never blocks
	index int        // in its heap; -1 once taken out
}

func newQueue(b Budget, total Limiter) *queue {
	return &queue{budget: b, total: total, actions: map[string]*actionQueue{}}
}

// admission is the budget of one call, taken before the call was made up
// (see batcher.due).
type admission struct{ used atomic.Bool }

type admissionKey struct{}

// withAdmission returns ctx whose first call goes without waiting: its
// budget was taken.
func withAdmission(ctx context.Context) context.Context {
	return context.WithValue(ctx, admissionKey{}, &admission{})
}

// wait blocks until the call of action with ctx's priority may go.
func (q *queue) wait(ctx context.Context, action string) error {
	if a, ok := ctx.Value(admissionKey{}).(*admission); ok && a.used.CompareAndSwap(false, true) {
		return nil
	}
	p := PriorityOf(ctx)
	if p.Class == Informs {
		if err := q.budget.InformsTurn(ctx, action, informsShare); err != nil {
			return err
		}
	}
	w, aq := q.enqueue(action, p)
	select {
	case err := <-w.ready:
		return err
	case <-ctx.Done():
		q.mu.Lock()
		if w.index >= 0 {
			heap.Remove(&aq.classes[w.prio.Class], w.index)
		}
		q.mu.Unlock()
		return ctx.Err()
	}
}

// enqueue puts a waiter in action's queue, starting its dispatcher if
// none runs.
func (q *queue) enqueue(action string, p Priority) (*waiter, *actionQueue) {
	if p.Rank.IsZero() {
		p.Rank = time.Now()
	}
	if p.Class != Informs {
		p.Class = Moves
	}
	w := &waiter{prio: p, ready: make(chan error, 1)}
	q.mu.Lock()
	defer q.mu.Unlock()
	aq := q.actions[action]
	if aq == nil {
		aq = &actionQueue{}
		q.actions[action] = aq
	}
	q.seq++
	w.seq = q.seq
	heap.Push(&aq.classes[p.Class], w)
	if !aq.busy {
		aq.busy = true
		go q.dispatch(action, aq)
	}
	return w, aq
}

// dispatch hands out grants while calls wait. A grant whose waiter left
// in the meantime goes to the next one.
func (q *queue) dispatch(action string, aq *actionQueue) {
	for {
		q.mu.Lock()
		if aq.classes[Moves].Len()+aq.classes[Informs].Len() == 0 {
			aq.busy = false
			q.mu.Unlock()
			return
		}
		q.mu.Unlock()
		// The budgets fall back to local limits when Redis is down, so
		// these end; the calls' own contexts bound the waiters.
		began := time.Now()
		err := q.budget.Wait(context.Background(), action)
		if err == nil && q.total != nil {
			err = q.total.Wait(context.Background())
		}
		short := time.Since(began) >= shortAfter
		q.mu.Lock()
		if short && aq.classes[Moves].Len() > 0 {
			q.budget.MovesWaiting(action)
		}
		if w := aq.pick(); w != nil {
			w.ready <- err
		}
		q.mu.Unlock()
	}
}

// pick takes the waiter a grant goes to: Moves first, but Informs every
// informsShare-th grant while it waits. Caller holds the lock.
func (aq *actionQueue) pick() *waiter {
	moves, informs := &aq.classes[Moves], &aq.classes[Informs]
	switch {
	case informs.Len() > 0 && (moves.Len() == 0 || aq.sinceInforms >= informsShare-1):
		aq.sinceInforms = 0
		return heap.Pop(informs).(*waiter)
	case moves.Len() > 0:
		aq.sinceInforms++
		return heap.Pop(moves).(*waiter)
	}
	return nil
}

// waiters is a heap of one class: earliest rank, then first come.
type waiters []*waiter

func (h waiters) Len() int { return len(h) }
func (h waiters) Less(i, j int) bool {
	if !h[i].prio.Rank.Equal(h[j].prio.Rank) {
		return h[i].prio.Rank.Before(h[j].prio.Rank)
	}
	return h[i].seq < h[j].seq
}
func (h waiters) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *waiters) Push(x any) {
	w := x.(*waiter)
	w.index = len(*h)
	*h = append(*h, w)
}
func (h *waiters) Pop() any {
	old := *h
	w := old[len(old)-1]
	old[len(old)-1] = nil
	w.index = -1
	*h = old[:len(old)-1]
	return w
}
