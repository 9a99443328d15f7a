package slacktest_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"

	"github.com/hbrbot/hbrbot/slacktest"
)

// newServer starts a fake that is closed after every client of the test
// has stopped (t.Cleanup runs last-in first-out).
func newServer(t *testing.T, opts ...slacktest.Option) *slacktest.Server {
	t.Helper()
	srv := slacktest.NewServer(opts...)
	t.Cleanup(srv.Close)
	return srv
}

func waitCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newAPI(srv *slacktest.Server, appToken string) *slack.Client {
	return slack.New("xoxb-test", slack.OptionAppLevelToken(appToken), slack.OptionAPIURL(srv.APIURL()))
}

// client is a real slack-go Socket Mode client running against the fake.
type client struct {
	sm   *socketmode.Client
	done chan error
}

func startClient(t *testing.T, srv *slacktest.Server, opts ...socketmode.Option) *client {
	t.Helper()
	opts = append([]socketmode.Option{
		socketmode.OptionPingInterval(5 * time.Second),
		socketmode.OptionLog(log.New(io.Discard, "", 0)),
	}, opts...)
	c := &client{sm: socketmode.New(newAPI(srv, "xapp-test"), opts...), done: make(chan error, 1)}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { c.done <- c.sm.RunContext(ctx) }()
	t.Cleanup(func() { cancel(); <-c.done })
	return c
}

// next returns the next event of type typ, skipping others; an
// error_bad_message fails the test, since it means slack-go could not decode
// what the fake sent.
func (c *client) next(ctx context.Context, t *testing.T, typ socketmode.EventType) socketmode.Event {
	t.Helper()
	for {
		select {
		case evt := <-c.sm.Events:
			if evt.Type == socketmode.EventTypeErrorBadMessage {
				bad := evt.Data.(*socketmode.ErrorBadMessage)
				t.Fatalf("slack-go could not decode a frame: %v\n%s", bad.Cause, bad.Message)
			}
			if evt.Type == typ {
				return evt
			}
		case <-ctx.Done():
			t.Fatalf("no %s event: %v", typ, ctx.Err())
		}
	}
}

