package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"

	"github.com/hbrbot/hbrbot"
)

func keyAnswer(batchKey string) string { return key("answer", batchKey) }

// answerDoc is HBR's answer to a batch's UpgradeBackupClients call, as
// kept in its own small key.
type answerDoc struct {
	TaskID    string                 `json:"task_id"`
	RequestID string                 `json:"request_id,omitempty"`
	Invalid   []hbrbot.InvalidTarget `json:"invalid,omitempty"`
}

// SaveAnswer keeps HBR's answer to a batch's submission in its own small
// key, written before the batch itself (one SET, no lease needed: it is a
// fact, not a claim), so a replica that takes the batch over while it is
// still marked submitting adopts the job instead of calling its outcome
// unknown.
func (s *Store) SaveAnswer(ctx context.Context, batchKey string, sub hbrbot.Submission) error {
	doc, err := json.Marshal(answerDoc{TaskID: sub.TaskID, RequestID: sub.RequestID, Invalid: sub.Invalid})
	if err != nil {
		return fmt.Errorf("save answer of %s: %w", batchKey, err)
	}
	if err := s.rdb.Set(ctx, keyAnswer(batchKey), doc, batchTTL).Err(); err != nil {
		return fmt.Errorf("save answer of %s: %w", batchKey, err)
	}
	return nil
}

// Answer reads what SaveAnswer kept; ok false when there is none.
func (s *Store) Answer(ctx context.Context, batchKey string) (hbrbot.Submission, bool, error) {
	raw, err := s.rdb.Get(ctx, keyAnswer(batchKey)).Bytes()
	if errors.Is(err, redis.Nil) {
		return hbrbot.Submission{}, false, nil
	}
	if err != nil {
		return hbrbot.Submission{}, false, fmt.Errorf("read answer of %s: %w", batchKey, err)
	}
	var d answerDoc
	if err := json.Unmarshal(raw, &d); err != nil {
		return hbrbot.Submission{}, false, fmt.Errorf("decode answer of %s: %w", batchKey, err)
	}
	return hbrbot.Submission{TaskID: d.TaskID, RequestID: d.RequestID, Invalid: d.Invalid}, true, nil
}
