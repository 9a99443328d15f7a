package slacktest_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack"
	"github.com/slack-go/slack/socketmode"

	"github.com/hbrbot/hbrbot/slacktest"
)

func slackErr(err error) string {
	var e slack.SlackErrorResponse
	if errors.As(err, &e) {
		return e.Err
	}
	if err != nil {
		return "other: " + err.Error()
	}
	return ""
}

func TestPostUpdateEphemeral(t *testing.T) {
	srv := newServer(t)
	api := newAPI(srv, "xapp-test")
	ctx := waitCtx(t)

	meta := slack.SlackMetadata{EventType: "hbr_request", EventPayload: map[string]any{"id": "req-42"}}
	ch, ts, msg, err := api.PostMessageWithResponseContext(ctx, "C1", slack.MsgOptionText("hello", false),
		slack.MsgOptionBlocks(slack.NewActionBlock("a", slack.NewButtonBlockElement("ok", "1",
			slack.NewTextBlockObject("plain_text", "OK", false, false)))), slack.MsgOptionMetadata(meta))
	if err != nil || ch != "C1" || !regexp.MustCompile(`^\d{10}\.\d{6}$`).MatchString(ts) {
		t.Fatalf("post = %q %q %v", ch, ts, err)
	}
	if msg.Timestamp != ts || msg.BotID != slacktest.BotID || msg.User != slacktest.BotUserID || len(msg.Blocks.BlockSet) != 1 {
		t.Errorf("returned message = %+v", msg)
	}
	_, ts2, _ := api.PostMessageContext(ctx, "C1", slack.MsgOptionText("second", false))
	if ts2 <= ts {
		t.Errorf("ts not increasing: %s then %s", ts, ts2)
	}
	stored, ok := srv.Message("C1", ts)
	if !ok || stored.Text != "hello" || !strings.Contains(string(stored.Metadata), `"req-42"`) || stored.Blocks == nil {
		t.Fatalf("stored = %+v", stored)
	}

	// MsgOptionBlocks() with no blocks sends blocks=[] which strips them.
	if _, _, text, err := api.UpdateMessageContext(ctx, "C1", ts, slack.MsgOptionText("decided", false), slack.MsgOptionBlocks()); err != nil || text != "decided" {
		t.Fatalf("update = %q %v", text, err)
	}
	if m, _ := srv.Message("C1", ts); m.Text != "decided" || m.Blocks != nil || m.Edits != 1 {
		t.Errorf("after update = %+v", m)
	}

	ets, err := api.PostEphemeralContext(ctx, "C1", "U1", slack.MsgOptionText("only you", false))
	if err != nil {
		t.Fatal(err)
	}
	if m, _ := srv.Message("C1", ets); !m.Ephemeral || m.EphemeralUser != "U1" || m.Text != "only you" {
		t.Errorf("ephemeral = %+v", m)
	}

	// Slack posts a reply to a missing parent unthreaded.
	_, orphan, om, err := api.PostMessageWithResponseContext(ctx, "C1", slack.MsgOptionText("x", false), slack.MsgOptionTS("1600000000.000000"))
	if m, _ := srv.Message("C1", orphan); err != nil || om.ThreadTimestamp != "" || m.ThreadTS != "" {
		t.Errorf("orphan reply = %+v, %v", m, err)
	}

	errCases := []struct {
		name string
		call func() error
		want string
	}{
		{"post without channel", func() error {
			_, _, err := api.PostMessageContext(ctx, "", slack.MsgOptionText("x", false))
			return err
		}, "channel_not_found"},
		{"post without text", func() error { _, _, err := api.PostMessageContext(ctx, "C1"); return err }, "no_text"},
		{"update unknown ts", func() error {
			_, _, _, err := api.UpdateMessageContext(ctx, "C1", "1.000000", slack.MsgOptionText("x", false))
			return err
		}, "message_not_found"},
		{"update ephemeral", func() error {
			_, _, _, err := api.UpdateMessageContext(ctx, "C1", ets, slack.MsgOptionText("x", false))
			return err
		}, "message_not_found"},
		{"too many blocks", func() error {
			var bs []slack.Block
			for range 51 {
				bs = append(bs, slack.NewDividerBlock())
			}
			_, _, err := api.PostMessageContext(ctx, "C1", slack.MsgOptionBlocks(bs...))
			return err
		}, "invalid_blocks"},
		{"bad metadata", func() error {
			_, _, err := api.PostMessageContext(ctx, "C1", slack.MsgOptionText("x", false), slack.MsgOptionMetadata(slack.SlackMetadata{}))
			return err
		}, "invalid_metadata_format"},
	}
	for _, tc := range errCases {
		if got := slackErr(tc.call()); got != tc.want {
			t.Errorf("%s: error %q, want %q", tc.name, got, tc.want)
		}
	}
	if c := srv.Calls("chat.update"); len(c) != 3 || c[0].Form.Get("ts") != ts || c[0].Form.Get("blocks") != "[]" {
		t.Errorf("chat.update calls = %+v", c)
	}
}

