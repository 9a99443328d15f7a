package redisstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/hbrbot/hbrbot"
)

func keyItem(w hbrbot.Work) string { return key("item", string(w.Kind), w.ID) }

// itemTTL keeps a stored command or click, and so its envelope's
// dedupe, as long as Slack could redeliver it and well beyond.
const itemTTL = 24 * time.Hour

// storeItemScript stores a command or click (KEYS[1], only if new: its key
// names the envelope, so a redelivery finds it) and schedules it, leased
// to the caller until ARGV[3] (the score is the lease's token), in one
// round trip. It returns 0 for a redelivered envelope, else 1.
var storeItemScript = redis.NewScript(`
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
return 1
`)

// StoreItem stores work item w (a command or a click, named by its
// envelope ID) with its document, leased to the caller for lease. first
// false: the envelope was stored before (a redelivery); nothing changed.
func (s *Store) StoreItem(ctx context.Context, w hbrbot.Work, doc []byte, lease time.Duration) (hbrbot.Lease, bool, error) {
	until := s.now().Add(lease)
	token := msString(until)
	got, err := storeItemScript.Run(ctx, s.rdb, []string{keyItem(w), keyDue}, doc, itemTTL.Milliseconds(), token, member(w)).Int()
	if err != nil {
		return hbrbot.Lease{}, false, fmt.Errorf("store %s: %w", member(w), err)
	}
	return hbrbot.Lease{Work: w, Until: time.UnixMilli(until.UnixMilli()), Token: token}, got == 1, nil
}

// Item reads a stored command's or click's document.
func (s *Store) Item(ctx context.Context, w hbrbot.Work) ([]byte, error) {
	raw, err := s.rdb.Get(ctx, keyItem(w)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("item %s: %w", member(w), hbrbot.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read item %s: %w", member(w), err)
	}
	return raw, nil
}
