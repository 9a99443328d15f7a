package upgrade

import (
	"testing"
	"time"

	"github.com/hbrbot/hbrbot"
	"github.com/hbrbot/hbrbot/hbr"
)

// TestPollPriority: a poll of a job predicted to have ended (or past its
// deadline) moves; one predicted to run on informs, ranked by its
// predicted end; a job without progress ranks as due now.
func TestPollPriority(t *testing.T) {
	now := time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)
	started := now.Add(-60 * time.Second)
	deadline := now.Add(20 * time.Minute)
	tests := []struct {
		name      string
		progress  int
		deadline  time.Time
		wantClass hbr.Class
		wantRank  time.Time
	}{
		{"half way after a minute: a minute to go", 50, deadline, hbr.Informs, now.Add(60 * time.Second)},
		{"nearly done", 99, deadline, hbr.Informs, now.Add(time.Duration(int64(60*time.Second) / 99))},
		{"no progress: as due as any, moves", 0, deadline, hbr.Moves, now},
		{"past its deadline: moves", 50, now.Add(-time.Second), hbr.Moves, now.Add(60 * time.Second)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := hbrbot.BatchStatus{Started: started, Deadline: tc.deadline, Progress: tc.progress, Polls: 1}
			got := pollPriority(b, now)
			if got.Class != tc.wantClass || !got.Rank.Equal(tc.wantRank) {
				t.Errorf("pollPriority = %v %v, want %v %v", got.Class, got.Rank, tc.wantClass, tc.wantRank)
			}
		})
	}
}
