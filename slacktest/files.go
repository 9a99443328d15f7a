package slacktest

// File uploads, the way slack-go v0.35.0's UploadFileContext does them
// (Slack's "external" upload flow, the only one left since files.upload was
// retired):
//
//  1. files.getUploadURLExternal: an ordinary form-encoded Web API call with
//     token, filename, length and optionally alt_txt and snippet_type.
//     Answer {"ok":true,"upload_url":..,"file_id":"F.."}.
//  2. POST to upload_url. slack-go sends multipart/form-data with a single
//     part named "file" (filename= the file's name) and an
//     "Authorization: Bearer <token>" header, and reads nothing of the
//     answer but its status (200 = done). It only sends the token to an
//     https Slack host or to the host of OptionAPIURL, so the upload URL
//     here lives on the fake's own host. Slack's documentation also allows
//     the raw bytes as the body; the fake takes both. Slack answers
//     200 "OK - <bytes>" as text/plain.
//  3. files.completeUploadExternal: form-encoded, files=[{"id","title"}] as
//     a JSON string, and channel_id (or channels, comma-separated),
//     thread_ts, initial_comment, blocks (only without initial_comment).
//     Answer {"ok":true,"files":[{"id","title",..}]}: slack-go fails unless
//     exactly one file comes back.
//
// Sharing: with a channel, Slack posts a message in that channel, or in the
// thread of thread_ts, whose text is initial_comment and which carries the
// file in its "files" array; conversations.replies returns it like any
// other message. Real Slack shares asynchronously, so the message may show
// up a moment after completeUploadExternal returns; the fake shares before
// answering. Without a channel the file stays private and no message is
// posted. thread_ts behaves as in chat.postMessage: a reply's ts lands in
// its parent's thread and an unknown ts posts unthreaded.
//
// Fake's choices where Slack documents nothing:
//   - completeUploadExternal fails with "file_not_found" for an unknown
//     file ID, one already completed (Slack: "can only be called once") or
//     one named twice, and with "file_upload_size_mismatch" when the bytes
//     uploaded (none if the upload never happened) differ from
//     getUploadURLExternal's length.
//     Either error completes nothing of the call.
//   - getUploadURLExternal: no filename, or a length that is not an
//     integer, is "invalid_arguments"; a length of 0 or less is
//     "missing_argument" (Slack's documented error for length 0).
//   - The upload URL does not check the token (Slack's are pre-signed) but
//     records it. An unknown or completed file ID answers 404
//     "file_not_found", a body over MaxUploadSize 413; uploading again
//     before completion replaces the bytes.
//   - Uploads are recorded as calls of method "upload_url"; RateLimit and
//     FailNext work on it as on "response_url" (FailNext answers HTTP 400).

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"mime/multipart"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// MaxUploadSize is the largest upload body the fake accepts (Slack's limit
// is 1 GB; tests have no need for more than this).
const MaxUploadSize = 64 << 20

// File is an uploaded file.
type File struct {
	ID, Name, Title string
	// Channel and ThreadTS say where the file was shared (the first
	// channel, if several); both are "" for a private file.
	Channel, ThreadTS string
	Content           []byte
	Complete          bool // files.completeUploadExternal succeeded
}

// upload is a file from getUploadURLExternal on.
type upload struct {
	File
	length   int // declared by getUploadURLExternal
	uploaded bool
	created  time.Time
}

// fileStore is the Server's file state. Callers hold s.mu.
type fileStore struct {
	seq  int
	byID map[string]*upload
	done []*upload // completed, in completion order
}

// Files returns the completed uploads in completion order.
func (s *Server) Files() []File {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]File, 0, len(s.files.done))
	for _, u := range s.files.done {
		f := u.File
		f.Content = bytes.Clone(u.Content)
		out = append(out, f)
	}
	return out
}

func (s *Server) filesGetUploadURLExternal(r *http.Request) (obj, string) {
	name, rawLen := r.Form.Get("filename"), r.Form.Get("length")
	length, err := strconv.Atoi(rawLen)
	switch {
	case name == "" || err != nil:
		return nil, "invalid_arguments"
	case length <= 0:
		return nil, "missing_argument"
	}
	if s.files.byID == nil {
		s.files.byID = map[string]*upload{}
	}
	s.files.seq++
	id := fmt.Sprintf("F%08d", s.files.seq)
	s.files.byID[id] = &upload{File: File{ID: id, Name: name}, length: length, created: time.Now()}
	return obj{"upload_url": s.base + "/upload/" + id, "file_id": id}, ""
}

