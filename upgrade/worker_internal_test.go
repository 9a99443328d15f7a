package upgrade

import (
	"testing"
	"time"

	"github.com/hbrbot/hbrbot"
)

func TestNextPoll(t *testing.T) {
	t0 := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	fixed := New(nil, nil, nil, Policy{}, Options{PollInterval: 10 * time.Second})
	adaptive := New(nil, nil, nil, Policy{}, Options{PollInterval: 10 * time.Second, Adaptive: true, MinPollInterval: 2 * time.Second})
	wide := New(nil, nil, nil, Policy{}, Options{PollInterval: 10 * time.Second, Adaptive: true, MinPollInterval: 2 * time.Second, MaxPollInterval: 30 * time.Second})
	for _, tc := range []struct {
		name     string
		s        *Service
		progress int
		elapsed  time.Duration
		deadline time.Duration
		want     time.Duration // from now
	}{
		{"fixed ignores progress", fixed, 50, 20 * time.Second, time.Hour, 10 * time.Second},
		{"fixed stops at the deadline", fixed, 50, 20 * time.Second, 24 * time.Second, 4 * time.Second},
		{"adaptive without progress waits the longest", adaptive, 0, 20 * time.Second, time.Hour, 10 * time.Second},
		{"adaptive at the predicted end", adaptive, 80, 20 * time.Second, time.Hour, 5 * time.Second},
		{"adaptive capped at the interval", adaptive, 10, 20 * time.Second, time.Hour, 10 * time.Second},
		{"adaptive no sooner than the minimum", adaptive, 99, 20 * time.Second, time.Hour, 2 * time.Second},
		{"adaptive stops at the deadline", adaptive, 80, 20 * time.Second, 21 * time.Second, time.Second},
		{"failed progress waits the interval", adaptive, -1, 20 * time.Second, time.Hour, 10 * time.Second},
		{"wide bounds: far from the end, a long wait", wide, 10, 20 * time.Second, time.Hour, 30 * time.Second},
		{"wide bounds: near the end, the prediction", wide, 80, 20 * time.Second, time.Hour, 5 * time.Second},
		{"wide bounds: no progress, the longest", wide, 0, 20 * time.Second, time.Hour, 30 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := t0.Add(tc.elapsed)
			b := hbrbot.Batch{Progress: tc.progress, Polls: 1, Started: t0, Deadline: t0.Add(tc.deadline)}
			if got := tc.s.nextPoll(b, now).Sub(now); got != tc.want {
				t.Errorf("next poll in %v, want %v", got, tc.want)
			}
		})
	}
	// Before the first poll nothing is known: the regular interval.
	if got := wide.nextPoll(hbrbot.Batch{Started: t0, Deadline: t0.Add(time.Hour)}, t0).Sub(t0); got != 10*time.Second {
		t.Errorf("first poll in %v, want the 10s interval", got)
	}
}
