package bot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/slack-go/slack"

	"github.com/hbrbot/hbrbot"
	"github.com/hbrbot/hbrbot/upgrade"
)

// Messenger speaks for the workflow in Slack through the Web API.
type Messenger struct {
	api   *slack.Client
	obs   SlackObserver
	trust *Trust // whose messages are the bot's own

	mu     sync.Mutex
	groups map[string]groupEntry
	now    func() time.Time
}

type groupEntry struct {
	members []string
	at      time.Time
}

// groupTTL is how long a user group's members are trusted: a revoked
// approver loses the right within a minute. A miss refreshes an entry older
// than groupMissRefresh.
const (
	groupTTL         = time.Minute
	groupMissRefresh = 5 * time.Second
)

// SlackObserver is told of every Web API call: its method and result
// (ok, ratelimited, error).
type SlackObserver interface {
	SlackCall(method, result string)
}

type noSlackObserver struct{}

func (noSlackObserver) SlackCall(string, string) {}

// NewMessenger wraps a Web API client; obs may be nil. trust says which
// messages are the bot's own.
func NewMessenger(api *slack.Client, obs SlackObserver, trust *Trust) *Messenger {
	if obs == nil {
		obs = noSlackObserver{}
	}
	return &Messenger{api: api, obs: obs, trust: trust, groups: map[string]groupEntry{}, now: time.Now}
}

var _ upgrade.Chat = (*Messenger)(nil)
var _ Teller = (*Messenger)(nil)

// RateLimitError is Slack's 429: try again after RetryAfter.
type RateLimitError struct {
	Method string
	After  time.Duration
}

func (e *RateLimitError) Error() string {
	return fmt.Sprintf("slack %s: rate limited, retry after %s", e.Method, e.After)
}

// RetryAfter says when Slack accepts the call again.
func (e *RateLimitError) RetryAfter() time.Duration { return e.After }

// wrap names the method, counts the call and turns a 429 into a
// RateLimitError. slack-go's errors carry no token.
func (m *Messenger) wrap(method string, err error) error {
	if err == nil {
		m.obs.SlackCall(method, "ok")
		return nil
	}
	var rl *slack.RateLimitedError
	if errors.As(err, &rl) {
		m.obs.SlackCall(method, "ratelimited")
		return &RateLimitError{Method: method, After: rl.RetryAfter}
	}
	m.obs.SlackCall(method, "error")
	return fmt.Errorf("slack %s: %w", method, err)
}

// PostCard posts r's approval card.
func (m *Messenger) PostCard(ctx context.Context, r hbrbot.Request) (string, error) {
	_, ts, err := m.api.PostMessageContext(ctx, r.ChannelID,
		slack.MsgOptionText(cardFallback(r), false), slack.MsgOptionBlocks(CardBlocks(r, nil)...))
	return ts, m.wrap("chat.postMessage", err)
}

// UpdateCard shows r as it stands on its card.
func (m *Messenger) UpdateCard(ctx context.Context, r hbrbot.Request, batches []hbrbot.Batch) error {
	_, _, _, err := m.api.UpdateMessageContext(ctx, r.ChannelID, r.CardTS,
		slack.MsgOptionText(cardFallback(r), false), slack.MsgOptionBlocks(CardBlocks(r, batches)...))
	return m.wrap("chat.update", err)
}

func reportMetadata(b hbrbot.BatchStatus, kind hbrbot.ReportKind) slack.SlackMetadata {
	return slack.SlackMetadata{EventType: reportEventType,
		EventPayload: map[string]any{"batch": b.Key(), "kind": string(kind)}}
}

// PostReport posts b's reply of this kind in its thread.
func (m *Messenger) PostReport(ctx context.Context, b hbrbot.Batch, kind hbrbot.ReportKind) error {
	var text string
	var blocks []slack.Block
	switch kind {
	case hbrbot.ReportStarted:
		text, blocks = StartedReport(b)
	case hbrbot.ReportFinal:
		text, blocks = FinalReport(b)
	default:
		return fmt.Errorf("unknown report kind %q", kind)
	}
	_, _, err := m.api.PostMessageContext(ctx, b.ChannelID, slack.MsgOptionTS(b.ThreadTS),
		slack.MsgOptionText(text, false), slack.MsgOptionBlocks(blocks...),
		slack.MsgOptionMetadata(reportMetadata(b.BatchStatus, kind)))
	return m.wrap("chat.postMessage", err)
}

// FindReply looks through a thread for the bot's reply of kind tagged
// with key, and returns its ts.
func (m *Messenger) FindReply(ctx context.Context, channel, threadTS, key string, kind hbrbot.ReportKind) (string, bool, error) {
	// Only the bot's own messages count: anyone can post metadata.
	home, ok := m.trust.Home()
	if !ok {
		return "", false, errors.New("slack: the bot's identity is not known yet")
	}
	params := &slack.GetConversationRepliesParameters{ChannelID: channel, Timestamp: threadTS,
		Limit: 200, IncludeAllMetadata: true}
	for {
		msgs, more, cursor, err := m.api.GetConversationRepliesContext(ctx, params)
		if err != nil {
			return "", false, m.wrap("conversations.replies", err)
		}
		for _, msg := range msgs {
			md := msg.Metadata
			if msg.BotID == home.BotID && md.EventType == reportEventType && md.EventPayload["kind"] == string(kind) && taggedWith(md, key) {
				return msg.Timestamp, true, nil
			}
		}
		if !more || cursor == "" {
			return "", false, nil
		}
		params.Cursor = cursor
	}
}

