package slacktest_test

import (
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"

	"github.com/hbrbot/hbrbot/slacktest"
)

// TestOnAck: the hook runs once per ack, in the read loop, after the ack
// is recorded and before the socket's next frame is read; it tells the
// acks apart (envelope, type, socket); a removed hook runs no more.
func TestOnAck(t *testing.T) {
	srv := newServer(t)
	c := startClient(t, srv)
	ctx := waitCtx(t)
	c.next(ctx, t, socketmode.EventTypeHello)

	type seen struct {
		ack      slacktest.Ack
		recorded int    // acks recorded when the hook ran
		shown    string // the channel's last message then
	}
	got := make(chan seen, 10)
	remove := srv.OnAck(func(a slacktest.Ack) {
		msgs := srv.Messages("C1") // the hook may call the server
		last := ""
		if len(msgs) > 0 {
			last = msgs[len(msgs)-1].Text
		}
		got <- seen{ack: a, recorded: len(srv.Acks()), shown: last}
	})
	// Two envelopes acked back to back on one socket: the second ack is
	// read only once the hook has returned for the first.
	cmd := srv.SendSlashCommand(slacktest.SlashCommand{ChannelID: "C1", UserID: "U1"})
	evCmd := c.next(ctx, t, socketmode.EventTypeSlashCommand)
	ts := srv.PostAs("U0BOT", "C1", "", "card", nil)
	click := srv.SendBlockAction(slacktest.BlockAction{ChannelID: "C1", MessageTS: ts, UserID: "U1", ActionID: "approve"})
	evClick := c.next(ctx, t, socketmode.EventTypeInteractive)
	if err := c.sm.Ack(*evCmd.Request, map[string]string{"text": "recorded"}); err != nil {
		t.Fatal(err)
	}
	if err := c.sm.Ack(*evClick.Request); err != nil {
		t.Fatal(err)
	}
	for i, want := range []struct {
		id, typ string
		shown   string
	}{{cmd, "slash_commands", "recorded"}, {click, "interactive", "recorded"}} {
		var s seen
		select {
		case s = <-got:
		case <-ctx.Done():
			t.Fatalf("hook not run for ack %d", i+1)
		}
		if s.ack.EnvelopeID != want.id || s.ack.Type != want.typ || s.ack.Connection != 1 {
			t.Errorf("ack %d = %+v, want envelope %s of type %s on socket 1", i+1, s.ack, want.id, want.typ)
		}
		if s.recorded != i+1 {
			t.Errorf("hook of ack %d saw %d acks recorded, want %d", i+1, s.recorded, i+1)
		}
		if s.shown != want.shown {
			t.Errorf("hook of ack %d: the channel showed %q, want the slash command's response %q", i+1, s.shown, want.shown)
		}
	}
	if string(srv.Acks()[0].Payload) != `{"text":"recorded"}` {
		t.Errorf("ack payload %s", srv.Acks()[0].Payload)
	}

	// Removed, it runs no more; hooks run in registration order, so once
	// the later one has run the removed one would have.
	after := make(chan slacktest.Ack, 1)
	srv.OnAck(func(a slacktest.Ack) { after <- a })
	remove()
	id := srv.SendSlashCommand(slacktest.SlashCommand{ChannelID: "C1", UserID: "U1"})
	ev := c.next(ctx, t, socketmode.EventTypeSlashCommand)
	if err := c.sm.Ack(*ev.Request); err != nil {
		t.Fatal(err)
	}
	select {
	case a := <-after:
		if a.EnvelopeID != id || a.Type != "slash_commands" {
			t.Errorf("ack = %+v", a)
		}
	case <-ctx.Done():
		t.Fatal("remaining hook not run")
	}
	select {
	case s := <-got:
		t.Errorf("removed hook ran for %+v", s.ack)
	default:
	}
}

