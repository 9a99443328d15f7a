package upgrade

import (
	"context"
	"time"

	"github.com/hbrbot/hbrbot"
	"github.com/hbrbot/hbrbot/hbr"
)

// withPriority says which HBR calls go first when an action's budget is
// short (package hbr orders them; the HBR interface is unchanged).
func withPriority(ctx context.Context, p hbr.Priority) context.Context {
	return hbr.WithPriority(ctx, p)
}

// pollPriority ranks a poll by the job's predicted end, from the progress
// it reported at the rate it came: a job predicted to have ended (or past
// its deadline) moves, its poll can end it; one predicted to run on only
// informs. Jobs that reported no progress rank by when they were due, so
// none is starved. Under a short DescribeTask budget the jobs most likely
// to have ended are polled first, and report lag grows gracefully.
func pollPriority(b hbrbot.BatchStatus, now time.Time) hbr.Priority {
	end := predictedEnd(b, now)
	if !end.After(now) || !now.Before(b.Deadline) {
		return hbr.Priority{Class: hbr.Moves, Rank: end}
	}
	return hbr.Priority{Class: hbr.Informs, Rank: end}
}

// predictedEnd is when b's job should end at the rate its progress came
// until it was seen; without progress to go by, now (the poll is as due
// as any).
func predictedEnd(b hbrbot.BatchStatus, now time.Time) time.Time {
	if b.Progress <= 0 || b.Progress >= 100 || b.Started.IsZero() {
		return now
	}
	seen := b.ProgressAt
	if seen.IsZero() { // saved by a version that did not keep it
		seen = now
	}
	elapsed := seen.Sub(b.Started)
	return seen.Add(time.Duration(float64(elapsed) * float64(100-b.Progress) / float64(b.Progress)))
}
