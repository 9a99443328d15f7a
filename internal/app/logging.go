package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"strings"

	"github.com/slack-go/slack"

	"github.com/hbrbot/hbrbot/config"
)

// newLogger builds the one logger everything writes through, in
// HBRBOT_LOG_FORMAT, with durations as text.
func newLogger(w io.Writer, cfg config.Config) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel, ReplaceAttr: durationsAsText}
	if cfg.LogFormat == "text" {
		return slog.New(slog.NewTextHandler(w, opts))
	}
	return slog.New(slog.NewJSONHandler(w, opts))
}

// durationsAsText writes a time.Duration as "10s", not JSON's nanoseconds.
func durationsAsText(_ []string, a slog.Attr) slog.Attr {
	if a.Value.Kind() == slog.KindDuration {
		a.Value = slog.StringValue(a.Value.Duration().String())
	}
	return a
}

// redisLogger routes go-redis's internal messages (a pool's bad
// connection, a Sentinel's failover) into the bot's log, at warn: they
// are all about something going wrong or changing.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, strings.TrimSpace(fmt.Sprintf(format, v...)), "component", "go-redis")
}

// stdLogger is a *log.Logger writing into the bot's log at debug, for
// libraries that take one (slack-go prints only with its debug option on).
func stdLogger(l *slog.Logger, component string) *log.Logger {
	return slog.NewLogLogger(l.With("component", component).Handler(), slog.LevelDebug)
}

// slackAuthErrors are Slack's answers that mean the token itself is bad.
var slackAuthErrors = map[string]bool{
	"invalid_auth": true, "not_authed": true, "account_inactive": true,
	"token_revoked": true, "token_expired": true, "not_allowed_token_type": true,
}

// tokenError is a Slack token that Slack refused: it says which one, at
// which method, and where a good one comes from.
type tokenError struct {
	variable, method, answer string
}

func (e *tokenError) Error() string {
	return fmt.Sprintf("Slack refused %s at %s (%s): %s", e.variable, e.method, e.answer, config.TokenSource(e.variable))
}

// refusedToken returns a *tokenError when err is Slack refusing the token
// of variable at method, else nil.
func refusedToken(err error, variable, method string) *tokenError {
	var se slack.SlackErrorResponse
	answer := ""
	switch {
	case errors.As(err, &se):
		answer = se.Err
	case err != nil:
		answer = err.Error()
	}
	if !slackAuthErrors[answer] {
		return nil
	}
	return &tokenError{variable: variable, method: method, answer: answer}
}