func TestHelloSlashCommandAndAck(t *testing.T) {
	srv := newServer(t)
	c := startClient(t, srv)
	ctx := waitCtx(t)

	c.next(ctx, t, socketmode.EventTypeConnected)
	hello := c.next(ctx, t, socketmode.EventTypeHello)
	if hello.Request.NumConnections != 1 || hello.Request.ConnectionInfo.AppID != slacktest.AppID {
		t.Errorf("hello = %+v", hello.Request)
	}
	open, err := srv.WaitCall(ctx, "apps.connections.open", nil)
	if err != nil || open.Token != "xapp-test" || open.Error != "" {
		t.Fatalf("apps.connections.open = %+v, %v", open, err)
	}

	id := srv.SendSlashCommand(slacktest.SlashCommand{ChannelID: "C1", UserID: "U1", Text: "cluster-a 7.2"})
	evt := c.next(ctx, t, socketmode.EventTypeSlashCommand)
	cmd := evt.Data.(slack.SlashCommand)
	if evt.Request.EnvelopeID != id || !evt.Request.AcceptsResponsePayload || evt.Request.RetryAttempt != 0 {
		t.Errorf("request = %+v", evt.Request)
	}
	if cmd.Command != "/hbr-upgrade" || cmd.ChannelID != "C1" || cmd.UserID != "U1" || cmd.Text != "cluster-a 7.2" ||
		cmd.TeamID != "T0TEST" || cmd.APIAppID != slacktest.AppID || cmd.TriggerID == "" ||
		!strings.HasPrefix(cmd.ResponseURL, srv.URL()+"/response/") {
		t.Errorf("slash command = %+v", cmd)
	}

	if err := c.sm.Ack(*evt.Request, map[string]string{"response_type": "ephemeral", "text": "got it"}); err != nil {
		t.Fatal(err)
	}
	ack, err := srv.WaitAck(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if string(ack.Payload) != `{"response_type":"ephemeral","text":"got it"}` || ack.Connection != 1 || ack.Latency <= 0 {
		t.Errorf("ack = %+v (payload %s)", ack, ack.Payload)
	}
	// The ack payload is what the user sees.
	if m := srv.Messages("C1"); len(m) != 1 || m[0].Text != "got it" || !m[0].Ephemeral || m[0].EphemeralUser != "U1" {
		t.Errorf("ack response messages = %+v", m)
	}
	if n := srv.Deliveries(id); n != 1 {
		t.Errorf("deliveries = %d, want 1", n)
	}
}

func TestBlockActionDecodesAsInteractionCallback(t *testing.T) {
	srv := newServer(t)
	api := newAPI(srv, "xapp-test")
	c := startClient(t, srv)
	ctx := waitCtx(t)

	button := func(id, value, label string) *slack.ButtonBlockElement {
		return slack.NewButtonBlockElement(id, value, slack.NewTextBlockObject("plain_text", label, false, false))
	}
	blocks := []slack.Block{
		slack.NewSectionBlock(slack.NewTextBlockObject("mrkdwn", "*Upgrade* cluster-a to 7.2? <@U1>", false, false), nil, nil),
		slack.NewActionBlock("hbr_confirm", button("hbr_approve", "req-42", "Approve").WithStyle(slack.StylePrimary),
			button("hbr_cancel", "req-42", "Cancel").WithStyle(slack.StyleDanger)),
		slack.NewActionBlock("", button("no_block_id", "v", "Other")), // Slack assigns a block_id
	}
	_, ts, err := api.PostMessageContext(ctx, "C1", slack.MsgOptionText("Upgrade?", false), slack.MsgOptionBlocks(blocks...))
	if err != nil {
		t.Fatal(err)
	}
	_, replyTS, err := api.PostMessageContext(ctx, "C1", slack.MsgOptionTS(ts), slack.MsgOptionBlocks(blocks[1]))
	if err != nil {
		t.Fatal(err)
	}
	if m, _ := srv.Message("C1", ts); !strings.Contains(string(m.Blocks), "<@U1>") {
		t.Errorf("stored blocks lost mrkdwn: %s", m.Blocks)
	}

	tests := []struct {
		name                  string
		action                slacktest.BlockAction
		wantBlock, wantValue  string
		wantMsgTS, wantThread string
	}{
		{"approve", slacktest.BlockAction{MessageTS: ts, ActionID: "hbr_approve"}, "hbr_confirm", "req-42", ts, ""},
		{"value override", slacktest.BlockAction{MessageTS: ts, ActionID: "hbr_cancel", Value: "req-43"}, "hbr_confirm", "req-43", ts, ""},
		{"assigned block_id", slacktest.BlockAction{MessageTS: ts, ActionID: "no_block_id"}, "", "v", ts, ""},
		{"in thread", slacktest.BlockAction{MessageTS: replyTS, ActionID: "hbr_approve"}, "hbr_confirm", "req-42", replyTS, ts},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.action.ChannelID, tt.action.UserID = "C1", "U0BOB"
			id := srv.SendBlockAction(tt.action)
			evt := c.next(ctx, t, socketmode.EventTypeInteractive)
			cb := evt.Data.(slack.InteractionCallback)
			if evt.Request.EnvelopeID != id || cb.Type != slack.InteractionTypeBlockActions {
				t.Fatalf("envelope %s type %s", evt.Request.EnvelopeID, cb.Type)
			}
			if len(cb.ActionCallback.BlockActions) != 1 {
				t.Fatalf("block actions = %+v", cb.ActionCallback)
			}
			act := cb.ActionCallback.BlockActions[0]
			if act.ActionID != tt.action.ActionID || act.Value != tt.wantValue || act.BlockID == "" ||
				(tt.wantBlock != "" && act.BlockID != tt.wantBlock) || act.ActionTs == "" {
				t.Errorf("action = %+v", act)
			}
			if cb.User.ID != "U0BOB" || cb.Channel.ID != "C1" || cb.Message.Timestamp != tt.wantMsgTS ||
				cb.Container.MessageTs != tt.wantMsgTS || cb.Container.ThreadTs != tt.wantThread ||
				cb.Container.ChannelID != "C1" || cb.ResponseURL == "" || cb.TriggerID == "" ||
				len(cb.Message.Blocks.BlockSet) == 0 || cb.BlockActionState == nil {
				t.Errorf("callback = %+v", cb)
			}
			if err := c.sm.Ack(*evt.Request); err != nil {
				t.Fatal(err)
			}
			if ack, err := srv.WaitAck(ctx, id); err != nil || ack.Payload != nil {
				t.Errorf("ack = %+v, %v", ack, err)
			}
		})
	}
}

