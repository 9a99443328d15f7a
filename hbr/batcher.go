package hbr

import (
	"context"
	"slices"
	"sync"
	"time"

	"github.com/hbrbot/hbrbot"
)

// batcher merges the DescribeBackupClients look-ups of one region and
// account (the pre-flights of several commands, the verifications of
// several jobs) into shared calls of a page of IDs, and hands each waiter
// the clients it asked for. IDs collect in an open batch; each full page
// goes at once, and the rest when the batch's window ends. So a job of 100
// IDs costs a page and a hundredth, not two pages: its last ID shares the
// next job's page.
type batcher struct {
	c      *Client
	window time.Duration

	mu    sync.Mutex
	open  map[lookupKey]*lookupBatch
	pages int // pages cut so far
}

// lookupKey is what calls must share to be merged.
type lookupKey struct {
	region string
	cross  hbrbot.CrossAccount // zero: own account
	isX    bool
}

// lookupBatch is the IDs of one key not yet given to a page, and who asked
// for them.
type lookupBatch struct {
	key    lookupKey
	cross  *hbrbot.CrossAccount
	inst   []string
	client []string
	askers map[string][]*lookupWaiter // "i:"/"c:" + ID: the waiters that asked for it
	timer  *time.Timer
	// admitting: its window ended and its rest waits for budget.
	admitting bool
}

// lookupPage is one call: a filter of at most a page of IDs, and the
// waiters that need it.
type lookupPage struct {
	seq     int
	f       filter
	cross   *hbrbot.CrossAccount
	region  string
	waiters []*lookupWaiter
	left    int                // waiters still waiting
	cancel  context.CancelFunc // ends the call once no waiter is left
	// admitted: the budget of its first call was taken before it was cut.
	admitted bool
}

type filterResult struct {
	f       filter
	seq     int // the page's place in the order pages were cut
	clients []hbrbot.ClientInfo
	err     error
}

type lookupWaiter struct {
	t          hbrbot.Targets
	prio       Priority
	unassigned int // its IDs not yet in a page
	pages      []*lookupPage
	pagesLeft  int // its pages not answered yet
	results    []filterResult
	gone       bool // its context ended
	done       chan struct{}
	out        []hbrbot.ClientInfo
	err        error
}

func newBatcher(c *Client, window time.Duration) *batcher {
	return &batcher{c: c, window: window, open: map[lookupKey]*lookupBatch{}}
}

// lookup puts its IDs in the open batch of its region and account (or
// opens one), and waits for its answer or ctx's end.
func (bt *batcher) lookup(ctx context.Context, region string, t hbrbot.Targets, cross *hbrbot.CrossAccount) ([]hbrbot.ClientInfo, error) {
	key := lookupKey{region: region}
	if cross != nil {
		key.cross, key.isX = *cross, true
	}
	p := PriorityOf(ctx)
	if p.Rank.IsZero() {
		p.Rank = time.Now()
	}
	w := &lookupWaiter{t: t, prio: p, done: make(chan struct{})}

	bt.mu.Lock()
	b := bt.open[key]
	if b == nil {
		b = &lookupBatch{key: key, cross: cross, askers: map[string][]*lookupWaiter{}}
		bt.open[key] = b
		b.timer = time.AfterFunc(bt.window, func() { bt.due(b) })
	}
	b.add(w)
	pages := bt.cut(b, false)
	bt.mu.Unlock()
	bt.run(pages)

	select {
	case <-w.done:
		return w.out, w.err
	case <-ctx.Done():
		bt.mu.Lock()
		w.gone = true
		for _, pg := range w.pages {
			pg.leave()
		}
		if w.unassigned > 0 {
			bt.drop(b, w)
		}
		bt.mu.Unlock()
		return nil, ctx.Err()
	}
}