func (s *Server) filesCompleteUploadExternal(r *http.Request) (obj, string) {
	var req []struct {
		ID    string `json:"id"`
		Title string `json:"title"`
	}
	if err := json.Unmarshal([]byte(r.Form.Get("files")), &req); err != nil || len(req) == 0 {
		return nil, "invalid_arguments"
	}
	var channels []string
	if ch := r.Form.Get("channel_id"); ch != "" {
		channels = append(channels, ch)
	}
	for _, ch := range strings.Split(r.Form.Get("channels"), ",") {
		if ch = strings.TrimSpace(ch); ch != "" && !contains(channels, ch) {
			channels = append(channels, ch)
		}
	}
	parent := r.Form.Get("thread_ts")
	if parent != "" && len(channels) > 1 {
		return nil, "invalid_arguments" // "provide only one channel when using thread_ts"
	}
	comment := r.Form.Get("initial_comment")
	var blocks json.RawMessage
	if raw, ok := r.Form["blocks"]; ok && comment == "" {
		b, e := normalizeBlocks(raw[0])
		if e != "" {
			return nil, e
		}
		blocks = b
	}

	// Check every file before changing anything.
	ups := make([]*upload, len(req))
	ids := make([]string, len(req))
	for i, f := range req {
		u, ok := s.files.byID[f.ID]
		if !ok || u.Complete || contains(ids[:i], f.ID) {
			return nil, "file_not_found"
		}
		if !u.uploaded || len(u.Content) != u.length {
			return nil, "file_upload_size_mismatch"
		}
		ups[i], ids[i] = u, f.ID
	}

	answer := make([]obj, 0, len(ups))
	for i, u := range ups {
		u.Complete, u.Title = true, req[i].Title
		if u.Title == "" {
			u.Title = u.Name // Slack titles an untitled file with its name
		}
		s.files.done = append(s.files.done, u)
		answer = append(answer, s.wireFile(u))
	}
	for i, ch := range channels {
		m := &Message{Channel: ch, Text: comment, Blocks: blocks, User: BotUserID, Files: append([]string(nil), ids...)}
		if p, ok := s.byKey[ch+"/"+parent]; parent != "" && ok && !p.Ephemeral && !p.Deleted {
			m.ThreadTS = parent
			if p.ThreadTS != "" {
				m.ThreadTS = p.ThreadTS // a reply's ts lands in its parent's thread
			}
		}
		m.TS = s.nextTS()
		s.store(m)
		if i == 0 {
			for _, u := range ups {
				u.Channel, u.ThreadTS = ch, m.ThreadTS
			}
		}
	}
	return obj{"files": answer}, ""
}

// wireFile renders u the way the Web API returns files. Callers hold s.mu.
func (s *Server) wireFile(u *upload) obj {
	mt := mime.TypeByExtension(fileExt(u.Name))
	if mt == "" {
		mt = "application/octet-stream"
	}
	mt, _, _ = strings.Cut(mt, ";")
	return obj{"id": u.ID, "created": u.created.Unix(), "timestamp": u.created.Unix(), "name": u.Name,
		"title": u.Title, "mimetype": mt, "filetype": strings.TrimPrefix(fileExt(u.Name), "."),
		"user": BotUserID, "size": len(u.Content), "mode": "hosted", "is_external": false}
}

// wireFiles renders the files of a message. Callers hold s.mu.
func (s *Server) wireFiles(ids []string) []obj {
	out := make([]obj, 0, len(ids))
	for _, id := range ids {
		if u, ok := s.files.byID[id]; ok {
			out = append(out, s.wireFile(u))
		}
	}
	return out
}

func fileExt(name string) string {
	if i := strings.LastIndexByte(name, '.'); i >= 0 {
		return name[i:]
	}
	return ""
}

// handleUpload receives the bytes of a file at its upload URL.
func (s *Server) handleUpload(w http.ResponseWriter, r *http.Request) {
	id := strings.TrimPrefix(r.URL.Path, "/upload/")
	call := Call{Method: "upload_url", Form: url.Values{}, Token: bearer(r), At: time.Now(), Status: http.StatusOK}
	content, err := readUpload(w, r, call.Form)

	s.await(call.Method)
	s.mu.Lock()
	f := s.serveUpload(r, id, content, err)
	call.Status, call.Error = f.status, f.err
	s.record(call)
	s.mu.Unlock()

	if f.status == http.StatusTooManyRequests {
		w.Header().Set("Retry-After", strconv.Itoa(max(int(math.Ceil(f.retryAfter.Seconds())), 1)))
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(f.status)
	if f.err != "" {
		_, _ = io.WriteString(w, f.err)
		return
	}
	_, _ = fmt.Fprintf(w, "OK - %d", len(content))
}

// serveUpload stores content as the bytes of file id. Callers hold s.mu.
func (s *Server) serveUpload(r *http.Request, id string, content []byte, readErr error) fault {
	u, ok := s.files.byID[id]
	var tooBig *http.MaxBytesError
	switch {
	case r.Method != http.MethodPost:
		return fault{status: http.StatusMethodNotAllowed, err: "method_not_allowed"}
	case !ok || u.Complete:
		return fault{status: http.StatusNotFound, err: "file_not_found"}
	case errors.As(readErr, &tooBig):
		return fault{status: http.StatusRequestEntityTooLarge, err: "file_too_large"}
	case readErr != nil:
		return fault{status: http.StatusBadRequest, err: "invalid_upload"}
	}
	if f, hit := s.takeFault("upload_url"); hit {
		if f.status == http.StatusOK {
			f.status = http.StatusBadRequest
		}
		return f
	}
	u.Content, u.uploaded = content, true
	return fault{status: http.StatusOK}
}

// readUpload returns the file bytes of an upload body: the first part that
// has a filename (else one named "file" or "filename") of a multipart body,
// or the raw body. Other form fields go to form.
func readUpload(w http.ResponseWriter, r *http.Request, form url.Values) ([]byte, error) {
	body := http.MaxBytesReader(w, r.Body, MaxUploadSize)
	mt, params, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "multipart/form-data" {
		return io.ReadAll(body)
	}
	mr := multipart.NewReader(body, params["boundary"])
	var content, named []byte
	var haveContent, haveNamed bool
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		b, err := io.ReadAll(p)
		if err != nil {
			return nil, err
		}
		switch {
		case p.FileName() != "" && !haveContent:
			content, haveContent = b, true
		case (p.FormName() == "file" || p.FormName() == "filename") && !haveNamed:
			named, haveNamed = b, true
		default:
			form.Add(p.FormName(), string(b))
		}
	}
	if !haveContent {
		content = named
	}
	if content == nil {
		content = []byte{}
	}
	return content, nil
}
