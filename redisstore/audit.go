package redisstore

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/hbrbot/hbrbot"
)

// auditCap bounds the audit stream, roughly (XADD MAXLEN ~).
const auditCap = 100_000

var keyAudit = key("audit")

// AppendAudit adds a record to the capped audit stream.
func (s *Store) AppendAudit(ctx context.Context, rec hbrbot.AuditRecord) error {
	doc, err := json.Marshal(rec)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	err = s.rdb.XAdd(ctx, &redis.XAddArgs{Stream: keyAudit, MaxLen: auditCap, Approx: true,
		Values: []any{"record", doc}}).Err()
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	return nil
}

// Audit reads the records added since since, oldest first, handing each to
// fn; it pages through the stream so a long history costs little memory.
func (s *Store) Audit(ctx context.Context, since time.Time, fn func(hbrbot.AuditRecord) error) error {
	start := strconv.FormatInt(since.UnixMilli(), 10)
	for {
		msgs, err := s.rdb.XRangeN(ctx, keyAudit, start, "+", 500).Result()
		if err != nil {
			return fmt.Errorf("read audit: %w", err)
		}
		for _, m := range msgs {
			var rec hbrbot.AuditRecord
			raw, _ := m.Values["record"].(string)
			if err := json.Unmarshal([]byte(raw), &rec); err != nil {
				return fmt.Errorf("audit record %s: %w", m.ID, err)
			}
			if err := fn(rec); err != nil {
				return err
			}
		}
		if len(msgs) < 500 {
			return nil
		}
		start = "(" + msgs[len(msgs)-1].ID
	}
}
