// Package bot connects hbrbot to Slack: it receives slash commands and
// button clicks over Socket Mode, acknowledges each envelope at once, hands
// the work to the upgrade workflow, and renders what the workflow says as
// Block Kit messages.
package bot

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"

	"github.com/hbrbot/hbrbot"
	"github.com/hbrbot/hbrbot/policy"
	"github.com/hbrbot/hbrbot/upgrade"
)

// Command is the slash command the bot answers.
const Command = "/hbr-upgrade"

// Workflow is what the bot hands commands and clicks to. Each answers
// with what the person who acted is told.
type Workflow interface {
	Parse(inv upgrade.Invocation) (hbrbot.Command, error)
	Refused(ctx context.Context, inv upgrade.Invocation, reason error)
	Request(ctx context.Context, inv upgrade.Invocation, spec hbrbot.UpgradeSpec) upgrade.Notice
	Status(ctx context.Context, inv upgrade.Invocation) upgrade.Notice
	Click(ctx context.Context, c upgrade.Click) upgrade.Notice
}

// Teller tells one person something privately, and links to messages.
type Teller interface {
	Tell(ctx context.Context, to Recipient, text string) error
	linker
}

// Observer is told of commands (by outcome: accepted, refused, help,
// status) and of the connection's state.
type Observer interface {
	Command(outcome string)
	SocketConnected(up bool)
}

type noObserver struct{}

func (noObserver) Command(string)       {}
func (noObserver) SocketConnected(bool) {}

// Bot is one Socket Mode connection and the work it hands on.
type Bot struct {
	sm        *socketmode.Client
	flow      Workflow
	teller    Teller
	trust     *Trust
	log       *slog.Logger
	obs       Observer
	connected atomic.Bool
	inflight  sync.WaitGroup
	// handlers bounds the work running behind acks, so that a flood of
	// envelopes cannot start unbounded goroutines (each holding a Redis
	// connection, an HBR look-up and its memory). Work beyond the bound
	// waits blocked, which costs the scheduler nothing.
	handlers chan struct{}
	// durable, when set, stores commands and clicks before their ack.
	durable DurableIntake
}

// maxHandlers is how much work behind acks runs at once. The work is
// mostly waiting on Redis, HBR and Slack (a command's look-up may take its
// whole 3s, and a burst's look-ups all queue on the HBR rate limit), so a
// low bound only makes the burst's cards and clicks wait their turn: 32
// put the card of a 200-command burst at 5s p50 and its clicks' decisions
// at 4.9s. The bound is for bursts far beyond that.
const maxHandlers = 512

// handlerTimeout bounds the work behind one envelope; it also bounds how
// long a shutdown waits for that work.
const handlerTimeout = 7 * time.Second

// New builds a bot on api, which must carry the app-level token; obs may
// be nil.
func New(api *slack.Client, flow Workflow, teller Teller, trust *Trust, log *slog.Logger, obs Observer) *Bot {
	if obs == nil {
		obs = noObserver{}
	}
	return &Bot{sm: socketmode.New(api), flow: flow, teller: teller, trust: trust, log: log, obs: obs,
		handlers: make(chan struct{}, maxHandlers)}
}

// tell words n and says it to one person; nothing when there is nothing
// to say.
func (b *Bot) tell(ctx context.Context, to Recipient, n upgrade.Notice) {
	// The person must hear back even when ctx is spent.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	text := NoticeText(ctx, n, b.teller)
	if text == "" {
		return
	}
	if err := b.teller.Tell(ctx, to, text); err != nil {
		b.log.ErrorContext(ctx, "tell user", "user", to.UserID, "err", err)
	}
}

func (b *Bot) setConnected(up bool) {
	b.connected.Store(up)
	b.obs.SocketConnected(up)
}

// Connected reports whether the Socket Mode connection is up.
func (b *Bot) Connected() bool { return b.connected.Load() }

// Run learns the bot's home organisation (auth.test, tried again until
// Slack answers; a refused token is an error), then reads envelopes until
// ctx ends or Slack refuses the app token, then waits for the work it
// handed out.
func (b *Bot) Run(ctx context.Context) error {
	if err := b.identify(ctx); err != nil || ctx.Err() != nil {
		return err
	}
	defer b.inflight.Wait()
	runErr := make(chan error, 1)
	go func() { runErr <- b.sm.RunContext(ctx) }()
	for {
		select {
		case err := <-runErr:
			b.setConnected(false)
			if ctx.Err() != nil {
				return nil
			}
			return err
		case evt := <-b.sm.Events:
			b.handle(ctx, evt)
		}
	}
}

// identify asks Slack who the bot is, until it answers.
func (b *Bot) identify(ctx context.Context) error {
	wait := 500 * time.Millisecond
	for {
		home, err := b.trust.Identify(ctx)
		switch {
		case err == nil:
			b.log.InfoContext(ctx, "slack identity", "team", home.TeamID, "enterprise", home.EnterpriseID, "bot", home.BotID)
			return nil
		case errors.As(err, new(*TokenRefusedError)):
			return err
		case ctx.Err() != nil:
			return nil
		}
		b.log.WarnContext(ctx, "slack auth.test failed; trying again", "err", err, "wait", wait)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
		wait = min(2*wait, 30*time.Second)
	}
}

