// Package redisstore keeps hbrbot's state in Redis: requests and their
// decisions, the HBR jobs (batches) they became, and one schedule of work
// that every replica draws from.
//
// The schedule is a sorted set of work items scored by when they are due.
// A replica claims a due item by pushing its score out by a lease; the new
// score is the lease's fencing token. Every write the holder makes checks
// the token first, so a replica that stalled past its lease cannot
// overwrite the work of the one that took over, and a replica that dies
// simply lets its lease run out. Nothing relies on keyspace notifications.
//
// Every key carries the hash tag {h}, so the multi-key scripts run on a
// Redis Cluster too (in one slot: hbrbot's load is small).
package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/hbrbot/hbrbot"
)

// Prefix starts every key.
const Prefix = "hbrbot:{h}:"

// Retention is how long ended requests and jobs stay readable.
const Retention = 7 * 24 * time.Hour

// Store is hbrbot's state in one Redis (or Sentinel group, or Cluster).
type Store struct {
	rdb redis.UniversalClient
	now func() time.Time
}

// New wraps a connected client.
func New(rdb redis.UniversalClient) *Store {
	return &Store{rdb: rdb, now: time.Now}
}

func key(parts ...string) string {
	k := Prefix
	for i, p := range parts {
		if i > 0 {
			k += ":"
		}
		k += p
	}
	return k
}

var (
	keyDue = key("due")
)

func keyRequest(id string) string   { return key("req", id) }
func keyBatch(k string) string      { return key("batch", k) }
func keyBatchSpec(k string) string  { return key("bspec", k) }
func keyEnvelope(id string) string  { return key("env", id) }
func keyChannel(ch string) string   { return key("chan", ch) }
func ms(t time.Time) float64        { return float64(t.UnixMilli()) }
func msString(t time.Time) string   { return strconv.FormatInt(t.UnixMilli(), 10) }
func fromMS(v float64) time.Time    { return time.UnixMilli(int64(v)) }
func itemBatch(k string) string     { return member(hbrbot.Work{Kind: hbrbot.WorkBatch, ID: k}) }
func itemExpiry(id string) string   { return member(hbrbot.Work{Kind: hbrbot.WorkExpiry, ID: id}) }
func itemCardSync(id string) string { return member(hbrbot.Work{Kind: hbrbot.WorkCardSync, ID: id}) }

// Ping checks Redis answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redis ping: %w", err)
	}
	return nil
}

// FirstDelivery records a Socket Mode envelope and reports whether this is
// the first time any replica saw it. Slack redelivers unacknowledged
// envelopes with the same ID, and may hand one to another connection.
func (s *Store) FirstDelivery(ctx context.Context, envelopeID string) (bool, error) {
	ok, err := s.rdb.SetNX(ctx, keyEnvelope(envelopeID), 1, 24*time.Hour).Result()
	if err != nil {
		return false, fmt.Errorf("record envelope: %w", err)
	}
	return ok, nil
}

// requestDoc is how a request is stored: the immutable part as JSON, the
// decision in fields that scripts change atomically.
func requestFields(r hbrbot.Request) (map[string]any, error) {
	spec, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	return map[string]any{
		"doc":        spec,
		"state":      string(r.State),
		"card_ts":    r.CardTS,
		"expires_at": msString(r.ExpiresAt),
		"required":   strconv.Itoa(max(r.RequiredApprovals, 1)),
		"approvals":  "",
	}, nil
}

// CreateRequest stores a new pending request, schedules its expiry and
// lists it under its channel.
func (s *Store) CreateRequest(ctx context.Context, r hbrbot.Request) error {
	fields, err := requestFields(r)
	if err != nil {
		return fmt.Errorf("create request %s: %w", r.ID, err)
	}
	ttl := time.Until(r.ExpiresAt) + Retention
	_, err = s.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, keyRequest(r.ID), fields)
		p.Expire(ctx, keyRequest(r.ID), ttl)
		p.ZAdd(ctx, keyDue, redis.Z{Score: ms(r.ExpiresAt), Member: itemExpiry(r.ID)})
		p.ZAdd(ctx, keyChannel(r.ChannelID), redis.Z{Score: ms(r.CreatedAt), Member: r.ID})
		p.ZRemRangeByScore(ctx, keyChannel(r.ChannelID), "-inf", strconv.FormatFloat(ms(r.CreatedAt.Add(-Retention)), 'f', 0, 64))
		p.Expire(ctx, keyChannel(r.ChannelID), Retention)
		return nil
	})
	if err != nil {
		return fmt.Errorf("create request %s: %w", r.ID, err)
	}
	return nil
}