func TestRedeliveryWhenNotAcked(t *testing.T) {
	srv := newServer(t, slacktest.WithAckTimeout(200*time.Millisecond))
	c := startClient(t, srv)
	ctx := waitCtx(t)

	id := srv.SendSlashCommand(slacktest.SlashCommand{ChannelID: "C1", UserID: "U1"})
	first := c.next(ctx, t, socketmode.EventTypeSlashCommand)
	second := c.next(ctx, t, socketmode.EventTypeSlashCommand)
	if first.Request.EnvelopeID != id || second.Request.EnvelopeID != id ||
		second.Request.RetryAttempt != 1 || second.Request.RetryReason != "timeout" {
		t.Fatalf("deliveries: %+v then %+v", first.Request, second.Request)
	}
	if err := c.sm.Ack(*second.Request); err != nil {
		t.Fatal(err)
	}
	ack, err := srv.WaitAck(ctx, id)
	if err != nil || ack.RetryAttempt < 1 || ack.Latency < 200*time.Millisecond {
		t.Fatalf("ack = %+v, %v", ack, err)
	}

	// An envelope nobody acks is retried three times, then dropped.
	lost := srv.SendSlashCommand(slacktest.SlashCommand{ChannelID: "C1", UserID: "U1"})
	if err := srv.WaitDeliveries(ctx, lost, 4); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	if err := srv.WaitDeliveries(short, lost, 5); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("fifth delivery: %v", err)
	}
}

// Redeliver simulates an ack lost on the way: the same envelope_id again.
func TestRedeliverAfterAck(t *testing.T) {
	srv := newServer(t)
	c := startClient(t, srv)
	ctx := waitCtx(t)
	id := srv.SendSlashCommand(slacktest.SlashCommand{ChannelID: "C1", UserID: "U1"})
	evt := c.next(ctx, t, socketmode.EventTypeSlashCommand)
	if err := c.sm.Ack(*evt.Request); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.WaitAck(ctx, id); err != nil {
		t.Fatal(err)
	}
	srv.Redeliver(id)
	again := c.next(ctx, t, socketmode.EventTypeSlashCommand)
	if again.Request.EnvelopeID != id || again.Request.RetryAttempt != 1 || srv.Deliveries(id) != 2 {
		t.Fatalf("redelivery = %+v, deliveries %d", again.Request, srv.Deliveries(id))
	}
	if err := c.sm.Ack(*again.Request); err != nil {
		t.Fatal(err)
	}
	acks, err := srv.WaitAcks(ctx, id, 2)
	if err != nil || len(acks) != 2 || acks[0].RetryAttempt != 0 || acks[1].RetryAttempt != 1 {
		t.Fatalf("acks = %+v, %v; want the first delivery's, then the redelivery's", acks, err)
	}
}

func TestReconnects(t *testing.T) {
	tests := []struct {
		name    string
		breakIt func(*slacktest.Server)
	}{
		{"disconnect message", func(s *slacktest.Server) { s.Disconnect("refresh_requested") }},
		{"dropped socket", (*slacktest.Server).DropConnections},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t)
			c := startClient(t, srv)
			ctx := waitCtx(t)
			if err := srv.WaitConnections(ctx, 1); err != nil {
				t.Fatal(err)
			}
			c.next(ctx, t, socketmode.EventTypeHello)
			tt.breakIt(srv)
			// Sent while the client is away: queued or routed to the new socket.
			id := srv.SendSlashCommand(slacktest.SlashCommand{ChannelID: "C1", UserID: "U1"})
			if _, err := srv.WaitCalls(ctx, "apps.connections.open", 2, nil); err != nil {
				t.Fatal(err)
			}
			if err := srv.WaitConnections(ctx, 1); err != nil {
				t.Fatal(err)
			}
			evt := c.next(ctx, t, socketmode.EventTypeSlashCommand)
			if err := c.sm.Ack(*evt.Request); err != nil {
				t.Fatal(err)
			}
			if ack, err := srv.WaitAck(ctx, id); err != nil || ack.Connection != 2 {
				t.Fatalf("ack = %+v, %v", ack, err)
			}
		})
	}
}

func TestQueuedUntilConnected(t *testing.T) {
	srv := newServer(t)
	id := srv.SendSlashCommand(slacktest.SlashCommand{ChannelID: "C1", UserID: "U1", Text: "early"})
	c := startClient(t, srv)
	ctx := waitCtx(t)
	evt := c.next(ctx, t, socketmode.EventTypeSlashCommand)
	if evt.Request.EnvelopeID != id || evt.Data.(slack.SlashCommand).Text != "early" {
		t.Fatalf("got %+v", evt.Request)
	}
}

