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
	"sync/atomic"
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
	// durability is the Durability in force, set by Configure.
	durability atomic.Value
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

func keyRequest(id string) string  { return key("req", id) }
func keyBatch(k string) string     { return key("batch", k) }
func keyBatchSpec(k string) string { return key("bspec", k) }
func keyEnvelope(id string) string { return key("env", id) }
func keyChannel(ch string) string  { return key("chan", ch) }
func ms(t time.Time) float64       { return float64(t.UnixMilli()) }
func msString(t time.Time) string  { return strconv.FormatInt(t.UnixMilli(), 10) }
func fromMS(v float64) time.Time   { return time.UnixMilli(int64(v)) }
func itemExpiry(id string) string  { return member(hbrbot.Work{Kind: hbrbot.WorkExpiry, ID: id}) }

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
		p.ZAdd(ctx, keyUserPending(r.RequesterID), redis.Z{Score: ms(r.ExpiresAt), Member: r.ID})
		p.Expire(ctx, keyUserPending(r.RequesterID), pendingTTL(r))
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

// changeScript writes a request change (see ChangeRequest) if the request
// still stands as the change expects. It holds no rule of its own: what
// changes is worked out in Go (package upgrade); this only makes the
// check, the request's fields, the schedule and the new batches one step.
// KEYS: the request, the schedule, the in-flight index, then the batches'
// keys in the order of the change's values. ARGV[1]: the change, as JSON (requestChange).
var changeScript = redis.NewScript(`
local c = cjson.decode(ARGV[1])
local cur = redis.call('HMGET', KEYS[1], 'state', 'approvals')
if not cur[1] then return 'missing' end
if cur[1] ~= c.expect_state or (cur[2] or '') ~= c.expect_approvals then return 'conflict' end
redis.call('HSET', KEYS[1], unpack(c.fields))
for _, m in ipairs(c.unschedule) do redis.call('ZREM', KEYS[2], m) end
for _, d in ipairs(c.schedule) do redis.call('ZADD', KEYS[2], d.at, d.member) end
for i, v in ipairs(c.values) do redis.call('SET', KEYS[3 + i], v, 'NX', 'PX', c.ttl_ms) end
for _, f in ipairs(c.inflight) do redis.call('HSETNX', KEYS[3], f[1], f[2]) end
return 'ok'
`)

// requestChange is changeScript's argument.
type requestChange struct {
	ExpectState     string        `json:"expect_state"`
	ExpectApprovals string        `json:"expect_approvals"`
	Fields          []string      `json:"fields"` // field, value, ...
	Unschedule      []string      `json:"unschedule"`
	Schedule        []scheduleArg `json:"schedule"`
	Values          []string      `json:"values"`   // of the keys after the index
	Inflight        [][2]string   `json:"inflight"` // batch key, index entry
	TTLMS           int64         `json:"ttl_ms"`
}

type scheduleArg struct {
	At     int64  `json:"at"`
	Member string `json:"member"`
}

// batchTTL keeps a batch while it runs; an ended one is kept Retention.
const batchTTL = 30 * 24 * time.Hour