// SetCardTS records where a request's approval card was posted.
func (s *Store) SetCardTS(ctx context.Context, id, ts string) error {
	if err := s.rdb.HSet(ctx, keyRequest(id), "card_ts", ts).Err(); err != nil {
		return fmt.Errorf("set card of request %s: %w", id, err)
	}
	return nil
}

// SetProgress records the state of a request's live progress reply.
func (s *Store) SetProgress(ctx context.Context, id string, state hbrbot.ReportState, ts string, at time.Time) error {
	err := s.rdb.HSet(ctx, keyRequest(id), "progress_state", string(state), "progress_ts", ts, "progress_at", msString(at)).Err()
	if err != nil {
		return fmt.Errorf("set progress of request %s: %w", id, err)
	}
	return nil
}

// Progress reads only the state of a request's progress reply and when it
// was last drawn: the redraw's gate, without decoding the request (which
// names up to 10,000 IDs).
func (s *Store) Progress(ctx context.Context, id string) (hbrbot.ReportState, time.Time, error) {
	vals, err := s.rdb.HMGet(ctx, keyRequest(id), "state", "progress_state", "progress_at").Result()
	if err != nil {
		return "", time.Time{}, fmt.Errorf("read progress of request %s: %w", id, err)
	}
	if vals[0] == nil {
		return "", time.Time{}, fmt.Errorf("request %s: %w", id, hbrbot.ErrNotFound)
	}
	state, _ := vals[1].(string)
	var at time.Time
	if v, ok := vals[2].(string); ok {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil {
			at = time.UnixMilli(n)
		}
	}
	return hbrbot.ReportState(state), at, nil
}

// Request reads a request.
func (s *Store) Request(ctx context.Context, id string) (hbrbot.Request, error) {
	vals, err := s.rdb.HGetAll(ctx, keyRequest(id)).Result()
	if err != nil {
		return hbrbot.Request{}, fmt.Errorf("read request %s: %w", id, err)
	}
	return decodeRequest(id, vals)
}

func decodeRequest(id string, vals map[string]string) (hbrbot.Request, error) {
	if len(vals) == 0 || vals["doc"] == "" {
		return hbrbot.Request{}, fmt.Errorf("request %s: %w", id, hbrbot.ErrNotFound)
	}
	var r hbrbot.Request
	if err := json.Unmarshal([]byte(vals["doc"]), &r); err != nil {
		return hbrbot.Request{}, fmt.Errorf("decode request %s: %w", id, err)
	}
	r.State = hbrbot.RequestState(vals["state"])
	r.CardTS = vals["card_ts"]
	r.DecidedBy = vals["decided_by"]
	r.Approvals = nil
	if a := vals["approvals"]; a != "" {
		r.Approvals = strings.Split(a, ",")
	}
	r.ProgressTS, r.ProgressState = vals["progress_ts"], hbrbot.ReportState(vals["progress_state"])
	if v, err := strconv.ParseInt(vals["progress_at"], 10, 64); err == nil {
		r.ProgressAt = time.UnixMilli(v)
	}
	if v, err := strconv.ParseInt(vals["decided_at"], 10, 64); err == nil {
		r.DecidedAt = time.UnixMilli(v)
	}
	return r, nil
}