// drop takes the IDs that only w, which left, still wanted out of its
// batch, so that they take no place in a page. Caller holds bt.mu.
func (bt *batcher) drop(b *lookupBatch, w *lookupWaiter) {
	dropped := map[string]bool{}
	forget := func(ids []string, prefix string) {
		for _, id := range ids {
			k := prefix + id
			as := b.askers[k]
			i := slices.Index(as, w)
			if i < 0 {
				continue // in a page already, or named twice
			}
			as = slices.Delete(as, i, i+1)
			w.unassigned--
			if len(as) == 0 {
				delete(b.askers, k)
				dropped[k] = true
			} else {
				b.askers[k] = as
			}
		}
	}
	forget(w.t.InstanceIDs, "i:")
	forget(w.t.ClientIDs, "c:")
	b.inst = slices.DeleteFunc(b.inst, func(id string) bool { return dropped["i:"+id] })
	b.client = slices.DeleteFunc(b.client, func(id string) bool { return dropped["c:"+id] })
	if len(b.inst) == 0 && len(b.client) == 0 {
		b.timer.Stop()
		if bt.open[b.key] == b {
			delete(bt.open, b.key)
		}
	}
}

// add puts w's IDs in the batch (once each). Caller holds bt.mu.
func (b *lookupBatch) add(w *lookupWaiter) {
	ask := func(ids []string, prefix string, pending *[]string) {
		for _, id := range ids {
			k := prefix + id
			as := b.askers[k]
			if len(as) > 0 && as[len(as)-1] == w {
				continue // named twice by w
			}
			if len(as) == 0 {
				*pending = append(*pending, id)
			}
			b.askers[k] = append(as, w)
			w.unassigned++
		}
	}
	ask(w.t.InstanceIDs, "i:", &b.inst)
	ask(w.t.ClientIDs, "c:", &b.client)
}

// prio is the most urgent priority of b's waiters: the batch waits as
// they would. Caller holds bt.mu.
func (b *lookupBatch) prio() Priority {
	var p Priority
	first := true
	for _, as := range b.askers {
		for _, w := range as {
			if first || more(w.prio, p) {
				p, first = w.prio, false
			}
		}
	}
	return p
}

// more says whether p goes before q.
func more(p, q Priority) bool {
	return p.Class > q.Class || p.Class == q.Class && p.Rank.Before(q.Rank)
}

// cut takes b's full pages of IDs (all of its IDs when all is set) into
// pages, and closes b once it is empty. Caller holds bt.mu; the pages are
// to be run after it is released.
func (bt *batcher) cut(b *lookupBatch, all bool) []*lookupPage {
	var pages []*lookupPage
	take := func(key, prefix string, pending *[]string) {
		for len(*pending) >= describePageSize || all && len(*pending) > 0 {
			n := min(len(*pending), describePageSize)
			bt.pages++
			pages = append(pages, b.page(bt.pages, filter{key, (*pending)[:n:n]}, prefix))
			*pending = (*pending)[n:]
		}
	}
	take("InstanceIds", "i:", &b.inst)
	take("ClientIds", "c:", &b.client)
	if len(b.inst) == 0 && len(b.client) == 0 {
		b.timer.Stop()
		if bt.open[b.key] == b {
			delete(bt.open, b.key)
		}
	}
	return pages
}

// page makes the call for f's IDs, for the waiters that asked for them.
// Caller holds bt.mu.
func (b *lookupBatch) page(seq int, f filter, prefix string) *lookupPage {
	pg := &lookupPage{seq: seq, f: f, cross: b.cross, region: b.key.region}
	for _, id := range f.ids {
		for _, w := range b.askers[prefix+id] {
			w.unassigned--
			if w.gone {
				continue
			}
			if n := len(w.pages); n == 0 || w.pages[n-1] != pg {
				w.pages = append(w.pages, pg)
				w.pagesLeft++
				pg.waiters = append(pg.waiters, w)
				pg.left++
			}
		}
		delete(b.askers, prefix+id)
	}
	return pg
}

// leave is a waiter of pg giving up. Caller holds bt.mu.
func (pg *lookupPage) leave() {
	pg.left--
	if pg.left == 0 && pg.cancel != nil {
		pg.cancel()
	}
}

