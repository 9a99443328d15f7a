package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/hbrbot/hbrbot"
)

// keyInflight is a hash, batch key → what is needed to report a batch
// whose own keys are gone: its thread and its IDs. It has no expiry, so
// a volatile-* eviction policy never takes it; an entry is removed when
// its batch's work ends.
var keyInflight = key("inflight")

func inflightDoc(b hbrbot.Batch) (string, error) {
	doc, err := json.Marshal(hbrbot.BatchIndex{RequestID: b.RequestID, ChannelID: b.ChannelID, ThreadTS: b.ThreadTS,
		Index: b.Index, Of: b.Of, Targets: b.Targets})
	return string(doc), err
}

// Inflight reads the index entry of a batch; ok false when there is none.
func (s *Store) Inflight(ctx context.Context, batchKey string) (hbrbot.BatchIndex, bool, error) {
	raw, err := s.rdb.HGet(ctx, keyInflight, batchKey).Bytes()
	if errors.Is(err, redis.Nil) {
		return hbrbot.BatchIndex{}, false, nil
	}
	if err != nil {
		return hbrbot.BatchIndex{}, false, fmt.Errorf("read in-flight index of %s: %w", batchKey, err)
	}
	var ib hbrbot.BatchIndex
	if err := json.Unmarshal(raw, &ib); err != nil {
		return hbrbot.BatchIndex{}, false, fmt.Errorf("decode in-flight index of %s: %w", batchKey, err)
	}
	return ib, true, nil
}

// ForgetInflight removes a batch's index entry: its work ended.
func (s *Store) ForgetInflight(ctx context.Context, batchKey string) error {
	if err := s.rdb.HDel(ctx, keyInflight, batchKey).Err(); err != nil {
		return fmt.Errorf("forget in-flight %s: %w", batchKey, err)
	}
	return nil
}