// decideScript moves a pending request to its decision, once. An approval
// is recorded (each approver once) until the required number is reached;
// the last one approves the request and creates its batches in the same
// step, so a decided request always has its work scheduled. It returns the
// request's state after the call and whether this call changed anything.
var decideScript = redis.NewScript(`
local req, due = KEYS[1], KEYS[2]
local state = redis.call('HGET', req, 'state')
if not state then return {'', 0} end
if state ~= 'pending' then return {state, 0} end
local now, want, by = tonumber(ARGV[1]), ARGV[2], ARGV[3]
if want ~= 'expired' and now >= tonumber(redis.call('HGET', req, 'expires_at')) then
  want = 'expired'
  by = ''
end
if ARGV[4] ~= '' and redis.call('HGET', req, 'card_ts') == '' then
  redis.call('HSET', req, 'card_ts', ARGV[4])
end
if want == 'approved' then
  local list = redis.call('HGET', req, 'approvals') or ''
  local n = 0
  for u in string.gmatch(list, '[^,]+') do
    if u == by then
      local total = 0
      for _ in string.gmatch(list, '[^,]+') do total = total + 1 end
      return {'pending', 0, total}
    end
    n = n + 1
  end
  if list == '' then list = by else list = list .. ',' .. by end
  redis.call('HSET', req, 'approvals', list)
  if n + 1 < tonumber(redis.call('HGET', req, 'required') or '1') then
    redis.call('ZADD', due, ARGV[1], ARGV[6]) -- the card shows the count
    return {'pending', 1, n + 1}
  end
end
redis.call('HSET', req, 'state', want, 'decided_by', by, 'decided_at', ARGV[1])
redis.call('ZREM', due, ARGV[5])
redis.call('ZADD', due, ARGV[1], ARGV[6])
if want == 'approved' then
  -- KEYS: request, schedule, n batches, their n specs; ARGV after the
  -- first 7: n batch documents, n schedule items, n specs.
  local ttl = tonumber(ARGV[7])
  local n = (#KEYS - 2) / 2
  for i = 1, n do
    redis.call('SET', KEYS[2 + i], ARGV[7 + i], 'NX', 'PX', ttl)
    redis.call('SET', KEYS[2 + n + i], ARGV[7 + 2 * n + i], 'NX', 'PX', ttl)
    redis.call('ZADD', due, ARGV[1], ARGV[7 + n + i])
  end
end
return {want, 1}
`)

// Decide applies d to request id if it is still pending. It returns the
// request as it stands afterwards, and whether this call changed it: false
// when it was already decided (by this or another replica) or d's approver
// had already approved. An approval short of the required number leaves
// the request pending with one more approval. A pending request past its
// expiry is decided as expired whatever d says.
func (s *Store) Decide(ctx context.Context, id string, d hbrbot.Decision) (hbrbot.Request, bool, error) {
	keys := []string{keyRequest(id), keyDue}
	args := []any{msString(d.At), string(d.State), d.By, d.CardTS, itemExpiry(id), itemCardSync(id),
		strconv.FormatInt((30 * 24 * time.Hour).Milliseconds(), 10)}
	var docs, members, specs []any
	var specKeys []string
	if d.State == hbrbot.RequestApproved {
		for _, b := range d.Batches {
			doc, spec, err := encodeBatch(b)
			if err != nil {
				return hbrbot.Request{}, false, fmt.Errorf("decide request %s: %w", id, err)
			}
			keys = append(keys, keyBatch(b.Key()))
			specKeys = append(specKeys, keyBatchSpec(b.Key()))
			docs = append(docs, doc)
			specs = append(specs, spec)
			members = append(members, itemBatch(b.Key()))
		}
	}
	keys = append(keys, specKeys...)
	args = append(append(append(args, docs...), members...), specs...)
	res, err := decideScript.Run(ctx, s.rdb, keys, args...).Slice()
	if err != nil {
		return hbrbot.Request{}, false, fmt.Errorf("decide request %s: %w", id, err)
	}
	if res[0].(string) == "" {
		return hbrbot.Request{}, false, fmt.Errorf("decide request %s: %w", id, hbrbot.ErrNotFound)
	}
	r, err := s.Request(ctx, id)
	// The state (and, for an approval short of the number, the count) is
	// the script's, atomic with the decision: a re-read may already show a
	// later approval.
	r.State = hbrbot.RequestState(res[0].(string))
	if len(res) > 2 {
		if n, ok := res[2].(int64); ok && int(n) < len(r.Approvals) {
			r.Approvals = r.Approvals[:n]
		}
	}
	return r, res[1].(int64) == 1, err
}

// ChannelRequests lists the channel's requests of the retention period,
// newest first.
func (s *Store) ChannelRequests(ctx context.Context, channel string, limit int) ([]hbrbot.Request, error) {
	ids, err := s.rdb.ZRevRange(ctx, keyChannel(channel), 0, int64(limit-1)).Result()
	if err != nil {
		return nil, fmt.Errorf("list requests of %s: %w", channel, err)
	}
	var out []hbrbot.Request
	for _, id := range ids {
		r, err := s.Request(ctx, id)
		if errors.Is(err, hbrbot.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, r)
	}
	return out, nil
}

