package slacktest

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"
)

// verificationToken is the deprecated per-app token Slack still puts in
// payloads; Socket Mode apps must not rely on it.
const verificationToken = "fakeverificationtoken0000"

// SlashCommand describes a user invoking a slash command.
type SlashCommand struct {
	ChannelID, UserID, Text string
	Command                 string // default "/hbr-upgrade"
	// TeamID and EnterpriseID default to the user's (see User).
	TeamID, EnterpriseID string
}

// SendSlashCommand delivers a slash_commands envelope with a complete payload
// (including a fresh response_url) and returns its envelope_id.
func (s *Server) SendSlashCommand(cmd SlashCommand) string {
	if cmd.Command == "" {
		cmd.Command = "/hbr-upgrade"
	}
	s.mu.Lock()
	u := s.user(cmd.UserID)
	if cmd.TeamID == "" {
		cmd.TeamID = u.TeamID
	}
	if cmd.EnterpriseID == "" {
		cmd.EnterpriseID = u.EnterpriseID
	}
	payload := obj{
		"token": verificationToken, "team_id": cmd.TeamID, "team_domain": "fake",
		"channel_id": cmd.ChannelID, "channel_name": strings.ToLower(cmd.ChannelID),
		"user_id": cmd.UserID, "user_name": s.userName(cmd.UserID),
		"command": cmd.Command, "text": cmd.Text, "api_app_id": AppID,
		"is_enterprise_install": "false",
		"response_url":          s.newResponseURL(cmd.ChannelID, cmd.UserID, ""),
		"trigger_id":            triggerID(),
	}
	if cmd.EnterpriseID != "" {
		payload["enterprise_id"], payload["enterprise_name"] = cmd.EnterpriseID, "Fake Org"
	}
	s.mu.Unlock()
	return s.SendEnvelope("slash_commands", payload, true)
}

// BlockAction describes a user clicking a button in a stored message.
type BlockAction struct {
	ChannelID, MessageTS, UserID, ActionID string
	Value                                  string // default: the clicked button's value
	BlockID                                string // default: the block holding the button
	// TeamID is the payload's team (default the user's team, see User).
	TeamID string
}

// SendBlockAction delivers an interactive block_actions envelope for a click
// on the button action_id of the stored message channel/ts, shaped like
// Slack's: the message with its current blocks, container, channel, user,
// actions[] (with the string block_id slack-go needs to decode it as a
// BlockAction), an empty state and a fresh response_url. Clicks on unknown
// messages or buttons are still sent, with what the caller supplied.
func (s *Server) SendBlockAction(a BlockAction) string {
	s.mu.Lock()
	m := s.byKey[a.ChannelID+"/"+a.MessageTS]
	action := obj{"type": "button", "action_id": a.ActionID,
		"text": obj{"type": "plain_text", "text": a.ActionID, "emoji": true}}
	blockID := "fake_block"
	if m != nil {
		if id, el := findButton(m.Blocks, a.ActionID); el != nil {
			blockID = id
			for _, k := range []string{"text", "value", "style", "url"} {
				if v, ok := el[k]; ok {
					action[k] = v
				}
			}
		}
	}
	if a.BlockID != "" {
		blockID = a.BlockID
	}
	if a.Value != "" {
		action["value"] = a.Value
	}
	action["block_id"], action["action_ts"] = blockID, actionTS()

	container := obj{"type": "message", "message_ts": a.MessageTS, "channel_id": a.ChannelID, "is_ephemeral": m != nil && m.Ephemeral}
	u := s.user(a.UserID)
	if a.TeamID == "" {
		a.TeamID = u.TeamID
	}
	var enterprise any
	if u.EnterpriseID != "" {
		enterprise = obj{"id": u.EnterpriseID, "name": "Fake Org"}
	}
	payload := obj{
		"type":                  "block_actions",
		"user":                  obj{"id": a.UserID, "username": s.userName(a.UserID), "name": s.userName(a.UserID), "team_id": u.TeamID},
		"api_app_id":            AppID,
		"token":                 verificationToken,
		"container":             container,
		"trigger_id":            triggerID(),
		"team":                  obj{"id": a.TeamID, "domain": "fake"},
		"enterprise":            enterprise,
		"is_enterprise_install": false,
		"channel":               obj{"id": a.ChannelID, "name": strings.ToLower(a.ChannelID)},
		"state":                 obj{"values": obj{}},
		"response_url":          s.newResponseURL(a.ChannelID, a.UserID, a.MessageTS),
		"actions":               []obj{action},
	}
	// Ephemeral messages are not stored by Slack, so their clicks carry no
	// message. Metadata is left out as Slack does not document it here.
	if m != nil && !m.Ephemeral {
		payload["message"] = s.wireMessage(m, false)
		if m.ThreadTS != "" {
			container["thread_ts"] = m.ThreadTS
		}
	}
	s.mu.Unlock()
	return s.SendEnvelope("interactive", payload, false)
}

// findButton returns the block_id and element of the button with actionID,
// in an actions block or as a section accessory.
func findButton(blocks json.RawMessage, actionID string) (string, map[string]any) {
	var bs []struct {
		BlockID   string           `json:"block_id"`
		Elements  []map[string]any `json:"elements"`
		Accessory map[string]any   `json:"accessory"`
	}
	if json.Unmarshal(blocks, &bs) != nil {
		return "", nil
	}
	for _, b := range bs {
		for _, el := range append(b.Elements, b.Accessory) {
			if el != nil && el["action_id"] == actionID {
				return b.BlockID, el
			}
		}
	}
	return "", nil
}

func triggerID() string {
	return fmt.Sprintf("%d.%d.%016x%016x", rand.Int64N(1e11), rand.Int64N(1e11), rand.Uint64(), rand.Uint64())
}

func actionTS() string {
	now := time.Now()
	return fmt.Sprintf("%d.%06d", now.Unix(), now.Nanosecond()/1000)
}
