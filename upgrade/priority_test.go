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
		seen      time.Time // when progress was seen (zero: now)
		wantClass hbr.Class
		wantRank  time.Time
	}{
		{"half way after a minute: a minute to go", 50, deadline, time.Time{}, hbr.Informs, now.Add(60 * time.Second)},
		{"nearly done", 99, deadline, time.Time{}, hbr.Informs, now.Add(time.Duration(int64(60*time.Second) / 99))},
		{"no progress: as due as any, moves", 0, deadline, time.Time{}, hbr.Moves, now},
		{"past its deadline: moves", 50, now.Add(-time.Second), time.Time{}, hbr.Moves, now.Add(60 * time.Second)},
		// The rate is the one progress came at until it was seen, not
		// stretched over the time since.
		{"half way 30 s in, seen 30 s ago: its end is now, moves", 50, deadline, started.Add(30 * time.Second), hbr.Moves, now},
		{"a quarter 20 s in: 20 s to go", 25, deadline, started.Add(20 * time.Second), hbr.Informs, now.Add(20 * time.Second)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := hbrbot.BatchStatus{Started: started, Deadline: tc.deadline, Progress: tc.progress, ProgressAt: tc.seen, Polls: 1}
			got := pollPriority(b, now)
			if got.Class != tc.wantClass || !got.Rank.Equal(tc.wantRank) {
				t.Errorf("pollPriority = %v %v, want %v %v", got.Class, got.Rank, tc.wantClass, tc.wantRank)
			}
		})
	}
}