// A batch is stored as two documents: its status (everything that changes,
// written at every step) and its spec (the IDs it names and how the
// look-up before the card saw them), written once at approval. A poll reads
// and writes the status only: at 100 IDs a job, the spec is most of the
// bytes and of the decoding.
type batchSpec struct {
	Targets hbrbot.Targets      `json:"targets"`
	Before  []hbrbot.ClientInfo `json:"before,omitempty"`
}

// encodeBatch splits b into its status and its spec; the spec is empty
// when b carries none (a batch read with BatchStatus).
func encodeBatch(b hbrbot.Batch) (status, spec []byte, err error) {
	if b.Targets.Len() > 0 || len(b.Before) > 0 {
		if spec, err = json.Marshal(batchSpec{Targets: b.Targets, Before: b.Before}); err != nil {
			return nil, nil, err
		}
	}
	b.Targets, b.Before = hbrbot.Targets{}, nil
	if status, err = json.Marshal(b); err != nil {
		return nil, nil, err
	}
	return status, spec, nil
}

// decodeBatch joins a status and, when there is one, a spec. A status
// written before the split carries its spec itself.
func decodeBatch(key string, status, spec []byte) (hbrbot.Batch, error) {
	var b hbrbot.Batch
	if err := json.Unmarshal(status, &b); err != nil {
		return hbrbot.Batch{}, fmt.Errorf("decode batch %s: %w", key, err)
	}
	if len(spec) > 0 {
		var sp batchSpec
		if err := json.Unmarshal(spec, &sp); err != nil {
			return hbrbot.Batch{}, fmt.Errorf("decode batch spec %s: %w", key, err)
		}
		b.Targets, b.Before = sp.Targets, sp.Before
	}
	return b, nil
}

// Batch reads a batch, spec included.
func (s *Store) Batch(ctx context.Context, key string) (hbrbot.Batch, error) {
	return s.batch(ctx, key, true)
}

// BatchStatus reads a batch without its spec: no Targets, no Before.
// Saving it keeps the stored spec; LoadSpec adds it.
func (s *Store) BatchStatus(ctx context.Context, key string) (hbrbot.Batch, error) {
	return s.batch(ctx, key, false)
}

func (s *Store) batch(ctx context.Context, key string, withSpec bool) (hbrbot.Batch, error) {
	bs, err := s.batches(ctx, []string{key}, withSpec)
	if err != nil {
		return hbrbot.Batch{}, err
	}
	if len(bs) == 0 {
		return hbrbot.Batch{}, fmt.Errorf("batch %s: %w", key, hbrbot.ErrNotFound)
	}
	return bs[0], nil
}

// LoadSpec adds b's spec (Targets and Before) to a batch read with
// BatchStatus, reading the spec alone. A batch stored whole by an older
// version carries its spec already.
func (s *Store) LoadSpec(ctx context.Context, b *hbrbot.Batch) error {
	if b.Targets.Len() > 0 {
		return nil
	}
	raw, err := s.rdb.Get(ctx, keyBatchSpec(b.Key())).Bytes()
	if errors.Is(err, redis.Nil) {
		// Written with the status and expiring with it: its absence is
		// damage to report, not a batch that ended.
		return fmt.Errorf("batch %s has a status but no spec", b.Key())
	}
	if err != nil {
		return fmt.Errorf("read batch spec %s: %w", b.Key(), err)
	}
	var sp batchSpec
	if err := json.Unmarshal(raw, &sp); err != nil {
		return fmt.Errorf("decode batch spec %s: %w", b.Key(), err)
	}
	b.Targets, b.Before = sp.Targets, sp.Before
	return nil
}

// Batches reads the batches of request r that exist, specs included, in
// one round trip.
func (s *Store) Batches(ctx context.Context, r hbrbot.Request) ([]hbrbot.Batch, error) {
	keys := make([]string, len(r.Batches()))
	for i := range keys {
		keys[i] = hbrbot.BatchKey(r.ID, i)
	}
	return s.batches(ctx, keys, true)
}

