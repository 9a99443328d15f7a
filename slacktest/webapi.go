package slacktest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// obj is a JSON object under construction.
type obj = map[string]any

type apiHandler func(s *Server, r *http.Request) (obj, string)

// Web API methods. Each returns the success body (without "ok") or a Slack
// error string. They run with s.mu held.
var apiMethods = map[string]apiHandler{
	"auth.test":                    (*Server).authTest,
	"chat.postMessage":             (*Server).chatPostMessage,
	"chat.update":                  (*Server).chatUpdate,
	"chat.postEphemeral":           (*Server).chatPostEphemeral,
	"chat.getPermalink":            (*Server).chatGetPermalink,
	"conversations.info":           (*Server).conversationsInfo,
	"conversations.replies":        (*Server).conversationsReplies,
	"files.getUploadURLExternal":   (*Server).filesGetUploadURLExternal,
	"files.completeUploadExternal": (*Server).filesCompleteUploadExternal,
	"usergroups.users.list":        (*Server).usergroupsUsersList,
	"users.info":                   (*Server).usersInfo,
}

func (s *Server) handleAPI(w http.ResponseWriter, r *http.Request) {
	method := strings.TrimPrefix(r.URL.Path, "/api/")
	_ = r.ParseForm() // query + urlencoded body; the JSON body of apps.connections.open stays unread
	token := r.Form.Get("token")
	if token == "" {
		token = bearer(r)
	}
	call := Call{Method: method, Form: cloneValues(r.Form), Token: token, At: time.Now(), Status: http.StatusOK}

	s.await(method)
	s.mu.Lock()
	body, f := s.serveAPI(method, r, token)
	call.Status, call.Error = f.status, f.err
	s.record(call)
	s.mu.Unlock()

	if f.status == http.StatusTooManyRequests {
		secs := int(math.Ceil(f.retryAfter.Seconds()))
		w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
	}
	if f.err != "" {
		if body == nil {
			body = obj{}
		}
		body["error"] = f.err
	}
	body["ok"] = f.err == ""
	writeJSON(w, f.status, body)
}

// serveAPI authenticates, applies injected faults and dispatches. Callers hold s.mu.
func (s *Server) serveAPI(method string, r *http.Request, token string) (obj, fault) {
	ok := fault{status: http.StatusOK}
	if method == "apps.connections.open" {
		// Only the Authorization header counts here; Slack rejects the app
		// token as a POST parameter.
		if e := s.checkToken(bearer(r), s.appToken, s.botToken); e != "" {
			return nil, fault{status: http.StatusOK, err: e}
		}
		if f, hit := s.takeFault(method); hit {
			return nil, f
		}
		if s.openError != "" {
			return nil, fault{status: http.StatusOK, err: s.openError}
		}
		s.nextTicket++
		ticket := strconv.Itoa(s.nextTicket)
		s.tickets[ticket] = true
		return obj{"url": fmt.Sprintf("ws://%s/link/?ticket=%s&app_id=%s", strings.TrimPrefix(s.base, "http://"), ticket, AppID)}, ok
	}
	h, known := apiMethods[method]
	if !known {
		return obj{"req_method": method}, fault{status: http.StatusOK, err: "unknown_method"}
	}
	if e := s.checkToken(token, s.botToken, s.appToken); e != "" {
		return nil, fault{status: http.StatusOK, err: e}
	}
	if f, hit := s.takeFault(method); hit {
		return nil, f
	}
	body, e := h(s, r)
	if e != "" {
		return nil, fault{status: http.StatusOK, err: e}
	}
	return body, ok
}

// bearer extracts the token of an Authorization header. An empty app token
// arrives as just "Bearer" once the server trims the trailing space.
func bearer(r *http.Request) string {
	tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer")
	return strings.TrimSpace(tok)
}