func progressMetadata(r hbrbot.Request) slack.SlackMetadata {
	return slack.SlackMetadata{EventType: reportEventType,
		EventPayload: map[string]any{"request": r.ID, "kind": string(hbrbot.ReportProgress)}}
}

// taggedWith reports whether a reply's metadata names key: a batch key
// (a job's reports), or a request ID (its progress reply; replies posted
// before 2026-12 name it under "batch").
func taggedWith(md slack.SlackMetadata, key string) bool {
	return md.EventPayload["batch"] == key || md.EventPayload["request"] == key
}

// NeedsTable says whether b's final report comes with a table file.
func (m *Messenger) NeedsTable(b hbrbot.Batch) bool { return NeedsTable(b) }

// tableName is the file name of b's table: it names the batch, so a
// replica can find it in the thread.
func tableName(b hbrbot.BatchStatus) string {
	return fmt.Sprintf("hbr-upgrade-%s-job%d.csv", b.RequestID, b.Index+1)
}

// FindTable looks through b's thread for its table file.
func (m *Messenger) FindTable(ctx context.Context, b hbrbot.Batch) (bool, error) {
	params := &slack.GetConversationRepliesParameters{ChannelID: b.ChannelID, Timestamp: b.ThreadTS, Limit: 200}
	for {
		msgs, more, cursor, err := m.api.GetConversationRepliesContext(ctx, params)
		if err != nil {
			return false, m.wrap("conversations.replies", err)
		}
		for _, msg := range msgs {
			for _, f := range msg.Files {
				if f.Name == tableName(b.BatchStatus) {
					return true, nil
				}
			}
		}
		if !more || cursor == "" {
			return false, nil
		}
		params.Cursor = cursor
	}
}

// UploadTable shares b's full report table as a CSV file in its thread.
func (m *Messenger) UploadTable(ctx context.Context, b hbrbot.Batch) error {
	table := ReportCSV(b)
	name := tableName(b.BatchStatus)
	_, err := m.api.UploadFileContext(ctx, slack.UploadFileParameters{
		Reader: bytes.NewReader(table), FileSize: len(table), Filename: name,
		Title: fmt.Sprintf("%s of request %s: every ID of task %s", jobName(b.BatchStatus), b.RequestID, b.TaskID), Channel: b.ChannelID, ThreadTimestamp: b.ThreadTS,
	})
	return m.wrap("files.upload", err)
}

// PostProgress posts r's live progress reply in the card's thread.
func (m *Messenger) PostProgress(ctx context.Context, r hbrbot.Request, batches []hbrbot.BatchStatus) (string, error) {
	text, blocks := ProgressReport(r, batches, m.now())
	_, ts, err := m.api.PostMessageContext(ctx, r.ChannelID, slack.MsgOptionTS(r.CardTS),
		slack.MsgOptionText(text, false), slack.MsgOptionBlocks(blocks...), slack.MsgOptionMetadata(progressMetadata(r)))
	return ts, m.wrap("chat.postMessage", err)
}

// UpdateProgress redraws r's progress reply.
func (m *Messenger) UpdateProgress(ctx context.Context, r hbrbot.Request, batches []hbrbot.BatchStatus) error {
	text, blocks := ProgressReport(r, batches, m.now())
	_, _, _, err := m.api.UpdateMessageContext(ctx, r.ChannelID, r.ProgressTS,
		slack.MsgOptionText(text, false), slack.MsgOptionBlocks(blocks...), slack.MsgOptionMetadata(progressMetadata(r)))
	return m.wrap("chat.update", err)
}

// Recipient is a user to tell something privately: through the
// interaction's response_url when there is one, else ephemerally in the
// channel.
type Recipient struct {
	UserID, ChannelID, ResponseURL string
}

// Tell says text to one user: through the response_url when there is one
// (it works even where the bot is not a member), else ephemerally.
func (m *Messenger) Tell(ctx context.Context, to Recipient, text string) error {
	if to.ResponseURL != "" {
		err := slack.PostWebhookContext(ctx, to.ResponseURL, &slack.WebhookMessage{Text: text, ResponseType: slack.ResponseTypeEphemeral})
		if err == nil {
			m.obs.SlackCall("response_url", "ok")
			return nil
		}
		// A response_url serves 5 times in 30 minutes; fall back.
		if to.ChannelID == "" {
			return m.wrap("response_url", err)
		}
		m.wrap("response_url", err)
	}
	_, err := m.api.PostEphemeralContext(ctx, to.ChannelID, to.UserID, slack.MsgOptionText(text, false))
	return m.wrap("chat.postEphemeral", err)
}

// Permalink links to a message.
func (m *Messenger) Permalink(ctx context.Context, channel, ts string) (string, error) {
	url, err := m.api.GetPermalinkContext(ctx, &slack.PermalinkParameters{Channel: channel, Ts: ts})
	return url, m.wrap("chat.getPermalink", err)
}

// InGroup reports whether user is in a user group. Members are cached for
// a minute; a miss refreshes an entry older than a few seconds, so a new
// member need not wait, and a failed lookup is an error, never a guess.
func (m *Messenger) InGroup(ctx context.Context, group, user string) (bool, error) {
	m.mu.Lock()
	e, ok := m.groups[group]
	m.mu.Unlock()
	age := m.now().Sub(e.at)
	if ok && age < groupTTL && (slices.Contains(e.members, user) || age < groupMissRefresh) {
		return slices.Contains(e.members, user), nil
	}
	members, err := m.api.GetUserGroupMembersContext(ctx, group)
	if err != nil {
		return false, m.wrap("usergroups.users.list", err)
	}
	m.mu.Lock()
	m.groups[group] = groupEntry{members: members, at: m.now()}
	m.mu.Unlock()
	return slices.Contains(members, user), nil
}
