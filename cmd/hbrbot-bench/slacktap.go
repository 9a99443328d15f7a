package main

import (
	"context"
	"encoding/json"
	"math"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/hbrbot/hbrbot/slacktest"
)

// cmdState is what the bench saw of one command, filled by the driver
// (sent, click) and by the tap (card, decision, reports).
type cmdState struct {
	channel  string
	sentAt   time.Time
	slashEnv string
	cardAt   time.Time // the card shows its look-up (or that it failed)
	postedAt time.Time // the card was posted (perhaps "looking up…")
	// deferred: posted before its look-up; noLookup: the card says it
	// could not look the clients up.
	deferred, noLookup bool
	clickAt            time.Time
	clickEnv           string
	// decidedAt is the card's chat.update (approved or cancelled).
	decidedAt time.Time
	startedAt time.Time // first "started" report in the thread

	posted   chan struct{} // closed when the card is posted
	cardSeen chan struct{} // closed at the card showing its look-up
	decided  chan struct{} // closed at the card's update
}

// slackTap watches what the bot posts, as it is posted. It hooks the fake's
// WaitCalls with a match function that never matches, so it sees every new
// call once, in order, under the fake's lock, without polling. Its methods
// must not call back into the fake.
type slackTap struct {
	expectJobs int

	mu       sync.Mutex
	cmds     map[string]*cmdState // by channel; the map itself is fixed
	finalAt  map[string]time.Time // TaskId -> first final report
	finals   map[string]int       // batch key -> final reports posted
	started  map[string]int       // batch key -> started reports posted
	notDone  map[string]string    // batch key -> final report text, when not "completed"
	told     int                  // private messages (ephemeral, response_url)
	toldText string               // the first of them
	failed   map[string]int       // Slack calls answered with an error, by method

	allStarted chan struct{} // closed when every job has a started report
	allFinal   chan struct{} // closed when every job has a final report
	startedAt  time.Time     // when allStarted closed
	finalDone  time.Time     // when allFinal closed
}

var taskIDRE = regexp.MustCompile(`t-[0-9a-z]{20}`)

func newSlackTap(cmds []*cmdState, expectJobs int) *slackTap {
	t := &slackTap{
		expectJobs: expectJobs,
		cmds:       map[string]*cmdState{},
		finalAt:    map[string]time.Time{},
		finals:     map[string]int{},
		started:    map[string]int{},
		notDone:    map[string]string{},
		failed:     map[string]int{},
		allStarted: make(chan struct{}),
		allFinal:   make(chan struct{}),
	}
	for _, c := range cmds {
		t.cmds[c.channel] = c
	}
	if expectJobs == 0 {
		close(t.allStarted)
		close(t.allFinal)
	}
	return t
}

// start hooks the tap to s until ctx ends.
func (t *slackTap) start(ctx context.Context, s *slacktest.Server) {
	for method, fn := range map[string]func(slacktest.Call){
		"chat.postMessage":   t.onPost,
		"chat.update":        t.onUpdate,
		"chat.postEphemeral": t.onTold,
		"response_url":       t.onTold,
	} {
		go func() {
			_, _ = s.WaitCalls(ctx, method, math.MaxInt, func(c slacktest.Call) bool {
				if c.Error != "" {
					t.mu.Lock()
					t.failed[method]++
					t.mu.Unlock()
					return false
				}
				fn(c)
				return false
			})
		}()
	}
}

// sent records a command's envelope before the fake delivers it.
func (t *slackTap) sent(c *cmdState, at time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	c.sentAt = at
}

func (t *slackTap) setEnv(c *cmdState, slash, click string, clickAt time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if slash != "" {
		c.slashEnv = slash
	}
	if click != "" {
		c.clickEnv, c.clickAt = click, clickAt
	}
}

