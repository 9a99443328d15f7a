package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/hbrbot/hbrbot"
)

// SetPreflight records a pre-flight look-up that landed after the card was
// posted: change gets the request as stored and edits its document (the
// look-up, and while it is pending the targets it leaves out). The edit is
// retried when the request changes in between.
func (s *Store) SetPreflight(ctx context.Context, id string, change func(*hbrbot.Request)) error {
	key := keyRequest(id)
	for range 10 {
		err := s.rdb.Watch(ctx, func(tx *redis.Tx) error {
			vals, err := tx.HGetAll(ctx, key).Result()
			if err != nil {
				return err
			}
			r, err := decodeRequest(id, vals)
			if err != nil {
				return err
			}
			change(&r)
			doc, err := json.Marshal(r)
			if err != nil {
				return err
			}
			_, err = tx.TxPipelined(ctx, func(p redis.Pipeliner) error {
				p.HSet(ctx, key, "doc", doc)
				return nil
			})
			return err
		}, key)
		if errors.Is(err, redis.TxFailedErr) {
			continue
		}
		if err != nil {
			return fmt.Errorf("set preflight of request %s: %w", id, err)
		}
		return nil
	}
	return fmt.Errorf("set preflight of request %s: changed too often", id)
}