func (b *Bot) handle(ctx context.Context, evt socketmode.Event) {
	switch evt.Type {
	case socketmode.EventTypeConnecting, socketmode.EventTypeConnectionError, socketmode.EventTypeInvalidAuth:
		b.setConnected(false)
		if evt.Type != socketmode.EventTypeConnecting {
			b.log.WarnContext(ctx, "slack connection problem", "event", evt.Type, "detail", evt.Data)
		}
	case socketmode.EventTypeHello:
		b.setConnected(true)
		b.log.InfoContext(ctx, "slack connected")
	case socketmode.EventTypeSlashCommand:
		cmd, ok := evt.Data.(slack.SlashCommand)
		if !ok || evt.Request == nil {
			return
		}
		// Parsed and acked off the read loop: a command of 500 IDs takes a
		// fraction of a millisecond to parse, and the envelopes behind it
		// should not wait for that.
		b.inflight.Go(func() { b.slashCommand(ctx, evt.Request, cmd) })
	case socketmode.EventTypeInteractive:
		cb, ok := evt.Data.(slack.InteractionCallback)
		if !ok || evt.Request == nil {
			return
		}
		b.interactive(ctx, evt.Request, cb)
	case socketmode.EventTypeEventsAPI:
		if evt.Request != nil {
			b.ack(ctx, evt.Request, nil) // not subscribed to any; never leave one unacked
		}
	case socketmode.EventTypeErrorBadMessage, socketmode.EventTypeIncomingError, socketmode.EventTypeErrorWriteFailed:
		b.log.WarnContext(ctx, "slack socket error", "event", evt.Type, "detail", evt.Data)
	}
}

func (b *Bot) ack(ctx context.Context, req *socketmode.Request, payload any) {
	var err error
	if payload == nil {
		err = b.sm.Ack(*req)
	} else {
		err = b.sm.Ack(*req, payload)
	}
	if err != nil {
		b.log.ErrorContext(ctx, "ack envelope", "envelope", req.EnvelopeID, "err", err)
	}
}

func ephemeral(text string) map[string]any {
	return map[string]any{"response_type": "ephemeral", "text": text}
}

// spawn runs work after the ack, at most maxHandlers at a time. The work
// gets handlerTimeout from when its turn comes, on a context that outlives
// a shutdown signal long enough to finish. Work still waiting for its turn
// after turnWait, or when the bot stops, is dropped with an error in the
// log: the user's ack note says to run the command again when no card
// comes within a minute.
func (b *Bot) spawn(ctx context.Context, work func(context.Context)) {
	b.inflight.Add(1)
	go func() {
		defer b.inflight.Done()
		if !b.takeTurn(ctx) {
			return
		}
		defer func() { <-b.handlers }()
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), handlerTimeout)
		defer cancel()
		work(wctx)
	}()
}

// turnWait bounds how long acked work waits for its turn.
const turnWait = 45 * time.Second

// takeTurn waits for a free handler slot; false: the work is dropped.
func (b *Bot) takeTurn(ctx context.Context) bool {
	select {
	case b.handlers <- struct{}{}: // a free slot wins over a stop signal
		return true
	default:
	}
	turn := time.NewTimer(turnWait)
	defer turn.Stop()
	select {
	case b.handlers <- struct{}{}:
		return true
	case <-turn.C:
		b.log.ErrorContext(ctx, "work behind an ack waited too long for its turn; dropped", "waited", turnWait)
	case <-ctx.Done():
		b.log.ErrorContext(ctx, "stopping: work behind an ack dropped before its turn")
	}
	return false
}

func (b *Bot) slashCommand(ctx context.Context, req *socketmode.Request, cmd slack.SlashCommand) {
	inv := upgrade.Invocation{EnvelopeID: req.EnvelopeID, TeamID: cmd.TeamID, ChannelID: cmd.ChannelID,
		UserID: cmd.UserID, Text: cmd.Text, ResponseURL: cmd.ResponseURL}
	to := Recipient{UserID: cmd.UserID, ChannelID: cmd.ChannelID, ResponseURL: cmd.ResponseURL}
	if cmd.Command != Command {
		b.ack(ctx, req, ephemeral("hbrbot only answers "+Command+"."))
		return
	}
	// Before anything else: only the home organisation acts.
	tctx, cancel := context.WithTimeout(ctx, trustTimeout)
	facts, refusal := b.trust.Check(tctx, Actor{UserID: cmd.UserID, ChannelID: cmd.ChannelID})
	cancel()
	if refusal != nil {
		b.refuseCommand(ctx, req, inv, refusal)
		return
	}
	inv.Guest, inv.SharedChannel = facts.Guest, facts.SharedChannel
	parsed, err := b.flow.Parse(inv)
	if err != nil {
		b.refuseCommand(ctx, req, inv, err)
		return
	}
	switch parsed.Kind {
	case hbrbot.CommandHelp:
		b.obs.Command("help")
		b.ack(ctx, req, ephemeral(UsageText()))
	case hbrbot.CommandStatus:
		b.obs.Command("status")
		b.ack(ctx, req, nil)
		b.spawn(ctx, func(ctx context.Context) { b.tell(ctx, to, b.flow.Status(ctx, inv)) })
	case hbrbot.CommandUpgrade:
		b.obs.Command("accepted")
		// Stored, then said, so a command is never met with silence nor lost,
		// even if this replica dies before the card is up.
		b.acceptCommand(ctx, req, inv, parsed.Upgrade, to)
	}
}