func TestConversationsRepliesPaging(t *testing.T) {
	srv := newServer(t)
	api := newAPI(srv, "xapp-test")
	ctx := waitCtx(t)

	meta := slack.MsgOptionMetadata(slack.SlackMetadata{EventType: "hbr_progress", EventPayload: map[string]any{"step": 1}})
	_, parent, _ := api.PostMessageContext(ctx, "C1", slack.MsgOptionText("parent", false), meta)
	var replies []string
	for i := range 5 {
		_, ts, err := api.PostMessageContext(ctx, "C1", slack.MsgOptionText(strings.Repeat("r", i+1), false), slack.MsgOptionTS(parent), meta)
		if err != nil {
			t.Fatal(err)
		}
		replies = append(replies, ts)
	}
	_, _ = api.PostEphemeralContext(ctx, "C1", "U1", slack.MsgOptionText("hidden", false), slack.MsgOptionTS(parent))
	if th := srv.Thread("C1", parent); len(th) != 5 || th[0].TS != replies[0] || th[4].ThreadTS != parent {
		t.Fatalf("Thread = %+v", th)
	}

	for _, withMeta := range []bool{false, true} {
		var got []slack.Message
		cursor, pages := "", 0
		for {
			msgs, more, next, err := api.GetConversationRepliesContext(ctx, &slack.GetConversationRepliesParameters{
				ChannelID: "C1", Timestamp: replies[2], Cursor: cursor, Limit: 2, IncludeAllMetadata: withMeta})
			if err != nil {
				t.Fatal(err)
			}
			pages++
			got = append(got, msgs...)
			if more != (next != "") {
				t.Fatalf("has_more %v with cursor %q", more, next)
			}
			if !more {
				break
			}
			cursor = next
		}
		if pages != 3 || len(got) != 6 || got[0].Timestamp != parent || got[0].ReplyCount != 5 || got[5].Timestamp != replies[4] {
			t.Fatalf("pages=%d got=%d first=%+v", pages, len(got), got[0])
		}
		for _, m := range got {
			if hasMeta := m.Metadata.EventType == "hbr_progress"; hasMeta != withMeta {
				t.Errorf("include_all_metadata=%v: message %s metadata %+v", withMeta, m.Timestamp, m.Metadata)
			}
			if m.ThreadTimestamp != parent {
				t.Errorf("message %s thread_ts %q", m.Timestamp, m.ThreadTimestamp)
			}
		}
	}

	_, _, _, err := api.GetConversationRepliesContext(ctx, &slack.GetConversationRepliesParameters{ChannelID: "C1", Timestamp: "1.000000"})
	if slackErr(err) != "thread_not_found" {
		t.Errorf("unknown thread: %v", err)
	}
	_, _, _, err = api.GetConversationRepliesContext(ctx, &slack.GetConversationRepliesParameters{ChannelID: "C1", Timestamp: parent, Cursor: "bogus"})
	if slackErr(err) != "invalid_cursor" {
		t.Errorf("bad cursor: %v", err)
	}
}

