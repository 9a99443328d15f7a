package upgrade

import (
	"testing"
	"time"

	"github.com/hbrbot/hbrbot"
)

// pollPolicyOf is the poll policy Jobs builds from o.
func pollPolicyOf(o Options) pollPolicy {
	return newJobs(nil, nil, nil, nil, auditor{}, nil, o.withDefaults()).poll
}

func TestNextPoll(t *testing.T) {
	t0 := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	fixed := pollPolicyOf(Options{PollInterval: 10 * time.Second})
	adaptive := pollPolicyOf(Options{PollInterval: 10 * time.Second, Adaptive: true, MinPollInterval: 2 * time.Second})
	wide := pollPolicyOf(Options{PollInterval: 10 * time.Second, Adaptive: true, MinPollInterval: 2 * time.Second, MaxPollInterval: 30 * time.Second})
	for _, tc := range []struct {
		name     string
		p        pollPolicy
		progress int
		elapsed  time.Duration
		deadline time.Duration // from the start
		want     time.Duration // from now
	}{
		{"fixed ignores progress", fixed, 50, 20 * time.Second, time.Hour, 10 * time.Second},
		{"fixed stops at the deadline", fixed, 50, 20 * time.Second, 24 * time.Second, 4 * time.Second},
		{"adaptive without progress waits the longest", adaptive, 0, 20 * time.Second, time.Hour, 10 * time.Second},
		{"adaptive at the predicted end", adaptive, 80, 20 * time.Second, time.Hour, 5 * time.Second},
		{"adaptive capped at the longest below the trusted progress", adaptive, 5, 20 * time.Second, time.Hour, 10 * time.Second},
		{"adaptive past the longest from the trusted progress", adaptive, 10, 20 * time.Second, time.Hour, 180 * time.Second},
		{"adaptive past the longest, not past the deadline", adaptive, 10, 20 * time.Second, 60 * time.Second, 40 * time.Second},
		{"adaptive no sooner than the minimum", adaptive, 99, 20 * time.Second, time.Hour, 2 * time.Second},
		{"adaptive stops at the deadline", adaptive, 80, 20 * time.Second, 21 * time.Second, time.Second},
		{"failed progress waits the interval", adaptive, -1, 20 * time.Second, time.Hour, 10 * time.Second},
		{"done progress waits the interval", wide, 100, 20 * time.Second, time.Hour, 10 * time.Second},
		{"wide bounds: far from the end, the longest", wide, 9, 20 * time.Second, time.Hour, 30 * time.Second},
		{"wide bounds: within the bounds, the prediction", wide, 50, 20 * time.Second, time.Hour, 20 * time.Second},
		{"wide bounds: near the end, the prediction", wide, 80, 20 * time.Second, time.Hour, 5 * time.Second},
		{"wide bounds: no progress, the longest", wide, 0, 20 * time.Second, time.Hour, 30 * time.Second},
		{"wide bounds: past the deadline, the deadline", wide, 50, 20 * time.Second, 10 * time.Second, -10 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			now := t0.Add(tc.elapsed)
			b := hbrbot.BatchStatus{Progress: tc.progress, Polls: 1, Started: t0, Deadline: t0.Add(tc.deadline)}
			if got := tc.p.next(b, now).Sub(now); got != tc.want {
				t.Errorf("next poll in %v, want %v", got, tc.want)
			}
		})
	}
	// Past the longest only from the first look: a job not done at its
	// predicted end is not followed again.
	second := hbrbot.BatchStatus{Progress: 50, Polls: 2, Started: t0, Deadline: t0.Add(time.Hour)}
	if got := adaptive.next(second, t0.Add(20*time.Second)).Sub(t0.Add(20 * time.Second)); got != 10*time.Second {
		t.Errorf("after a second look at 50%%: next poll in %v, want the 10s longest", got)
	}
	// Before the first poll nothing is known: the regular interval.
	for name, p := range map[string]pollPolicy{"fixed": fixed, "adaptive": adaptive, "wide": wide} {
		if got := p.next(hbrbot.BatchStatus{Started: t0, Deadline: t0.Add(time.Hour)}, t0).Sub(t0); got != 10*time.Second {
			t.Errorf("%s: first poll in %v, want the 10s interval", name, got)
		}
	}
}

func TestOptionsDefaults(t *testing.T) {
	o := Options{}.withDefaults()
	if o.PollInterval != 10*time.Second || o.MinPollInterval != o.PollInterval || o.MaxPollInterval != o.PollInterval ||
		o.TaskTimeout != 20*time.Minute || o.Lease != time.Minute || o.Workers != 128 || o.SubmitTimeout != 10*time.Second ||
		o.ShutdownGrace != 7*time.Second || o.ProgressEvery != 5*time.Second || o.Logger == nil || o.Observer == nil || o.Now == nil {
		t.Errorf("defaults: %+v", o)
	}
	// A minimum above the interval is the interval.
	if o := (Options{PollInterval: time.Second, MinPollInterval: time.Minute}).withDefaults(); o.MinPollInterval != time.Second {
		t.Errorf("min poll interval %v, want the 1s interval", o.MinPollInterval)
	}
}