// checkToken maps a presented token to Slack's auth errors.
func (s *Server) checkToken(got, want, otherKind string) string {
	switch got {
	case want:
		return ""
	case "":
		return "not_authed"
	case otherKind:
		return "not_allowed_token_type"
	default:
		return "invalid_auth"
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// marshalRaw encodes without HTML escaping, so stored blocks keep Slack's
// "<@U123>" mrkdwn readable for assertions.
func marshalRaw(v any) json.RawMessage {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	_ = enc.Encode(v)
	return json.RawMessage(bytes.TrimRight(b.Bytes(), "\n"))
}

func (s *Server) authTest(_ *http.Request) (obj, string) {
	o := obj{"url": s.base + "/", "team": "Fake Team", "user": "hbrbot", "team_id": s.teamID,
		"user_id": BotUserID, "bot_id": BotID, "is_enterprise_install": false}
	if s.enterpriseID != "" {
		o["enterprise_id"] = s.enterpriseID
	}
	return o, ""
}

func (s *Server) chatPostMessage(r *http.Request) (obj, string) {
	m, e := s.newMessage(r)
	if e != "" {
		return nil, e
	}
	if parent := r.Form.Get("thread_ts"); parent != "" {
		if p, ok := s.byKey[m.Channel+"/"+parent]; ok && !p.Ephemeral && !p.Deleted {
			m.ThreadTS = parent
			if p.ThreadTS != "" {
				m.ThreadTS = p.ThreadTS // replying to a reply lands in the same thread
			}
		}
		// Unknown parent: Slack posts the message unthreaded, which slack-go
		// callers detect through the returned message's missing thread_ts.
		m.ReplyBroadcast = m.ThreadTS != "" && r.Form.Get("reply_broadcast") == "true"
	}
	m.TS = s.nextTS()
	s.store(m)
	return obj{"channel": m.Channel, "ts": m.TS, "message": s.wireMessage(m, true)}, ""
}

// newMessage validates the content fields shared by post and postEphemeral.
func (s *Server) newMessage(r *http.Request) (*Message, string) {
	m := &Message{Channel: r.Form.Get("channel"), Text: r.Form.Get("text"), User: BotUserID}
	if m.Channel == "" {
		return nil, "channel_not_found"
	}
	if raw, ok := r.Form["blocks"]; ok {
		b, e := normalizeBlocks(raw[0])
		if e != "" {
			return nil, e
		}
		m.Blocks = b
	}
	if m.Text == "" && len(m.Blocks) == 0 && r.Form.Get("attachments") == "" {
		return nil, "no_text"
	}
	if raw := r.Form.Get("metadata"); raw != "" {
		md, e := normalizeMetadata(raw)
		if e != "" {
			return nil, e
		}
		m.Metadata = md
	}
	return m, ""
}

func normalizeMetadata(raw string) (json.RawMessage, string) {
	var md struct {
		EventType    string          `json:"event_type"`
		EventPayload json.RawMessage `json:"event_payload"`
	}
	if err := json.Unmarshal([]byte(raw), &md); err != nil || md.EventType == "" {
		return nil, "invalid_metadata_format"
	}
	var b bytes.Buffer
	_ = json.Compact(&b, []byte(raw))
	return b.Bytes(), ""
}

func (s *Server) chatUpdate(r *http.Request) (obj, string) {
	ch, ts := r.Form.Get("channel"), r.Form.Get("ts")
	if ch == "" {
		return nil, "channel_not_found"
	}
	m, ok := s.byKey[ch+"/"+ts]
	if !ok || m.Ephemeral || m.Deleted {
		return nil, "message_not_found"
	}
	_, hasText := r.Form["text"]
	raw, hasBlocks := r.Form["blocks"]
	if !hasText && !hasBlocks && r.Form.Get("attachments") == "" {
		return nil, "no_text"
	}
	// Fields that are absent keep their old value; "blocks=[]" clears blocks.
	if hasBlocks {
		b, e := normalizeBlocks(raw[0])
		if e != "" {
			return nil, e
		}
		m.Blocks = b
	}
	if raw := r.Form.Get("metadata"); raw != "" {
		md, e := normalizeMetadata(raw)
		if e != "" {
			return nil, e
		}
		m.Metadata = md
	}
	if hasText {
		m.Text = r.Form.Get("text")
	}
	m.Edits++
	return obj{"channel": ch, "ts": ts, "text": m.Text, "message": s.wireMessage(m, true)}, ""
}

func (s *Server) chatPostEphemeral(r *http.Request) (obj, string) {
	m, e := s.newMessage(r)
	if e != "" {
		return nil, e
	}
	if m.EphemeralUser = r.Form.Get("user"); m.EphemeralUser == "" {
		return nil, "user_not_in_channel"
	}
	m.Ephemeral, m.ThreadTS, m.TS = true, r.Form.Get("thread_ts"), s.nextTS()
	s.store(m)
	return obj{"message_ts": m.TS}, ""
}

func (s *Server) chatGetPermalink(r *http.Request) (obj, string) {
	ch, ts := r.Form.Get("channel"), r.Form.Get("message_ts")
	if ch == "" {
		return nil, "channel_not_found"
	}
	if _, ok := s.byKey[ch+"/"+ts]; !ok {
		return nil, "message_not_found"
	}
	return obj{"channel": ch, "permalink": fmt.Sprintf("%s/archives/%s/p%s", s.base, ch, strings.ReplaceAll(ts, ".", ""))}, ""
}

// conversationsReplies pages through parent+replies. Cursors look like
// Slack's: base64("next_ts:<ts without dot>") of the first message of the
// next page. The parent is only on the first page. Slack's default (and
// maximum) limit is 1000. oldest/latest/inclusive are ignored.
func (s *Server) conversationsReplies(r *http.Request) (obj, string) {
	ch, ts := r.Form.Get("channel"), r.Form.Get("ts")
	root, ok := s.byKey[ch+"/"+ts]
	if !ok || root.Ephemeral || root.Deleted {
		return nil, "thread_not_found"
	}
	if root.ThreadTS != "" { // ts may name any message in the thread
		if root, ok = s.byKey[ch+"/"+root.ThreadTS]; !ok {
			return nil, "thread_not_found"
		}
	}
	all := []*Message{root}
	for _, m := range s.messages {
		if m.Channel == ch && m.ThreadTS == root.TS && !m.Ephemeral && !m.Deleted {
			all = append(all, m)
		}
	}
	limit, _ := strconv.Atoi(r.Form.Get("limit"))
	if limit <= 0 || limit > 1000 {
		limit = 1000
	}
	start := 0
	if c := r.Form.Get("cursor"); c != "" {
		dec, err := base64.StdEncoding.DecodeString(c)
		next, found := strings.CutPrefix(string(dec), "next_ts:")
		if err != nil || !found {
			return nil, "invalid_cursor"
		}
		start = len(all)
		for i, m := range all {
			if strings.ReplaceAll(m.TS, ".", "") >= next {
				start = i
				break
			}
		}
	}
	end := min(start+limit, len(all))
	meta := r.Form.Get("include_all_metadata")
	withMeta := meta == "1" || meta == "true"
	msgs := make([]obj, 0, end-start)
	for _, m := range all[start:end] {
		msgs = append(msgs, s.wireMessage(m, withMeta))
	}
	cursor := ""
	if end < len(all) {
		cursor = base64.StdEncoding.EncodeToString([]byte("next_ts:" + strings.ReplaceAll(all[end].TS, ".", "")))
	}
	return obj{"messages": msgs, "has_more": cursor != "", "response_metadata": obj{"next_cursor": cursor}}, ""
}

func (s *Server) usergroupsUsersList(r *http.Request) (obj, string) {
	id := r.Form.Get("usergroup")
	if id == "" {
		return nil, "invalid_arguments"
	}
	users, ok := s.userGroups[id]
	if !ok {
		return nil, "no_such_subteam"
	}
	return obj{"users": append([]string{}, users...)}, ""
}

func (s *Server) usersInfo(r *http.Request) (obj, string) {
	id := r.Form.Get("user")
	if id == "" {
		return nil, "user_not_found"
	}
	u := s.user(id)
	o := obj{"id": u.ID, "team_id": u.TeamID, "name": u.Name, "real_name": u.RealName,
		"deleted": u.Deleted, "is_bot": u.IsBot, "is_restricted": u.IsRestricted, "is_ultra_restricted": u.IsUltraRestricted,
		"profile": obj{"real_name": u.RealName, "display_name": u.Name}}
	if u.EnterpriseID != "" {
		o["enterprise_user"] = obj{"id": u.ID, "enterprise_id": u.EnterpriseID, "teams": []string{u.TeamID}}
	}
	if u.TeamID != s.teamID {
		o["is_stranger"] = true
	}
	return obj{"user": o}, ""
}

// conversationsInfo describes a channel: private or not, shared with
// another organisation or not.
func (s *Server) conversationsInfo(r *http.Request) (obj, string) {
	id := r.Form.Get("channel")
	if id == "" {
		return nil, "channel_not_found"
	}
	c, ok := s.channels[id]
	if !ok {
		c = Channel{ID: id}
	}
	return obj{"channel": obj{"id": c.ID, "name": strings.ToLower(c.ID), "is_channel": !c.IsPrivate, "is_group": c.IsPrivate,
		"is_private": c.IsPrivate, "is_ext_shared": c.IsExtShared, "is_shared": c.IsExtShared, "is_org_shared": false,
		"context_team_id": s.teamID}}, ""
}

// wireMessage renders m the way the Web API returns messages. Callers hold s.mu.
func (s *Server) wireMessage(m *Message, withMeta bool) obj {
	o := obj{"type": "message", "text": m.Text, "user": m.User, "ts": m.TS, "team": s.teamID}
	if m.User == BotUserID {
		o["bot_id"], o["app_id"] = BotID, AppID
	}
	if len(m.Blocks) > 0 {
		o["blocks"] = m.Blocks
	}
	if withMeta && len(m.Metadata) > 0 {
		o["metadata"] = m.Metadata
	}
	if len(m.Files) > 0 {
		o["files"] = s.wireFiles(m.Files)
	}
	if m.Edits > 0 {
		o["edited"] = obj{"user": BotUserID, "ts": m.TS}
	}
	if m.ThreadTS != "" {
		o["thread_ts"], o["parent_user_id"] = m.ThreadTS, BotUserID
		if m.ReplyBroadcast {
			o["subtype"] = "thread_broadcast"
		}
		return o
	}
	var replies int
	var latest string
	users := []string{}
	for _, r := range s.messages {
		if r.Channel == m.Channel && r.ThreadTS == m.TS && !r.Ephemeral && !r.Deleted {
			replies, latest = replies+1, r.TS
			if !contains(users, r.User) {
				users = append(users, r.User)
			}
		}
	}
	if replies > 0 {
		o["thread_ts"], o["reply_count"], o["reply_users"], o["reply_users_count"], o["latest_reply"] =
			m.TS, replies, users, len(users), latest
	}
	return o
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// normalizeBlocks validates a blocks JSON array against the Block Kit limits
// hbrbot can run into and, like Slack, gives every block without a block_id a
// random one (so block_actions payloads always carry a string block_id).
func normalizeBlocks(raw string) (json.RawMessage, string) {
	dec := json.NewDecoder(strings.NewReader(raw))
	dec.UseNumber()
	var blocks []map[string]any
	if err := dec.Decode(&blocks); err != nil || len(blocks) > 50 {
		return nil, "invalid_blocks"
	}
	if len(blocks) == 0 {
		return nil, ""
	}
	ids := map[string]bool{}
	for _, b := range blocks {
		if _, ok := b["type"].(string); !ok {
			return nil, "invalid_blocks"
		}
		id, _ := b["block_id"].(string)
		if id == "" {
			id = randomBlockID()
			b["block_id"] = id
		}
		if len(id) > 255 || ids[id] {
			return nil, "invalid_blocks"
		}
		ids[id] = true
		if !validBlock(b) {
			return nil, "invalid_blocks"
		}
	}
	return marshalRaw(blocks), ""
}

func validBlock(b map[string]any) bool {
	if t, ok := b["text"].(map[string]any); ok && b["type"] == "section" {
		if s, _ := t["text"].(string); len(s) > 3000 {
			return false
		}
	}
	elems, _ := b["elements"].([]any)
	if b["type"] == "actions" && len(elems) > 25 {
		return false
	}
	if acc, ok := b["accessory"].(map[string]any); ok {
		elems = append(elems, acc)
	}
	actionIDs := map[string]bool{}
	for _, e := range elems {
		el, _ := e.(map[string]any)
		if el["type"] != "button" {
			continue
		}
		id, _ := el["action_id"].(string)
		val, _ := el["value"].(string)
		txt, _ := el["text"].(map[string]any)
		label, _ := txt["text"].(string)
		if len(id) > 255 || len(val) > 2000 || len(label) > 75 || (id != "" && actionIDs[id]) {
			return false
		}
		actionIDs[id] = true
	}
	return true
}

func randomBlockID() string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, 5)
	for i := range b {
		b[i] = alphabet[rand.IntN(len(alphabet))]
	}
	return string(b)
}

// handleResponseURL implements the response_url webhook. Slack allows 5 uses
// per URL; the 6th answers HTTP 404 "used_url", an unknown URL 404
// "expired_url", both as text like Slack's webhooks. Success is
// {"ok":true} as application/json, which both PostWebhook (status only) and
// MsgOptionResponseURL (parses JSON by Content-Type) accept.
func (s *Server) handleResponseURL(w http.ResponseWriter, r *http.Request) {
	n, _ := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/response/"))
	raw, _ := io.ReadAll(r.Body)
	call := Call{Method: "response_url", At: time.Now(), Status: http.StatusOK}
	var body map[string]any
	jsonErr := json.Unmarshal(raw, &body)
	call.JSON = body

	s.await(call.Method)
	s.mu.Lock()
	f := s.serveResponseURL(n, body, jsonErr)
	call.Status, call.Error = f.status, f.err
	s.record(call)
	s.mu.Unlock()

	switch {
	case f.status == http.StatusTooManyRequests:
		w.Header().Set("Retry-After", strconv.Itoa(max(int(math.Ceil(f.retryAfter.Seconds())), 1)))
		writeJSON(w, f.status, obj{"ok": false, "error": f.err})
	case f.err != "":
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(f.status)
		_, _ = io.WriteString(w, f.err)
	default:
		writeJSON(w, http.StatusOK, obj{"ok": true})
	}
}

// serveResponseURL applies Slack's response_url semantics to the store.
// Callers hold s.mu.
func (s *Server) serveResponseURL(n int, body map[string]any, jsonErr error) fault {
	ru, ok := s.respURLs[n]
	switch {
	case !ok:
		return fault{status: http.StatusNotFound, err: "expired_url"}
	case ru.uses >= 5:
		return fault{status: http.StatusNotFound, err: "used_url"}
	case jsonErr != nil:
		return fault{status: http.StatusBadRequest, err: "invalid_payload"}
	}
	if f, hit := s.takeFault("response_url"); hit {
		if f.status == http.StatusOK {
			f.status = http.StatusBadRequest
		}
		return f
	}
	text, _ := body["text"].(string)
	var blocks json.RawMessage
	if b, ok := body["blocks"].([]any); ok {
		var e string
		if blocks, e = normalizeBlocks(string(marshalRaw(b))); e != "" {
			return fault{status: http.StatusBadRequest, err: e}
		}
	}
	del, _ := body["delete_original"].(bool)
	replace, _ := body["replace_original"].(bool)
	src := s.byKey[ru.channel+"/"+ru.messageTS]
	if !del && text == "" && len(blocks) == 0 {
		return fault{status: http.StatusBadRequest, err: "no_text"}
	}
	ru.uses++
	switch {
	case del && src != nil:
		src.Deleted = true
	case replace && src != nil:
		src.Text, src.Blocks = text, blocks
		src.Edits++
	case del || replace:
		// Nothing of ours to change (a slash command has no source message).
	default:
		threadTS, _ := body["thread_ts"].(string)
		responseType, _ := body["response_type"].(string)
		s.postResponse(ru.channel, ru.user, threadTS, responseType, text, blocks)
	}
	return fault{status: http.StatusOK}
}

// postResponse stores a message sent as a response to a user's action:
// ephemeral to that user unless response_type is "in_channel". Callers hold s.mu.
func (s *Server) postResponse(channel, user, threadTS, responseType, text string, blocks json.RawMessage) {
	m := &Message{Channel: channel, ThreadTS: threadTS, Text: text, Blocks: blocks, User: BotUserID, TS: s.nextTS()}
	if responseType != "in_channel" {
		m.Ephemeral, m.EphemeralUser = true, user
	}
	s.store(m)
}