func TestSmallMethods(t *testing.T) {
	srv := newServer(t, slacktest.WithTeamID("T9"))
	api := newAPI(srv, "xapp-test")
	ctx := waitCtx(t)
	srv.SetUserGroup("S1", "U1", "U2")
	srv.SetUser(slacktest.User{ID: "U1", Name: "alice", RealName: "Alice A"})

	auth, err := api.AuthTestContext(ctx)
	if err != nil || auth.TeamID != "T9" || auth.UserID != slacktest.BotUserID || auth.BotID != slacktest.BotID {
		t.Errorf("auth.test = %+v, %v", auth, err)
	}
	members, err := api.GetUserGroupMembersContext(ctx, "S1")
	if err != nil || strings.Join(members, ",") != "U1,U2" {
		t.Errorf("usergroup = %v, %v", members, err)
	}
	if _, err := api.GetUserGroupMembersContext(ctx, "S404"); slackErr(err) != "no_such_subteam" {
		t.Errorf("unknown usergroup: %v", err)
	}
	u, err := api.GetUserInfoContext(ctx, "U1")
	if err != nil || u.Name != "alice" || u.RealName != "Alice A" {
		t.Errorf("users.info = %+v, %v", u, err)
	}
	_, ts, _ := api.PostMessageContext(ctx, "C1", slack.MsgOptionText("x", false))
	link, err := api.GetPermalinkContext(ctx, &slack.PermalinkParameters{Channel: "C1", Ts: ts})
	if want := srv.URL() + "/archives/C1/p" + strings.ReplaceAll(ts, ".", ""); err != nil || link != want {
		t.Errorf("permalink = %q, %v; want %q", link, err, want)
	}
	// chat.getPermalink is a GET with the token in a Bearer header.
	if c := srv.Calls("chat.getPermalink"); len(c) != 1 || c[0].Token != "xoxb-test" {
		t.Errorf("permalink calls = %+v", c)
	}

	resp, err := http.PostForm(srv.APIURL()+"conversations.frobnicate", url.Values{"token": {"xoxb-test"}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		OK    bool   `json:"ok"`
		Error string `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != 200 || body.OK || body.Error != "unknown_method" {
		t.Errorf("unknown method: %d %+v %v", resp.StatusCode, body, err)
	}
}

func TestAuthAndFaults(t *testing.T) {
	srv := newServer(t)
	ctx := waitCtx(t)
	api := newAPI(srv, "xapp-test")
	post := func(c *slack.Client) error {
		_, _, err := c.PostMessageContext(ctx, "C1", slack.MsgOptionText("x", false))
		return err
	}
	tokens := []struct{ token, want string }{
		{"xoxb-wrong", "invalid_auth"},
		{"", "not_authed"},
		{"xapp-test", "not_allowed_token_type"},
	}
	for _, tc := range tokens {
		if got := slackErr(post(slack.New(tc.token, slack.OptionAPIURL(srv.APIURL())))); got != tc.want {
			t.Errorf("token %q: %q, want %q", tc.token, got, tc.want)
		}
	}

	srv.RateLimit("chat.postMessage", 1, 1500*time.Millisecond)
	srv.FailNext("chat.postMessage", 1, "not_in_channel")
	var rl *slack.RateLimitedError
	if err := post(api); !errors.As(err, &rl) || rl.RetryAfter != 2*time.Second {
		t.Errorf("rate limited: %v", err)
	}
	if got := slackErr(post(api)); got != "not_in_channel" {
		t.Errorf("FailNext: %q", got)
	}
	if err := post(api); err != nil {
		t.Errorf("after faults: %v", err)
	}
	var statuses []int
	for _, c := range srv.Calls("chat.postMessage")[3:] {
		statuses = append(statuses, c.Status)
	}
	if len(statuses) != 3 || statuses[0] != 429 || statuses[1] != 200 || statuses[2] != 200 {
		t.Errorf("statuses = %v", statuses)
	}
}

func TestResponseURL(t *testing.T) {
	srv := newServer(t)
	api := newAPI(srv, "xapp-test")
	c := startClient(t, srv)
	ctx := waitCtx(t)

	srv.SendSlashCommand(slacktest.SlashCommand{ChannelID: "C1", UserID: "U1"})
	cmd := c.next(ctx, t, socketmode.EventTypeSlashCommand).Data.(slack.SlashCommand)

	// Webhook style (status only) and chat style (parses the JSON answer).
	err := slack.PostWebhookContext(ctx, cmd.ResponseURL, &slack.WebhookMessage{ResponseType: "in_channel", Text: "starting", ThreadTimestamp: ""})
	if err != nil {
		t.Fatal(err)
	}
	call, err := srv.WaitCall(ctx, "response_url", nil)
	if err != nil || call.JSON["text"] != "starting" || call.JSON["response_type"] != "in_channel" {
		t.Fatalf("recorded = %+v, %v", call, err)
	}
	if msgs := srv.Messages("C1"); len(msgs) != 1 || msgs[0].Ephemeral || msgs[0].Text != "starting" {
		t.Errorf("in_channel response = %+v", msgs)
	}
	for i := range 4 {
		if _, _, err := api.PostMessageContext(ctx, "", slack.MsgOptionResponseURL(cmd.ResponseURL, slack.ResponseTypeEphemeral),
			slack.MsgOptionText("only you", false)); err != nil {
			t.Fatalf("use %d: %v", i+2, err)
		}
	}
	if msgs := srv.Messages("C1"); len(msgs) != 5 || !msgs[4].Ephemeral || msgs[4].EphemeralUser != "U1" {
		t.Errorf("ephemeral responses = %+v", msgs)
	}
	var sce slack.StatusCodeError
	if err := slack.PostWebhookContext(ctx, cmd.ResponseURL, &slack.WebhookMessage{Text: "sixth"}); !errors.As(err, &sce) || sce.Code != 404 {
		t.Errorf("sixth use: %v", err)
	}
	if c := srv.Calls("response_url"); len(c) != 6 || c[5].Error != "used_url" {
		t.Errorf("calls = %+v", c)
	}

	// A button's response_url edits or deletes the message it came from.
	_, ts, _ := api.PostMessageContext(ctx, "C2", slack.MsgOptionText("Approve?", false),
		slack.MsgOptionBlocks(slack.NewActionBlock("b", slack.NewButtonBlockElement("go", "1",
			slack.NewTextBlockObject("plain_text", "Go", false, false)))))
	srv.SendBlockAction(slacktest.BlockAction{ChannelID: "C2", MessageTS: ts, UserID: "U1", ActionID: "go"})
	cb := c.next(ctx, t, socketmode.EventTypeInteractive).Data.(slack.InteractionCallback)
	if _, _, err := api.PostMessageContext(ctx, "", slack.MsgOptionReplaceOriginal(cb.ResponseURL), slack.MsgOptionText("Approved by alice", false)); err != nil {
		t.Fatal(err)
	}
	if m, _ := srv.Message("C2", ts); m.Text != "Approved by alice" || m.Blocks != nil || m.Edits != 1 {
		t.Errorf("replaced = %+v", m)
	}
	if _, _, err := api.PostMessageContext(ctx, "", slack.MsgOptionDeleteOriginal(cb.ResponseURL)); err != nil {
		t.Fatal(err)
	}
	if m, _ := srv.Message("C2", ts); !m.Deleted {
		t.Errorf("not deleted: %+v", m)
	}

	srv.RateLimit("response_url", 1, time.Second)
	var rl *slack.RateLimitedError
	if err := slack.PostWebhookContext(ctx, cb.ResponseURL, &slack.WebhookMessage{Text: "x"}); !errors.As(err, &rl) {
		t.Errorf("rate limited response_url: %v", err)
	}
	if err := slack.PostWebhookContext(ctx, srv.URL()+"/response/999", &slack.WebhookMessage{Text: "x"}); !errors.As(err, &sce) || sce.Code != 404 {
		t.Errorf("unknown response_url: %v", err)
	}
}

// TestOrganisationFacts: what the bot reads to tell its own organisation's
// members from others, guests and shared channels, through slack-go.
func TestOrganisationFacts(t *testing.T) {
	srv := slacktest.NewServer(slacktest.WithTeamID("T0HOME"), slacktest.WithEnterpriseID("E0HOME"))
	t.Cleanup(srv.Close)
	api := newAPI(srv, "xapp-test")
	ctx := waitCtx(t)
	srv.SetUser(slacktest.User{ID: "U0OTHER", TeamID: "T0OTHER"})
	srv.SetUser(slacktest.User{ID: "U0GUEST", IsRestricted: true})
	srv.SetChannel(slacktest.Channel{ID: "C0SHARED", IsExtShared: true})

	auth, err := api.AuthTestContext(ctx)
	if err != nil || auth.TeamID != "T0HOME" || auth.EnterpriseID != "E0HOME" || auth.BotID != slacktest.BotID {
		t.Fatalf("auth.test = %+v, %v", auth, err)
	}
	for _, tc := range []struct {
		id, team   string
		restricted bool
	}{{"U0ALICE", "T0HOME", false}, {"U0OTHER", "T0OTHER", false}, {"U0GUEST", "T0HOME", true}} {
		u, err := api.GetUserInfoContext(ctx, tc.id)
		if err != nil || u.TeamID != tc.team || u.IsRestricted != tc.restricted {
			t.Errorf("users.info %s = %+v, %v; want team %s restricted %v", tc.id, u, err, tc.team, tc.restricted)
		}
	}
	for id, shared := range map[string]bool{"C0SHARED": true, "C0OPS": false} {
		c, err := api.GetConversationInfoContext(ctx, &slack.GetConversationInfoInput{ChannelID: id})
		if err != nil || c.IsExtShared != shared {
			t.Errorf("conversations.info %s: ext shared %v, %v; want %v", id, c != nil && c.IsExtShared, err, shared)
		}
	}
}

// TestWaitMessage: a wait is woken by a post and by an edit, and ends with
// its context.
func TestWaitMessage(t *testing.T) {
	srv := newServer(t)
	api := newAPI(srv, "xapp-test")
	ctx := waitCtx(t)
	got := make(chan slacktest.Message, 1)
	go func() {
		m, err := srv.WaitMessage(ctx, "C1", func(m slacktest.Message) bool { return m.Text == "edited" })
		if err != nil {
			t.Error(err)
		}
		got <- m
	}()
	_, ts, err := api.PostMessageContext(ctx, "C1", slack.MsgOptionText("first", false))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := api.UpdateMessageContext(ctx, "C1", ts, slack.MsgOptionText("edited", false)); err != nil {
		t.Fatal(err)
	}
	if m := <-got; m.TS != ts || m.Edits != 1 {
		t.Errorf("woken with %+v", m)
	}
	short, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
	defer cancel()
	if _, err := srv.WaitMessage(short, "C1", func(slacktest.Message) bool { return false }); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("err = %v", err)
	}
}
