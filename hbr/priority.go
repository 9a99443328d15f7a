package hbr

import (
	"context"
	"errors"
	"time"
)

// Class says what a call is for, and so which goes first when an action's
// budget is short.
type Class int

const (
	// Informs: a call whose answer only informs (a pre-flight look-up, a
	// poll of a job not predicted to have ended).
	Informs Class = iota
	// Moves: a call that moves a job (a submission, the poll that can end
	// a job, the verification a final report waits for). The default.
	Moves
)

func (c Class) String() string {
	if c == Informs {
		return "informs"
	}
	return "moves"
}

// Priority orders the calls waiting for one action's budget: Moves before
// Informs (Informs keeps a reserved share, so neither starves), and within
// a class the earlier Rank first (zero: the time the call began to wait).
type Priority struct {
	Class Class
	// Rank orders calls within a class, earliest first. A poll ranks by
	// the job's predicted end: the job most likely to have ended goes
	// first.
	Rank time.Time
}

// ErrNoBudget is the error of a call that could not get its action's
// budget before its context ended: it was never sent, so it may be made
// again (a submission included).
var ErrNoBudget = errors.New("no rate-limit budget in time")

type priorityKey struct{}

// WithPriority returns ctx carrying the priority of the HBR calls made
// with it. Calls without one are Moves, in the order they came.
func WithPriority(ctx context.Context, p Priority) context.Context {
	return context.WithValue(ctx, priorityKey{}, p)
}

// PriorityOf is the priority ctx carries (Moves, unranked, if none).
func PriorityOf(ctx context.Context) Priority {
	if p, ok := ctx.Value(priorityKey{}).(Priority); ok {
		return p
	}
	return Priority{Class: Moves}
}
