package bot

import (
	"context"
	"slices"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"

	"github.com/hbrbot/hbrbot"
	"github.com/hbrbot/hbrbot/upgrade"
)

// DurableIntake stores commands and clicks before their ack and runs
// them under a lease (upgrade.Durable).
type DurableIntake interface {
	AcceptCommand(ctx context.Context, inv upgrade.Invocation, spec hbrbot.UpgradeSpec) (hbrbot.Lease, bool, error)
	AcceptClick(ctx context.Context, c upgrade.Click) (hbrbot.Lease, bool, error)
	Run(ctx, stop context.Context, l hbrbot.Lease) error
	Requeue(ctx context.Context, l hbrbot.Lease)
}

// Stored acknowledges a valid upgrade command once it is stored: from
// then on some replica finishes it, whichever dies.
const Stored = ":hourglass_flowing_sand: Recorded. Looking the clients up; the approval card follows in this channel."

// NotStored is the ack of a command Redis did not store in time.
const NotStored = ":x: Nothing was done: hbrbot could not record this command (its store, Redis, did not answer within 2 s). Try again in a minute."

// notStoredClick is told to whoever clicked when Redis did not store the
// click in time.
const notStoredClick = ":x: Nothing was done: hbrbot could not record your click (its store, Redis, did not answer within 2 s). Click again in a minute."

// UseDurableIntake makes the bot store each valid command and each click
// before its ack (and say in the ack when that failed), and run them
// under a lease, handed back to the schedule rather than dropped.
func (b *Bot) UseDurableIntake(d DurableIntake) { b.durable = d }

// Answer tells one person a notice: upgrade.Answerer, for work that any
// replica may finish.
func (b *Bot) Answer(ctx context.Context, userID, channelID, responseURL string, n upgrade.Notice) {
	b.tell(ctx, Recipient{UserID: userID, ChannelID: channelID, ResponseURL: responseURL}, n)
}

// acceptCommand acks a valid upgrade command once it is stored, or says
// in the ack that nothing was done.
func (b *Bot) acceptCommand(ctx context.Context, req *socketmode.Request, inv upgrade.Invocation, spec hbrbot.UpgradeSpec, to Recipient) {
	if b.durable == nil {
		b.ack(ctx, req, ephemeral(Accepted))
		b.spawn(ctx, func(ctx context.Context) { b.tell(ctx, to, b.flow.Request(ctx, inv, spec)) })
		return
	}
	l, first, err := b.durable.AcceptCommand(ctx, inv, spec)
	switch {
	case err != nil:
		b.ack(ctx, req, ephemeral(NotStored))
	case !first:
		b.ack(ctx, req, nil) // the first delivery was acked, and is in hand
	default:
		b.ack(ctx, req, ephemeral(Stored))
		b.spawnItem(ctx, l)
	}
}

// acceptClick acks a click once it is stored; when it could not be, the
// clicker is told nothing was done.
func (b *Bot) acceptClick(ctx context.Context, req *socketmode.Request, click upgrade.Click, to Recipient) {
	l, first, err := b.durable.AcceptClick(ctx, click)
	b.ack(ctx, req, nil)
	switch {
	case err != nil:
		b.spawn(ctx, func(ctx context.Context) {
			if err := b.teller.Tell(ctx, to, notStoredClick); err != nil {
				b.log.ErrorContext(ctx, "tell user", "user", to.UserID, "err", err)
			}
		})
	case first:
		b.spawnItem(ctx, l)
	}
}

// spawnItem runs a stored item behind its ack, like spawn; one that waits
// too long for its turn, or is still waiting when the bot stops, goes back
// to the schedule for any replica.
func (b *Bot) spawnItem(ctx context.Context, l hbrbot.Lease) {
	b.inflight.Add(1)
	go func() {
		defer b.inflight.Done()
		if !b.takeTurn(ctx) {
			b.log.WarnContext(ctx, "the stored command or click goes back to the schedule instead", "work", l.Work.Kind, "id", l.Work.ID)
			b.durable.Requeue(ctx, l)
			return
		}
		defer func() { <-b.handlers }()
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), handlerTimeout)
		defer cancel()
		if err := b.durable.Run(wctx, ctx, l); err != nil {
			// The lease runs out and any replica claims it again then.
			b.log.WarnContext(ctx, "stored command or click failed; it is retried after its lease", "work", l.Work.Kind, "id", l.Work.ID, "err", err)
		}
	}()
}

// interactive hands a click on: stored before its ack when the intake is
// durable, else acked at once.
func (b *Bot) interactive(ctx context.Context, req *socketmode.Request, cb slack.InteractionCallback) {
	if b.durable == nil {
		b.ack(ctx, req, nil)
		b.interaction(ctx, req, cb)
		return
	}
	if cb.Type != slack.InteractionTypeBlockActions || !slices.ContainsFunc(cb.ActionCallback.BlockActions, func(a *slack.BlockAction) bool {
		return a.ActionID == ActionApprove || a.ActionID == ActionCancel || a.ActionID == ActionRetry
	}) {
		b.ack(ctx, req, nil) // nothing to store
		return
	}
	b.inflight.Go(func() { b.interaction(ctx, req, cb) })
}