func (t *slackTap) onPost(c slacktest.Call) {
	channel, thread := c.Form.Get("channel"), c.Form.Get("thread_ts")
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.cmds[channel]
	if thread == "" {
		if st != nil && st.postedAt.IsZero() {
			st.postedAt = c.At
			close(st.posted)
			if strings.Contains(c.Form.Get("blocks"), lookingUp) {
				st.deferred = true
			} else {
				t.lookupShown(st, c)
			}
		}
		return
	}
	var md struct {
		EventType    string         `json:"event_type"`
		EventPayload map[string]any `json:"event_payload"`
	}
	if json.Unmarshal([]byte(c.Form.Get("metadata")), &md) != nil || md.EventType != "hbrbot_report" {
		return
	}
	batch, _ := md.EventPayload["batch"].(string)
	kind, _ := md.EventPayload["kind"].(string)
	switch kind {
	case "started":
		t.started[batch]++
		if st != nil && st.startedAt.IsZero() {
			st.startedAt = c.At
		}
		if len(t.started) == t.expectJobs && t.startedAt.IsZero() {
			t.startedAt = c.At
			close(t.allStarted)
		}
	case "final":
		t.finals[batch]++
		text := c.Form.Get("text")
		if task := taskIDRE.FindString(text); task != "" {
			if _, seen := t.finalAt[task]; !seen {
				t.finalAt[task] = c.At
			}
		}
		if !strings.Contains(text, " completed:") {
			t.notDone[batch] = text
		}
		if len(t.finals) == t.expectJobs && t.finalDone.IsZero() {
			t.finalDone = c.At
			close(t.allFinal)
		}
	}
}

func (t *slackTap) onUpdate(c slacktest.Call) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.cmds[c.Form.Get("channel")]
	if st == nil || !st.decidedAt.IsZero() {
		return
	}
	text := c.Form.Get("text") + c.Form.Get("blocks")
	if !strings.Contains(text, lookingUp) {
		t.lookupShown(st, c) // a deferred look-up landed
	}
	if strings.Contains(text, "Approved by") || strings.Contains(text, "Cancelled by") {
		st.decidedAt = c.At
		close(st.decided)
	}
}

// lookingUp is what a card says while its look-up is deferred.
const lookingUp = "Looking the clients up"

// lookupShown records the first version of st's card that shows its
// look-up. Caller holds t.mu.
func (t *slackTap) lookupShown(st *cmdState, c slacktest.Call) {
	if !st.cardAt.IsZero() {
		return
	}
	st.cardAt = c.At
	st.noLookup = strings.Contains(c.Form.Get("text")+c.Form.Get("blocks"), "Could not look the clients up")
	close(st.cardSeen)
}

func (t *slackTap) onTold(c slacktest.Call) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.told++
	if t.toldText == "" {
		t.toldText = c.Form.Get("text")
		if s, ok := c.JSON["text"].(string); ok {
			t.toldText = s
		}
	}
}

// counts is a consistent copy of the tap's tallies.
type tapCounts struct {
	finalAt           map[string]time.Time
	finals, started   map[string]int
	notDone           map[string]string
	told              int
	toldText          string
	failed            map[string]int
	startedAll, final time.Time
}

func (t *slackTap) counts() tapCounts {
	t.mu.Lock()
	defer t.mu.Unlock()
	c := tapCounts{finalAt: map[string]time.Time{}, finals: map[string]int{}, started: map[string]int{},
		notDone: map[string]string{}, failed: map[string]int{}, told: t.told, toldText: t.toldText,
		startedAll: t.startedAt, final: t.finalDone}
	for k, v := range t.finalAt {
		c.finalAt[k] = v
	}
	for k, v := range t.finals {
		c.finals[k] = v
	}
	for k, v := range t.started {
		c.started[k] = v
	}
	for k, v := range t.notDone {
		c.notDone[k] = v
	}
	for k, v := range t.failed {
		c.failed[k] = v
	}
	return c
}

// finalCount is the number of jobs with a final report.
func (t *slackTap) finalCount() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.finals)
}

// cmdCopy is a consistent copy of a command's state.
func (t *slackTap) cmdCopy(c *cmdState) cmdState {
	t.mu.Lock()
	defer t.mu.Unlock()
	return cmdState{channel: c.channel, sentAt: c.sentAt, slashEnv: c.slashEnv, cardAt: c.cardAt,
		postedAt: c.postedAt, deferred: c.deferred, noLookup: c.noLookup,
		clickAt: c.clickAt, clickEnv: c.clickEnv, decidedAt: c.decidedAt, startedAt: c.startedAt}
}
