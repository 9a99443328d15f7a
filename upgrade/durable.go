package upgrade

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/hbrbot/hbrbot"
)

// intakeItemStore keeps commands and clicks from before their ack until
// one replica has acted on them.
type intakeItemStore interface {
	StoreItem(ctx context.Context, w hbrbot.Work, doc []byte, lease time.Duration) (hbrbot.Lease, bool, error)
	Item(ctx context.Context, w hbrbot.Work) ([]byte, error)
	Reschedule(ctx context.Context, l hbrbot.Lease, next hbrbot.Next) error
}

// Answerer tells the person who typed a command or clicked a button what
// came of it, from any replica: through the payload's response_url, kept
// with the item.
type Answerer interface {
	Answer(ctx context.Context, userID, channelID, responseURL string, n Notice)
}

// AcceptWait is the most a command or click waits for Redis to store it
// before its ack: Slack wants the ack within 3 s.
const AcceptWait = 2 * time.Second

// itemBudget is the least lease a stored item's holder takes when it
// starts on it (HBRBOT_LEASE when longer): a command's look-up, its store
// and its card fit within. A holder that dies delays the item by as much.
const itemBudget = 8 * time.Second

// Durable stores each valid command and each click as a work item before
// its ack, and runs it through Intake, on the replica that acked it or, if
// that one dies or hands it back, on any other once its lease ran out: an
// acknowledged command is never lost.
type Durable struct {
	intake *Intake
	store  intakeItemStore
	answer Answerer
	lease  time.Duration
	obs    IntakeObserver
	log    *slog.Logger
	now    func() time.Time
}

// IntakeObserver counts stored items by result.
type IntakeObserver interface {
	IntakeItem(result string)
}

type noIntakeObserver struct{}

func (noIntakeObserver) IntakeItem(string) {}

// commandItem is a stored command; clickItem a stored click.
type commandItem struct {
	Invocation Invocation         `json:"invocation"`
	Spec       hbrbot.UpgradeSpec `json:"spec"`
}

type clickItem struct {
	Click Click `json:"click"`
}

func newDurable(in *Intake, store intakeItemStore, o Options) *Durable {
	obs, ok := o.Observer.(IntakeObserver)
	if !ok {
		obs = noIntakeObserver{}
	}
	return &Durable{intake: in, store: store, lease: o.Lease, obs: obs, log: o.Logger, now: o.Now}
}

// SetAnswerer sets who tells people what came of their commands and
// clicks. Call it before the scheduler runs.
func (d *Durable) SetAnswerer(a Answerer) { d.answer = a }

// AcceptCommand stores a parsed upgrade command before its ack, leased to
// this replica. first false: a redelivered envelope, already stored. An
// error: Redis did not store it within AcceptWait; nothing was done.
func (d *Durable) AcceptCommand(ctx context.Context, inv Invocation, spec hbrbot.UpgradeSpec) (hbrbot.Lease, bool, error) {
	return d.accept(ctx, hbrbot.Work{Kind: hbrbot.WorkCommand, ID: inv.EnvelopeID}, commandItem{Invocation: inv, Spec: spec})
}

// AcceptClick stores a button click before its ack, as AcceptCommand.
func (d *Durable) AcceptClick(ctx context.Context, c Click) (hbrbot.Lease, bool, error) {
	return d.accept(ctx, hbrbot.Work{Kind: hbrbot.WorkClick, ID: c.EnvelopeID}, clickItem{Click: c})
}

func (d *Durable) accept(ctx context.Context, w hbrbot.Work, item any) (hbrbot.Lease, bool, error) {
	doc, err := json.Marshal(item)
	if err != nil {
		return hbrbot.Lease{}, false, err
	}
	ctx, cancel := context.WithTimeout(ctx, AcceptWait)
	defer cancel()
	l, first, err := d.store.StoreItem(ctx, w, doc, d.lease)
	switch {
	case err != nil:
		d.obs.IntakeItem("unavailable")
		d.log.ErrorContext(ctx, "could not store a command or click before its ack; nothing was done", "work", member(w), "err", err)
	case !first:
		d.obs.IntakeItem("duplicate")
		d.log.InfoContext(ctx, "duplicate envelope ignored", "envelope", w.ID)
	default:
		d.obs.IntakeItem("stored")
	}
	return l, first, err
}

// Requeue hands a stored item back to the schedule, due at once: its
// turn did not come in time, or the replica is stopping.
func (d *Durable) Requeue(ctx context.Context, l hbrbot.Lease) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
	defer cancel()
	if err := d.store.Reschedule(ctx, l, hbrbot.DueAt(d.now())); err != nil && !errors.Is(err, hbrbot.ErrLeaseLost) {
		d.log.WarnContext(ctx, "hand a command or click back; it is due again when its lease ends", "work", member(l.Work), "err", err)
		return
	}
	d.obs.IntakeItem("requeued")
}

// Run acts on a stored item under lease l, on whichever replica holds
// it: it first stretches the lease over the work (a lease lost meanwhile
// means another replica has it), runs the command or click through
// Intake, tells the person, and ends the item.
func (d *Durable) Run(ctx, _ context.Context, l hbrbot.Lease) error {
	sctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	l, err := d.hold(sctx, l)
	if err != nil {
		return err
	}
	// The work has the stretched lease, not the claim's.
	ctx, cancelWork := context.WithDeadline(context.WithoutCancel(ctx), l.Until.Add(-time.Second))
	defer cancelWork()
	raw, err := d.store.Item(sctx, l.Work)
	if errors.Is(err, hbrbot.ErrNotFound) {
		d.log.ErrorContext(ctx, "stored command or click missing from Redis; its ack said it would be done", "work", member(l.Work))
		d.intake.obs.StateLost(string(l.Work.Kind))
		return d.store.Reschedule(sctx, l, hbrbot.End())
	}
	if err != nil {
		return err
	}
	var n Notice
	var user, channel, url string
	switch l.Work.Kind {
	case hbrbot.WorkCommand:
		var it commandItem
		if err := json.Unmarshal(raw, &it); err != nil {
			return fmt.Errorf("decode %s: %w", member(l.Work), err)
		}
		n = d.intake.request(ctx, it.Invocation, it.Spec, ActCommand)
		user, channel, url = it.Invocation.UserID, it.Invocation.ChannelID, it.Invocation.ResponseURL
	case hbrbot.WorkClick:
		var it clickItem
		if err := json.Unmarshal(raw, &it); err != nil {
			return fmt.Errorf("decode %s: %w", member(l.Work), err)
		}
		n = d.intake.decideClick(ctx, it.Click)
		user, channel, url = it.Click.UserID, it.Click.ChannelID, it.Click.ResponseURL
	}
	if d.answer != nil {
		d.answer.Answer(ctx, user, channel, url, n)
	}
	ectx, ecancel := context.WithTimeout(context.WithoutCancel(ctx), storeTimeout)
	defer ecancel()
	return d.store.Reschedule(ectx, l, hbrbot.End())
}

// hold stretches l over the item's work.
func (d *Durable) hold(ctx context.Context, l hbrbot.Lease) (hbrbot.Lease, error) {
	until := d.now().Add(max(itemBudget, d.lease))
	next := hbrbot.HoldUntil(until)
	if err := d.store.Reschedule(ctx, l, next); err != nil {
		return l, err
	}
	return hbrbot.Lease{Work: l.Work, Until: time.UnixMilli(until.UnixMilli()), Token: fmt.Sprint(until.UnixMilli())}, nil
}

func member(w hbrbot.Work) string { return string(w.Kind) + ":" + w.ID }