// BatchStatuses reads the statuses (no specs) of request id's batches,
// without the request: its first batch says how many there are. Enough to
// draw progress. None when the request was never approved.
func (s *Store) BatchStatuses(ctx context.Context, id string) ([]hbrbot.Batch, error) {
	first, err := s.batches(ctx, []string{hbrbot.BatchKey(id, 0)}, false)
	if err != nil || len(first) == 0 {
		return nil, err
	}
	keys := make([]string, 0, first[0].Of)
	for i := 1; i < first[0].Of; i++ {
		keys = append(keys, hbrbot.BatchKey(id, i))
	}
	rest, err := s.batches(ctx, keys, false)
	if err != nil {
		return nil, err
	}
	return append(first, rest...), nil
}

// batches reads the batches named by keys that exist, in order.
func (s *Store) batches(ctx context.Context, keys []string, withSpec bool) ([]hbrbot.Batch, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	rk := make([]string, 0, 2*len(keys))
	for _, k := range keys {
		rk = append(rk, keyBatch(k))
	}
	if withSpec {
		for _, k := range keys {
			rk = append(rk, keyBatchSpec(k))
		}
	}
	vals, err := s.rdb.MGet(ctx, rk...).Result()
	if err != nil {
		return nil, fmt.Errorf("read batches %s…: %w", keys[0], err)
	}
	var out []hbrbot.Batch
	for i, k := range keys {
		status, ok := vals[i].(string)
		if !ok {
			continue // never created, or expired
		}
		var spec string
		if withSpec {
			spec, _ = vals[len(keys)+i].(string)
		}
		b, err := decodeBatch(k, []byte(status), []byte(spec))
		if err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

func member(w hbrbot.Work) string { return string(w.Kind) + ":" + w.ID }

func parseMember(m string) (hbrbot.Work, bool) {
	for _, k := range []hbrbot.WorkKind{hbrbot.WorkBatch, hbrbot.WorkExpiry, hbrbot.WorkCardSync, hbrbot.WorkProgress} {
		p := string(k) + ":"
		if len(m) > len(p) && m[:len(p)] == p {
			return hbrbot.Work{Kind: k, ID: m[len(p):]}, true
		}
	}
	return hbrbot.Work{}, false
}

// claimScript takes up to ARGV[2] items whose score (due time or an old
// lease) is at most ARGV[1], and makes each new lease's expiry its score and
// fencing token: ARGV[3] (the lease's end, in ms) plus a thousandth that
// differs per item, from ARGV[4] on, so that leases taken in the same
// millisecond never share a token. One script a claim, not one per item.
// It returns member, token, member, token, ...
var claimScript = redis.NewScript(`
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for i, m in ipairs(due) do
  local token = string.format('%s.%03d', ARGV[3], (tonumber(ARGV[4]) + i) % 1000)
  redis.call('ZADD', KEYS[1], token, m)
  out[#out + 1] = m
  out[#out + 1] = token
end
return out
`)

// ClaimDue claims up to n items due at now, for lease.
func (s *Store) ClaimDue(ctx context.Context, now time.Time, n int, lease time.Duration) ([]hbrbot.Lease, error) {
	until := now.Add(lease)
	got, err := claimScript.Run(ctx, s.rdb, []string{keyDue}, msString(now), n, msString(until), rand.IntN(1000)).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("claim due work: %w", err)
	}
	var leases []hbrbot.Lease
	for i := 0; i+1 < len(got); i += 2 {
		m, token := got[i], got[i+1]
		item, ok := parseMember(m)
		if !ok {
			s.rdb.ZRem(ctx, keyDue, m) // not ours to run; never due again
			continue
		}
		leases = append(leases, hbrbot.Lease{Work: item, Until: until, Token: token})
	}
	return leases, nil
}

// NextDue is when the earliest item is due (or its lease ends); ok false
// when nothing is scheduled.
func (s *Store) NextDue(ctx context.Context) (time.Time, bool, error) {
	zs, err := s.rdb.ZRangeWithScores(ctx, keyDue, 0, 0).Result()
	if err != nil {
		return time.Time{}, false, fmt.Errorf("next due work: %w", err)
	}
	if len(zs) == 0 {
		return time.Time{}, false, nil
	}
	return fromMS(zs[0].Score), true, nil
}

// fencedSetScript writes KEYS[2] (when given), writes KEYS[3] if it is
// missing and aligns its expiry (when given), and reschedules or removes
// the item, only while the lease holds.
var fencedSetScript = redis.NewScript(`
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not s or tonumber(s) ~= tonumber(ARGV[2]) then return 0 end
if KEYS[2] then
  redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4])
end
if KEYS[3] then
  -- A batch's spec: written once, then kept as long as its status.
  if ARGV[6] ~= '' then
    redis.call('SET', KEYS[3], ARGV[6], 'NX', 'PX', ARGV[4])
  end
  redis.call('PEXPIRE', KEYS[3], ARGV[4])
end
if ARGV[5] == '' then
  redis.call('ZREM', KEYS[1], ARGV[1])
else
  redis.call('ZADD', KEYS[1], ARGV[5], ARGV[1])
end
return 1
`)

// SaveBatch writes b under lease l and schedules it again at next (keeping
// the lease when next is l.Until), or, next zero, ends its schedule and
// lets it expire after the retention period. ErrLeaseLost: nothing written.
func (s *Store) SaveBatch(ctx context.Context, l hbrbot.Lease, b hbrbot.Batch, next time.Time) error {
	status, spec, err := encodeBatch(b)
	if err != nil {
		return fmt.Errorf("save batch %s: %w", b.Key(), err)
	}
	ttl := 30 * 24 * time.Hour
	if next.IsZero() {
		ttl = Retention
	}
	return s.fencedSet(ctx, l, ttl, next, keyBatch(b.Key()), string(status), keyBatchSpec(b.Key()), string(spec))
}

// Renew writes b and extends lease l to until, returning the new lease:
// for a step that must not lose its lease midway (a submission).
func (s *Store) Renew(ctx context.Context, l hbrbot.Lease, b hbrbot.Batch, until time.Time) (hbrbot.Lease, error) {
	if err := s.SaveBatch(ctx, l, b, until); err != nil {
		return l, err
	}
	if until.Equal(l.Until) {
		return l, nil // kept as it was
	}
	// fencedSet scored the item msString(until): that is the new token.
	return hbrbot.Lease{Work: l.Work, Until: time.UnixMilli(until.UnixMilli()), Token: msString(until)}, nil
}

// Reschedule moves a leased item to next, or ends it when next is zero.
func (s *Store) Reschedule(ctx context.Context, l hbrbot.Lease, next time.Time) error {
	return s.fencedSet(ctx, l, 0, next)
}

// fencedSet writes kv (a batch's status key and document, then its spec
// key and document, "" for none) and moves the item to next, while l
// holds.
func (s *Store) fencedSet(ctx context.Context, l hbrbot.Lease, ttl time.Duration, next time.Time, kv ...string) error {
	score := ""
	switch {
	case next.Equal(l.Until):
		score = l.Token // keep holding
	case !next.IsZero():
		score = msString(next)
	}
	keys := []string{keyDue}
	doc, spec := "", ""
	if len(kv) >= 2 {
		keys, doc = append(keys, kv[0]), kv[1]
	}
	if len(kv) >= 4 {
		keys, spec = append(keys, kv[2]), kv[3]
	}
	got, err := fencedSetScript.Run(ctx, s.rdb, keys, member(l.Work), l.Token,
		doc, strconv.FormatInt(ttl.Milliseconds(), 10), score, spec).Int()
	if err != nil {
		return fmt.Errorf("save %s: %w", member(l.Work), err)
	}
	if got == 0 {
		return fmt.Errorf("save %s: %w", member(l.Work), hbrbot.ErrLeaseLost)
	}
	return nil
}

// Schedule makes an item due at t, or sooner if it already is. An item
// leased until later than t loses its lease: only idempotent work (card
// syncs) is scheduled this way.
func (s *Store) Schedule(ctx context.Context, w hbrbot.Work, t time.Time) error {
	err := s.rdb.ZAddArgs(ctx, keyDue, redis.ZAddArgs{LT: true, Members: []redis.Z{{Score: ms(t), Member: member(w)}}}).Err()
	if err != nil {
		return fmt.Errorf("schedule %s: %w", member(w), err)
	}
	return nil
}

// Scheduled counts the items in the schedule.
func (s *Store) Scheduled(ctx context.Context) (int64, error) {
	n, err := s.rdb.ZCard(ctx, keyDue).Result()
	if err != nil {
		return 0, fmt.Errorf("count scheduled work: %w", err)
	}
	return n, nil
}