// ChangeRequest stores ch if request id still stands as ch.Expect says:
// its new state and approvals, its decision, its new batches (each written
// only if it does not exist) and the work ch schedules and ends, in one
// step. ErrConflict: the request moved on, nothing was written; ErrNotFound:
// no such request.
func (s *Store) ChangeRequest(ctx context.Context, id string, ch hbrbot.RequestChange) error {
	arg := requestChange{
		ExpectState: string(ch.Expect.State), ExpectApprovals: strings.Join(ch.Expect.Approvals, ","),
		Fields:     []string{"state", string(ch.State), "approvals", strings.Join(ch.Approvals, ",")},
		Unschedule: []string{}, Schedule: []scheduleArg{}, Values: []string{}, Inflight: [][2]string{},
		TTLMS: batchTTL.Milliseconds(),
	}
	if ch.DecidedBy != "" || !ch.DecidedAt.IsZero() {
		arg.Fields = append(arg.Fields, "decided_by", ch.DecidedBy, "decided_at", msString(ch.DecidedAt))
	}
	if ch.CardTS != "" {
		arg.Fields = append(arg.Fields, "card_ts", ch.CardTS)
	}
	for _, w := range ch.Unschedule {
		arg.Unschedule = append(arg.Unschedule, member(w))
	}
	for _, d := range ch.Schedule {
		arg.Schedule = append(arg.Schedule, scheduleArg{At: d.At.UnixMilli(), Member: member(d.Work)})
	}
	keys := []string{keyRequest(id), keyDue, keyInflight}
	for _, b := range ch.Batches {
		status, spec, err := encodeBatch(b)
		if err != nil {
			return fmt.Errorf("change request %s: %w", id, err)
		}
		idx, err := inflightDoc(b)
		if err != nil {
			return fmt.Errorf("change request %s: %w", id, err)
		}
		arg.Inflight = append(arg.Inflight, [2]string{b.Key(), idx})
		keys = append(keys, keyBatch(b.Key()), keyBatchSpec(b.Key()))
		arg.Values = append(arg.Values, string(status), string(spec))
	}
	doc, err := json.Marshal(arg)
	if err != nil {
		return fmt.Errorf("change request %s: %w", id, err)
	}
	got, err := changeScript.Run(ctx, s.rdb, keys, doc).Text()
	if err != nil {
		return fmt.Errorf("change request %s: %w", id, err)
	}
	switch got {
	case "missing":
		return fmt.Errorf("change request %s: %w", id, hbrbot.ErrNotFound)
	case "conflict":
		return fmt.Errorf("change request %s: %w", id, hbrbot.ErrConflict)
	}
	return nil
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
func encodeBatch(b hbrbot.Batch) (status, spec []byte, err error) {
	if status, err = json.Marshal(b.BatchStatus); err != nil {
		return nil, nil, err
	}
	if spec, err = json.Marshal(b.BatchSpec); err != nil {
		return nil, nil, err
	}
	return status, spec, nil
}

// BatchStatus reads a batch's status.
func (s *Store) BatchStatus(ctx context.Context, key string) (hbrbot.BatchStatus, error) {
	var st hbrbot.BatchStatus
	if err := s.getJSON(ctx, keyBatch(key), &st); err != nil {
		return st, fmt.Errorf("batch %s: %w", key, err)
	}
	return st, nil
}

// BatchSpec reads what a batch names. A batch stored whole, before the
// status and the spec were kept apart, has its spec in its status.
func (s *Store) BatchSpec(ctx context.Context, key string) (hbrbot.BatchSpec, error) {
	var sp hbrbot.BatchSpec
	err := s.getJSON(ctx, keyBatchSpec(key), &sp)
	if errors.Is(err, hbrbot.ErrNotFound) {
		err = s.getJSON(ctx, keyBatch(key), &sp)
		if err == nil && sp.Targets.Len() == 0 {
			err = hbrbot.ErrNotFound
		}
	}
	if err != nil {
		return sp, fmt.Errorf("batch spec %s: %w", key, err)
	}
	return sp, nil
}

func (s *Store) getJSON(ctx context.Context, key string, v any) error {
	raw, err := s.rdb.Get(ctx, key).Bytes()
	if errors.Is(err, redis.Nil) {
		return hbrbot.ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("read: %w", err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("decode: %w", err)
	}
	return nil
}

// BatchStatuses reads the statuses of request id's batches, without the
// request: its first batch says how many there are. None when the request
// was never approved.
func (s *Store) BatchStatuses(ctx context.Context, id string) ([]hbrbot.BatchStatus, error) {
	batches, err := s.requestBatches(ctx, id, false)
	statuses := make([]hbrbot.BatchStatus, len(batches))
	for i, b := range batches {
		statuses[i] = b.BatchStatus
	}
	return statuses, err
}

// Batches reads request id's batches, statuses and specs, in two round
// trips. A batch whose spec is missing is damage, reported as an error.
func (s *Store) Batches(ctx context.Context, id string) ([]hbrbot.Batch, error) {
	return s.requestBatches(ctx, id, true)
}

func (s *Store) requestBatches(ctx context.Context, id string, withSpecs bool) ([]hbrbot.Batch, error) {
	first, err := s.BatchStatus(ctx, hbrbot.BatchKey(id, 0))
	if errors.Is(err, hbrbot.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var keys []string
	for i := 1; i < first.Of; i++ {
		keys = append(keys, keyBatch(hbrbot.BatchKey(id, i)))
	}
	if withSpecs {
		for i := range first.Of {
			keys = append(keys, keyBatchSpec(hbrbot.BatchKey(id, i)))
		}
	}
	var vals []any
	if len(keys) > 0 {
		if vals, err = s.rdb.MGet(ctx, keys...).Result(); err != nil {
			return nil, fmt.Errorf("read batches of %s: %w", id, err)
		}
	}
	out := []hbrbot.Batch{{BatchStatus: first}}
	for i := 1; i < first.Of; i++ {
		raw, ok := vals[i-1].(string)
		if !ok {
			continue // expired
		}
		var b hbrbot.Batch
		if err := json.Unmarshal([]byte(raw), &b.BatchStatus); err != nil {
			return nil, fmt.Errorf("decode batch %s: %w", hbrbot.BatchKey(id, i), err)
		}
		out = append(out, b)
	}
	if !withSpecs {
		return out, nil
	}
	specs := vals[first.Of-1:]
	for i := range out {
		raw, ok := specs[out[i].Index].(string)
		if !ok {
			sp, err := s.BatchSpec(ctx, out[i].Key()) // stored whole by an older version?
			if err != nil {
				return nil, fmt.Errorf("batch %s has a status but no spec", out[i].Key())
			}
			out[i].BatchSpec = sp
			continue
		}
		if err := json.Unmarshal([]byte(raw), &out[i].BatchSpec); err != nil {
			return nil, fmt.Errorf("decode batch spec %s: %w", out[i].Key(), err)
		}
	}
	return out, nil
}

func member(w hbrbot.Work) string { return string(w.Kind) + ":" + w.ID }

func parseMember(m string) (hbrbot.Work, bool) {
	for _, k := range []hbrbot.WorkKind{hbrbot.WorkBatch, hbrbot.WorkExpiry, hbrbot.WorkCardSync, hbrbot.WorkProgress, hbrbot.WorkCommand, hbrbot.WorkClick, hbrbot.WorkLookup} {
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

// fencedSetScript writes KEYS[2] (when given; -1 when it is gone: a
// batch is created whole by the approval, never by a save, so a missing
// key is lost state, not something to write anew) and aligns KEYS[3]'s expiry
// with it (when given), and reschedules or removes the item, only while
// the lease holds.
var fencedSetScript = redis.NewScript(`
local s = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not s or tonumber(s) ~= tonumber(ARGV[2]) then return 0 end
if KEYS[2] then
  if redis.call('EXISTS', KEYS[2]) == 0 then return -1 end
  redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[4])
end
if KEYS[3] then
  redis.call('PEXPIRE', KEYS[3], ARGV[4])
end
if ARGV[5] == '' then
  redis.call('ZREM', KEYS[1], ARGV[1])
else
  redis.call('ZADD', KEYS[1], ARGV[5], ARGV[1])
end
return 1
`)

// SaveBatch writes b's status under lease l, and does with the item what
// next says. It returns the lease as it stands after: a new one for
// HoldUntil. An ended batch is kept for the retention period.
// ErrLeaseLost: nothing written.
func (s *Store) SaveBatch(ctx context.Context, l hbrbot.Lease, b hbrbot.BatchStatus, next hbrbot.Next) (hbrbot.Lease, error) {
	return s.saveBatchOn(ctx, s.rdb, l, b, next)
}

func (s *Store) saveBatchOn(ctx context.Context, on redis.Scripter, l hbrbot.Lease, b hbrbot.BatchStatus, next hbrbot.Next) (hbrbot.Lease, error) {
	status, err := json.Marshal(b)
	if err != nil {
		return l, fmt.Errorf("save batch %s: %w", b.Key(), err)
	}
	ttl := batchTTL
	if next.Kind == hbrbot.NextEnd {
		ttl = Retention
	}
	after, err := s.fencedSetOn(ctx, on, l, next, ttl, keyBatch(b.Key()), string(status), keyBatchSpec(b.Key()))
	if err == nil && next.Kind == hbrbot.NextEnd {
		// Best effort: a stale entry is read only if the batch goes missing.
		_ = s.ForgetInflight(ctx, b.Key())
	}
	return after, err
}

// Reschedule does with a leased item what next says.
func (s *Store) Reschedule(ctx context.Context, l hbrbot.Lease, next hbrbot.Next) error {
	_, err := s.fencedSet(ctx, l, next, 0)
	return err
}

// fencedSet writes a batch's status (key and document, then its spec's
// key, when given) and moves the item as next says, while l holds.
func (s *Store) fencedSet(ctx context.Context, l hbrbot.Lease, next hbrbot.Next, ttl time.Duration, keys ...string) (hbrbot.Lease, error) {
	return s.fencedSetOn(ctx, s.rdb, l, next, ttl, keys...)
}

// fencedSetOn is fencedSet on one connection (or the pool).
func (s *Store) fencedSetOn(ctx context.Context, on redis.Scripter, l hbrbot.Lease, next hbrbot.Next, ttl time.Duration, keys ...string) (hbrbot.Lease, error) {
	score, after := "", l
	switch next.Kind {
	case hbrbot.NextHold:
		score = l.Token
	case hbrbot.NextHoldUntil:
		// The new score is the new lease's token.
		score = msString(next.At)
		after = hbrbot.Lease{Work: l.Work, Until: time.UnixMilli(next.At.UnixMilli()), Token: score}
	case hbrbot.NextDue:
		score = msString(next.At)
	case hbrbot.NextEnd:
	default:
		return l, fmt.Errorf("save %s: no next step (%d)", member(l.Work), next.Kind)
	}
	rk, doc := []string{keyDue}, ""
	if len(keys) == 3 {
		rk, doc = append(rk, keys[0], keys[2]), keys[1]
	}
	got, err := fencedSetScript.Run(ctx, on, rk, member(l.Work), l.Token,
		doc, strconv.FormatInt(ttl.Milliseconds(), 10), score).Int()
	if err != nil {
		return l, fmt.Errorf("save %s: %w", member(l.Work), err)
	}
	if got == 0 {
		return l, fmt.Errorf("save %s: %w", member(l.Work), hbrbot.ErrLeaseLost)
	}
	if got == -1 {
		return l, fmt.Errorf("save %s: the batch is gone: %w", member(l.Work), hbrbot.ErrNotFound)
	}
	return after, nil
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