// TestConnectionIDs: the sockets' IDs, in connection order, are the ones
// their acks carry.
func TestConnectionIDs(t *testing.T) {
	srv := newServer(t)
	ctx := waitCtx(t)
	clients := []*client{startClient(t, srv)}
	if err := srv.WaitConnections(ctx, 1); err != nil {
		t.Fatal(err)
	}
	clients = append(clients, startClient(t, srv))
	if err := srv.WaitConnections(ctx, 2); err != nil {
		t.Fatal(err)
	}
	ids := srv.ConnectionIDs()
	if !slices.Equal(ids, []int{1, 2}) {
		t.Fatalf("ConnectionIDs = %v, want [1 2]", ids)
	}
	acked := make(chan slacktest.Ack, 2)
	srv.OnAck(func(a slacktest.Ack) { acked <- a })
	// Round-robin: one envelope each.
	srv.SendSlashCommand(slacktest.SlashCommand{ChannelID: "C1", UserID: "U1"})
	srv.SendSlashCommand(slacktest.SlashCommand{ChannelID: "C1", UserID: "U1"})
	for _, c := range clients {
		ev := c.next(ctx, t, socketmode.EventTypeSlashCommand)
		if err := c.sm.Ack(*ev.Request); err != nil {
			t.Fatal(err)
		}
	}
	conns := map[int]bool{}
	for range 2 {
		select {
		case a := <-acked:
			conns[a.Connection] = true
		case <-ctx.Done():
			t.Fatal("acks not read")
		}
	}
	if got := slices.Sorted(maps.Keys(conns)); !slices.Equal(got, ids) {
		t.Errorf("acks came on sockets %v, want %v", got, ids)
	}
	srv.Disconnect("refresh_requested")
	if got := srv.ConnectionIDs(); len(got) != 0 {
		t.Errorf("ConnectionIDs after a disconnect = %v, want none", got)
	}
}

// TestHold: held calls are received but neither acted on, recorded nor
// answered until released; then they are, with the time they arrived;
// other methods and later calls are not held.
func TestHold(t *testing.T) {
	srv := newServer(t)
	api := newAPI(srv, "xapp-test")
	c := startClient(t, srv)
	ctx := waitCtx(t)
	srv.SendSlashCommand(slacktest.SlashCommand{ChannelID: "C1", UserID: "U1"})
	cmd := c.next(ctx, t, socketmode.EventTypeSlashCommand).Data.(slack.SlashCommand)

	hold := srv.Hold("chat.postMessage", "response_url")
	posted := make(chan error, 2)
	go func() {
		_, _, err := api.PostMessageContext(ctx, "C1", slack.MsgOptionText("held", false))
		posted <- err
	}()
	go func() {
		posted <- slack.PostWebhookContext(ctx, cmd.ResponseURL, &slack.WebhookMessage{Text: "held too"})
	}()
	if err := hold.Wait(ctx, "chat.postMessage", 1); err != nil {
		t.Fatal(err)
	}
	if err := hold.Wait(ctx, "response_url", 1); err != nil {
		t.Fatal(err)
	}
	if _, err := api.AuthTestContext(ctx); err != nil { // not held
		t.Fatalf("auth.test while chat.postMessage is held: %v", err)
	}
	if n := len(srv.Calls("chat.postMessage")) + len(srv.Calls("response_url")); n != 0 {
		t.Errorf("%d held calls recorded before the release", n)
	}
	if msgs := srv.Messages("C1"); len(msgs) != 0 {
		t.Errorf("held calls acted on: %+v", msgs)
	}
	select {
	case err := <-posted:
		t.Fatalf("a held call was answered: %v", err)
	default:
	}

	released := time.Now()
	counts := hold.Release()
	if want := map[string]int{"chat.postMessage": 1, "response_url": 1}; !maps.Equal(counts, want) {
		t.Errorf("Release = %v, want %v", counts, want)
	}
	for range 2 {
		if err := <-posted; err != nil {
			t.Errorf("released call: %v", err)
		}
	}
	calls := append(srv.Calls("chat.postMessage"), srv.Calls("response_url")...)
	for _, c := range calls {
		if !c.At.Before(released) || c.Error != "" {
			t.Errorf("released %s call: at %v (released %v), error %q", c.Method, c.At, released, c.Error)
		}
	}
	if msgs := srv.Messages("C1"); len(msgs) != 2 {
		t.Errorf("after the release, messages %+v, want 2", msgs)
	}
	// Released, it holds no more.
	if _, _, err := api.PostMessageContext(ctx, "C1", slack.MsgOptionText("free", false)); err != nil {
		t.Errorf("post after the release: %v", err)
	}
	if again := hold.Release(); !maps.Equal(again, counts) {
		t.Errorf("second Release = %v, want %v", again, counts)
	}
}