// restWait bounds how long the rest of a batch waits for budget before
// it is sent through the queue like any call.
const restWait = time.Minute

// due is the end of a batch's window. With a budget, the rest of the batch
// (less than a page) first waits for DescribeBackupClients' budget, and is
// cut into its page only once the budget has a call for it: look-ups that
// come meanwhile join that page. Under a short budget a page that is not
// full would cost as much of the quota as one that is.
func (bt *batcher) due(b *lookupBatch) {
	bt.mu.Lock()
	if bt.open[b.key] != b || b.admitting {
		bt.mu.Unlock()
		return // emptied by full pages meanwhile, or already waiting
	}
	q := bt.c.queue
	if q == nil {
		pages := bt.cut(b, true)
		bt.mu.Unlock()
		bt.run(pages)
		return
	}
	b.admitting = true
	p := b.prio()
	bt.mu.Unlock()
	go func() {
		ctx, cancel := context.WithTimeout(WithPriority(context.Background(), p), restWait)
		defer cancel()
		admitted := q.wait(ctx, "DescribeBackupClients") == nil
		bt.mu.Lock()
		var pages []*lookupPage
		// The batch, or the one opened for its key since full pages
		// emptied it.
		if cur := bt.open[b.key]; cur != nil {
			pages = bt.cut(cur, true)
		}
		bt.mu.Unlock()
		if admitted && len(pages) > 0 {
			pages[0].admitted = true
		}
		bt.run(pages)
	}()
}

// run starts the pages' calls, each with the priority of its most urgent
// waiter. A page whose waiters all left is not called.
func (bt *batcher) run(pages []*lookupPage) {
	for _, pg := range pages {
		if len(pg.waiters) == 0 {
			continue
		}
		p := pg.waiters[0].prio
		for _, w := range pg.waiters[1:] {
			if more(w.prio, p) {
				p = w.prio
			}
		}
		ctx, cancel := context.WithCancel(WithPriority(context.Background(), p))
		if pg.admitted {
			ctx = withAdmission(ctx)
		}
		bt.mu.Lock()
		pg.cancel = cancel
		if pg.left == 0 {
			cancel()
		}
		bt.mu.Unlock()
		go bt.call(ctx, pg)
	}
}

// call makes one page's call and hands its result to each waiter; a
// waiter that has all of its pages' results gets its answer.
func (bt *batcher) call(ctx context.Context, pg *lookupPage) {
	defer pg.cancel()
	clients, err := bt.c.describeFilter(ctx, pg.region, pg.f, pg.cross)
	bt.mu.Lock()
	defer bt.mu.Unlock()
	for _, w := range pg.waiters {
		w.results = append(w.results, filterResult{f: pg.f, seq: pg.seq, clients: clients, err: err})
		w.pagesLeft--
		if w.pagesLeft == 0 && w.unassigned == 0 {
			w.out, w.err = answer(w.results, w.t)
			close(w.done)
		}
	}
}

// answer is what one waiter asked for, from the results of its pages (in
// whatever order they came): the clients of its instance pages, then of
// its client pages, each in the order the pages were cut and HBR listed
// them, without duplicates; or the first error of its pages.
func answer(results []filterResult, t hbrbot.Targets) ([]hbrbot.ClientInfo, error) {
	slices.SortFunc(results, func(a, b filterResult) int {
		if ai, bi := a.f.key == "InstanceIds", b.f.key == "InstanceIds"; ai != bi {
			if ai {
				return -1
			}
			return 1
		}
		return a.seq - b.seq
	})
	inst, client := toSet(t.InstanceIDs), toSet(t.ClientIDs)
	var out []hbrbot.ClientInfo
	seen := map[string]bool{}
	for _, r := range results {
		if r.err != nil {
			return nil, r.err
		}
		byInstance := r.f.key == "InstanceIds"
		var mine []hbrbot.ClientInfo
		for _, ci := range r.clients {
			if byInstance && inst[ci.InstanceID] || !byInstance && client[ci.ClientID] {
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
