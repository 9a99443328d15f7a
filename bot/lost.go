package bot

import (
	"context"
	"fmt"

	"github.com/slack-go/slack"

	"github.com/hbrbot/hbrbot"
)

// LostReport is the reply in a batch's thread when its state is gone from
// Redis while its work was scheduled: which IDs, and that they must be
// checked by hand.
func LostReport(idx hbrbot.BatchIndex) (string, []slack.Block) {
	job := jobName(hbrbot.BatchStatus{Index: idx.Index, Of: idx.Of})
	text := fmt.Sprintf(":rotating_light: %s: hbrbot lost this job's state in Redis (evicted or deleted), so it cannot say what became of its %s.",
		job, plural(idx.Targets.Len(), "ID"))
	lines := []string{"*" + text + "*",
		"Check each of them by hand in the HBR console (its client version and status) before trying again; hbrbot will not submit them again:"}
	lines = append(lines, idList(idx.Targets.All())...)
	return text, sections(lines, blockLimit)
}

// PostLost says in the batch's thread that its state is gone.
func (m *Messenger) PostLost(ctx context.Context, idx hbrbot.BatchIndex) error {
	text, blocks := LostReport(idx)
	_, _, err := m.api.PostMessageContext(ctx, idx.ChannelID, slack.MsgOptionTS(idx.ThreadTS),
		slack.MsgOptionText(text, false), slack.MsgOptionBlocks(blocks...),
		slack.MsgOptionMetadata(slack.SlackMetadata{EventType: reportEventType,
			EventPayload: map[string]any{"batch": idx.Key(), "kind": "lost"}}))
	return m.wrap("chat.postMessage", err)
}
