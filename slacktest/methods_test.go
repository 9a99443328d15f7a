package slacktest_test

import (
	"context"
	"slices"
	"testing"

	"github.com/slack-go/slack"

	"github.com/hbrbot/hbrbot/slacktest"
)

func TestMethods(t *testing.T) {
	srv := slacktest.NewServer()
	defer srv.Close()
	if got := srv.Methods(); len(got) != 0 {
		t.Errorf("Methods before any call = %q", got)
	}
	api := slack.New("xoxb-test", slack.OptionAPIURL(srv.APIURL()))
	ctx := context.Background()
	api.AuthTestContext(ctx)
	api.PostMessageContext(ctx, "C1", slack.MsgOptionText("a", false))
	api.PostMessageContext(ctx, "C1", slack.MsgOptionText("b", false))
	api.GetPermalinkContext(ctx, &slack.PermalinkParameters{Channel: "C1", Ts: "1.2"})
	if got, want := srv.Methods(), []string{"auth.test", "chat.getPermalink", "chat.postMessage"}; !slices.Equal(got, want) {
		t.Errorf("Methods = %q, want %q", got, want)
	}
}