// Two replicas share one app: each envelope goes to exactly one of them.
func TestRoundRobinAcrossReplicas(t *testing.T) {
	srv := newServer(t)
	ctx := waitCtx(t)
	ackers, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stop()
	for range 2 {
		c := startClient(t, srv)
		wg.Go(func() { // auto-ack like a bot would
			for {
				select {
				case evt := <-c.sm.Events:
					if evt.Type == socketmode.EventTypeSlashCommand {
						_ = c.sm.Ack(*evt.Request)
					}
				case <-ackers.Done():
					return
				}
			}
		})
	}
	if err := srv.WaitConnections(ctx, 2); err != nil {
		t.Fatal(err)
	}
	perConn := map[int]int{}
	for range 4 {
		id := srv.SendSlashCommand(slacktest.SlashCommand{ChannelID: "C1", UserID: "U1"})
		ack, err := srv.WaitAck(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		perConn[ack.Connection]++
	}
	if perConn[1] != 2 || perConn[2] != 2 {
		t.Errorf("acks per connection = %v, want 2 and 2", perConn)
	}
	if len(srv.Acks()) != 4 {
		t.Errorf("acks = %d", len(srv.Acks()))
	}
}

// Without server PINGs slack-go reconnects every OptionPingInterval; with
// them the first connection must survive several intervals.
func TestPingsKeepConnectionAlive(t *testing.T) {
	srv := newServer(t, slacktest.WithPingInterval(50*time.Millisecond))
	startClient(t, srv, socketmode.OptionPingInterval(time.Second))
	ctx := waitCtx(t)
	if err := srv.WaitConnections(ctx, 1); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 2500*time.Millisecond)
	defer cancel()
	if _, err := srv.WaitCalls(short, "apps.connections.open", 2, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("client reconnected: %v", err)
	}
}

func TestNoPingsMeansReconnects(t *testing.T) {
	srv := newServer(t, slacktest.WithPingInterval(0))
	startClient(t, srv, socketmode.OptionPingInterval(100*time.Millisecond))
	if _, err := srv.WaitCalls(waitCtx(t), "apps.connections.open", 3, nil); err != nil {
		t.Fatal(err)
	}
}

func TestConnectionsOpenFailures(t *testing.T) {
	tests := []struct {
		name     string
		appToken string
		setup    func(*slacktest.Server)
		want     string
		fatal    bool
	}{
		{"wrong app token", "xapp-wrong", nil, "invalid_auth", true},
		{"missing app token", "", nil, "not_authed", true},
		{"bot token as app token", "xoxb-test", nil, "not_allowed_token_type", false},
		{"forced error", "xapp-test", func(s *slacktest.Server) { s.SetConnectionsOpenError("invalid_auth") }, "invalid_auth", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t)
			if tt.setup != nil {
				tt.setup(srv)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			sm := socketmode.New(newAPI(srv, tt.appToken), socketmode.OptionLog(log.New(io.Discard, "", 0)))
			done := make(chan error, 1)
			go func() { done <- sm.RunContext(ctx) }()
			go func() { // RunContext blocks on a full Events channel
				for {
					select {
					case <-sm.Events:
					case <-ctx.Done():
						return
					}
				}
			}()
			if _, err := srv.WaitCall(ctx, "apps.connections.open", func(c slacktest.Call) bool { return c.Error == tt.want }); err != nil {
				t.Fatal(err)
			}
			if !tt.fatal {
				cancel() // slack-go retries this one with backoff
			}
			if err := <-done; tt.fatal && (err == nil || err.Error() != tt.want) {
				t.Fatalf("RunContext = %v, want %s", err, tt.want)
			}
		})
	}
}

func TestConnectionsOpenRateLimited(t *testing.T) {
	srv := newServer(t)
	srv.RateLimit("apps.connections.open", 1, 10*time.Millisecond)
	c := startClient(t, srv)
	ctx := waitCtx(t)
	c.next(ctx, t, socketmode.EventTypeHello)
	calls := srv.Calls("apps.connections.open")
	if len(calls) != 2 || calls[0].Status != 429 || calls[1].Status != 200 {
		t.Fatalf("calls = %+v", calls)
	}
	// Retry-After is whole seconds, at least 1, and slack-go honours it.
	if gap := calls[1].At.Sub(calls[0].At); gap < time.Second {
		t.Errorf("reconnected after %v, want >= 1s", gap)
	}
}

func TestSendRawMalformedFrameKeepsConnection(t *testing.T) {
	srv := newServer(t)
	c := startClient(t, srv)
	ctx := waitCtx(t)
	c.next(ctx, t, socketmode.EventTypeHello)
	srv.SendRaw([]byte(`{"type":"events_api","envelope_id":"x","payload":`))
	id := srv.SendEnvelope("slash_commands", json.RawMessage(`{"command":"/hbr-upgrade","text":"raw"}`), true)
	evt := c.next(ctx, t, socketmode.EventTypeSlashCommand)
	if evt.Request.EnvelopeID != id || len(srv.Calls("apps.connections.open")) != 1 {
		t.Fatalf("got %+v", evt.Request)
	}
}
