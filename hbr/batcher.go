package hbr

import (
	"context"
	"sync"
	"time"

	"github.com/hbrbot/hbrbot"
)

// batcher merges the DescribeBackupClients look-ups of one region and
// account that come within a short window of each other (the pre-flights
// of several commands, the verifications of several jobs) into shared
// calls of up to a page of IDs, and hands each waiter the clients it asked
// for. A batch goes when its window ends or when it holds a page of
// instance or client IDs.
type batcher struct {
	c      *Client
	window time.Duration

	mu   sync.Mutex
	open map[lookupKey]*lookupBatch
}

// lookupKey is what calls must share to be merged.
type lookupKey struct {
	region string
	cross  hbrbot.CrossAccount // zero: own account
	isX    bool
}

type lookupBatch struct {
	key     lookupKey
	cross   *hbrbot.CrossAccount
	inst    []string
	client  []string
	seen    map[string]bool // "i:"/"c:" + ID
	waiters []*lookupWaiter
	prio    Priority
	timer   *time.Timer
	opened  time.Time
	sent    bool

	left   int                // waiters still waiting
	cancel context.CancelFunc // ends the calls once no waiter is left
}

type filterResult struct {
	f       filter
	clients []hbrbot.ClientInfo
	err     error
}

type lookupWaiter struct {
	t    hbrbot.Targets
	done chan struct{}
	out  []hbrbot.ClientInfo
	err  error
}

func newBatcher(c *Client, window time.Duration) *batcher {
	return &batcher{c: c, window: window, open: map[lookupKey]*lookupBatch{}}
}

// lookup joins the open batch of its region and account (or opens one),
// and waits for its answer or ctx's end.
func (bt *batcher) lookup(ctx context.Context, region string, t hbrbot.Targets, cross *hbrbot.CrossAccount) ([]hbrbot.ClientInfo, error) {
	key := lookupKey{region: region}
	if cross != nil {
		key.cross, key.isX = *cross, true
	}
	w := &lookupWaiter{t: t, done: make(chan struct{})}
	p := PriorityOf(ctx)
	if p.Rank.IsZero() {
		p.Rank = time.Now()
	}

	bt.mu.Lock()
	b := bt.open[key]
	if b == nil {
		b = &lookupBatch{key: key, cross: cross, seen: map[string]bool{}, prio: p, opened: time.Now()}
		bt.open[key] = b
		b.timer = time.AfterFunc(bt.window, func() { bt.due(b) })
	}
	b.add(w, p)
	full := len(b.inst) >= describePageSize || len(b.client) >= describePageSize
	bt.mu.Unlock()
	if full {
		bt.send(b)
	}

	select {
	case <-w.done:
		return w.out, w.err
	case <-ctx.Done():
		bt.mu.Lock()
		b.left--
		if b.left == 0 && b.cancel != nil {
			b.cancel()
		}
		bt.mu.Unlock()
		return nil, ctx.Err()
	}
}

// add puts w's IDs in the batch (once each). Caller holds bt.mu.
func (b *lookupBatch) add(w *lookupWaiter, p Priority) {
	for _, id := range w.t.InstanceIDs {
		if !b.seen["i:"+id] {
			b.seen["i:"+id] = true
			b.inst = append(b.inst, id)
		}
	}
	for _, id := range w.t.ClientIDs {
		if !b.seen["c:"+id] {
			b.seen["c:"+id] = true
			b.client = append(b.client, id)
		}
	}
	b.waiters = append(b.waiters, w)
	b.left++
	// The batch goes as its most urgent waiter would.
	if p.Class > b.prio.Class || p.Class == b.prio.Class && p.Rank.Before(b.prio.Rank) {
		b.prio = p
	}
}

// maxOpen bounds how long a batch collects look-ups while calls ahead of
// it wait for the budget.
const maxOpen = time.Second

// due is the end of a batch's window. While calls at least as urgent
// wait for DescribeBackupClients' budget, sending would only queue behind
// them: the batch collects for another window instead (up to maxOpen), so
// that under a short budget look-ups share more of their calls.
func (bt *batcher) due(b *lookupBatch) {
	bt.mu.Lock()
	prio, opened := b.prio, b.opened
	bt.mu.Unlock()
	if q := bt.c.queue; q != nil && time.Since(opened) < maxOpen && q.waitingAtLeast("DescribeBackupClients", prio.Class) > 0 {
		b.timer.Reset(bt.window)
		return
	}
	bt.send(b)
}

// send closes the batch to newcomers and runs its calls, once.
func (bt *batcher) send(b *lookupBatch) {
	bt.mu.Lock()
	if b.sent {
		bt.mu.Unlock()
		return
	}
	b.sent = true
	b.timer.Stop()
	if bt.open[b.key] == b {
		delete(bt.open, b.key)
	}
	ctx, cancel := context.WithCancel(WithPriority(context.Background(), b.prio))
	b.cancel = cancel
	if b.left == 0 {
		cancel()
	}
	filters := filtersOf(hbrbot.Targets{InstanceIDs: b.inst, ClientIDs: b.client})
	bt.mu.Unlock()
	go bt.run(ctx, b, filters)
}

// run makes the batch's calls, a filter at a time in parallel, and answers
// every waiter: its clients, or the error of a call it needed.
func (bt *batcher) run(ctx context.Context, b *lookupBatch, filters []filter) {
	defer b.cancel()
	results := make([]filterResult, len(filters))
	var wg sync.WaitGroup
	for i, f := range filters {
		wg.Go(func() {
			clients, err := bt.c.describeFilter(ctx, b.key.region, f, b.cross)
			results[i] = filterResult{f: f, clients: clients, err: err}
		})
	}
	wg.Wait()
	for _, w := range b.waiters {
		w.out, w.err = answer(results, w.t)
		close(w.done)
	}
}

// answer is what one waiter asked for, in the calls' order, without
// duplicates; or the first error of a call that named one of its IDs.
func answer(results []filterResult, t hbrbot.Targets) ([]hbrbot.ClientInfo, error) {
	inst, client := toSet(t.InstanceIDs), toSet(t.ClientIDs)
	var out []hbrbot.ClientInfo
	seen := map[string]bool{}
	for _, r := range results {
		want, byInstance := client, r.f.key == "InstanceIds"
		if byInstance {
			want = inst
		}
		needed := false
		for _, id := range r.f.ids {
			if want[id] {
				needed = true
				break
			}
		}
		if !needed {
			continue
		}
		if r.err != nil {
			return nil, r.err
		}
		var mine []hbrbot.ClientInfo
		for _, ci := range r.clients {
			if byInstance && want[ci.InstanceID] || !byInstance && want[ci.ClientID] {
				mine = append(mine, ci)
			}
		}
		out = appendNew(out, seen, mine)
	}
	return out, nil
}

func toSet(ids []string) map[string]bool {
	m := make(map[string]bool, len(ids))
	for _, id := range ids {
		m[id] = true
	}
	return m
}