// trustTimeout bounds the look-ups that tell who acts, before the ack.
const trustTimeout = 1500 * time.Millisecond

// refuseCommand acks a refused command with why, privately, and records it.
func (b *Bot) refuseCommand(ctx context.Context, req *socketmode.Request, inv upgrade.Invocation, err error) {
	b.log.InfoContext(ctx, "command refused", "user", inv.UserID, "channel", inv.ChannelID, "err", err)
	b.obs.Command("refused")
	b.ack(ctx, req, ephemeral(":x: "+CommandRefusalText(err)+"\nType `"+Command+" help` for usage."))
	b.spawn(ctx, func(ctx context.Context) { b.flow.Refused(ctx, inv, err) })
}

func (b *Bot) interaction(ctx context.Context, req *socketmode.Request, cb slack.InteractionCallback) {
	if cb.Type != slack.InteractionTypeBlockActions {
		return
	}
	for _, a := range cb.ActionCallback.BlockActions {
		click := upgrade.Click{EnvelopeID: req.EnvelopeID, ChannelID: cb.Channel.ID, MessageTS: cb.Container.MessageTs,
			ThreadTS: cb.Container.ThreadTs, UserID: cb.User.ID, ResponseURL: cb.ResponseURL}
		switch a.ActionID {
		case ActionApprove:
			click.Action, click.RequestID = upgrade.ActApprove, a.Value
		case ActionCancel:
			click.Action, click.RequestID = upgrade.ActCancel, a.Value
		case ActionRetry:
			click.Action, click.BatchKey = upgrade.ActRetry, a.Value
		default:
			continue
		}
		if click.ChannelID == "" {
			click.ChannelID = cb.Container.ChannelID
		}
		to := Recipient{UserID: click.UserID, ChannelID: click.ChannelID, ResponseURL: click.ResponseURL}
		if b.durable != nil {
			// Checked before it is stored: only the home organisation acts.
			facts, refusal := b.check(ctx, click, cb.Message.BotID)
			if refusal != nil {
				b.ack(ctx, req, nil)
				b.spawn(ctx, func(ctx context.Context) { b.tell(ctx, to, refusal.notice(click)) })
				return
			}
			click.Guest, click.SharedChannel = facts.Guest, facts.SharedChannel
			b.acceptClick(ctx, req, click, to)
			return
		}
		from := cb.Message.BotID
		b.spawn(ctx, func(ctx context.Context) { b.tell(ctx, to, b.click(ctx, click, from)) })
		return // one decision per envelope
	}
}

// click checks who clicked, then hands the click on.
func (b *Bot) click(ctx context.Context, c upgrade.Click, from string) upgrade.Notice {
	facts, refusal := b.check(ctx, c, from)
	if refusal != nil {
		return refusal.notice(c)
	}
	c.Guest, c.SharedChannel = facts.Guest, facts.SharedChannel
	return b.flow.Click(ctx, c)
}

// clickRefusal is a click refused for who made it.
type clickRefusal struct{ *policy.Refusal }

func (r clickRefusal) notice(c upgrade.Click) upgrade.Notice {
	return upgrade.Notice{Kind: upgrade.NoticeRefused, Act: c.Action, Refusal: r.Refusal}
}

// check asks Trust about the clicker, within trustTimeout. from is the
// bot ID of the message clicked: a button counts only on the bot's own
// message (the card or report it names, which intake checks).
func (b *Bot) check(ctx context.Context, c upgrade.Click, from string) (Facts, *clickRefusal) {
	if home, ok := b.trust.Home(); ok && from != home.BotID {
		b.log.InfoContext(ctx, "click refused: not on the bot's own message", "user", c.UserID, "channel", c.ChannelID)
		return Facts{}, &clickRefusal{&policy.Refusal{Rule: policy.RuleCard}}
	}
	tctx, cancel := context.WithTimeout(ctx, trustTimeout)
	defer cancel()
	facts, refusal := b.trust.Check(tctx, Actor{UserID: c.UserID, ChannelID: c.ChannelID})
	if refusal != nil {
		b.log.InfoContext(ctx, "click refused", "user", c.UserID, "channel", c.ChannelID, "err", refusal)
		return facts, &clickRefusal{refusal}
	}
	return facts, nil
}
