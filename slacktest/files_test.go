package slacktest_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/hbrbot/hbrbot/slacktest"
)

// TestUploadFile drives slack-go's three-step upload end to end.
func TestUploadFile(t *testing.T) {
	binary := make([]byte, 256)
	for i := range binary {
		binary[i] = byte(i)
	}
	tests := []struct {
		name string
		// thread: "" (no thread), "parent", "reply" (a reply's ts) or
		// "unknown" (a ts that is no message).
		thread       string
		params       slack.UploadFileParameters // Reader and FileSize are set from content unless Content is set
		content      []byte
		wantTitle    string
		wantChannel  string
		wantThreaded bool
	}{
		{
			name:   "thread with initial comment",
			thread: "parent",
			params: slack.UploadFileParameters{Channel: "C1", Filename: "report.csv", Title: "Upgrade report",
				InitialComment: "Full report attached", AltTxt: "csv", SnippetType: "csv"},
			content:   []byte("instance,status\ni-1,ACTIVATED\n"),
			wantTitle: "Upgrade report", wantChannel: "C1", wantThreaded: true,
		},
		{
			name:      "channel, no title, no comment",
			params:    slack.UploadFileParameters{Channel: "C2", Filename: "blob.bin"},
			content:   binary,
			wantTitle: "blob.bin", wantChannel: "C2",
		},
		{
			name:      "a reply's ts lands in the parent's thread",
			thread:    "reply",
			params:    slack.UploadFileParameters{Channel: "C1", Filename: "a.txt", InitialComment: "x"},
			content:   []byte("hello"),
			wantTitle: "a.txt", wantChannel: "C1", wantThreaded: true,
		},
		{
			name:      "unknown thread_ts posts unthreaded",
			thread:    "unknown",
			params:    slack.UploadFileParameters{Channel: "C1", Filename: "a.txt"},
			content:   []byte("hello"),
			wantTitle: "a.txt", wantChannel: "C1",
		},
		{
			name:      "Content instead of Reader",
			params:    slack.UploadFileParameters{Channel: "C3", Filename: "c.txt", Content: "from a string", FileSize: 13},
			content:   []byte("from a string"),
			wantTitle: "c.txt", wantChannel: "C3",
		},
		{
			name:      "no channel: private, no message",
			params:    slack.UploadFileParameters{Filename: "p.txt", Title: "private"},
			content:   []byte("secret"),
			wantTitle: "private",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t)
			api := newAPI(srv, "xapp-test")
			ctx := waitCtx(t)

			_, parent, err := api.PostMessageContext(ctx, "C1", slack.MsgOptionText("Upgrade started", false))
			if err != nil {
				t.Fatal(err)
			}
			_, reply, err := api.PostMessageContext(ctx, "C1", slack.MsgOptionText("progress", false), slack.MsgOptionTS(parent))
			if err != nil {
				t.Fatal(err)
			}
			p := tt.params
			switch tt.thread {
			case "parent":
				p.ThreadTimestamp = parent
			case "reply":
				p.ThreadTimestamp = reply
			case "unknown":
				p.ThreadTimestamp = "1600000000.000000"
			}
			if p.Content == "" {
				p.Reader, p.FileSize = bytes.NewReader(tt.content), len(tt.content)
			}

			sum, err := api.UploadFileContext(ctx, p)
			if err != nil {
				t.Fatalf("UploadFileContext: %v", err)
			}
			if !strings.HasPrefix(sum.ID, "F") || sum.Title != tt.wantTitle {
				t.Errorf("summary = %+v, want an F… ID titled %q", sum, tt.wantTitle)
			}

			files := srv.Files()
			if len(files) != 1 {
				t.Fatalf("Files() = %+v, want 1", files)
			}
			f := files[0]
			wantThread := ""
			if tt.wantThreaded {
				wantThread = parent
			}
			if f.ID != sum.ID || f.Name != p.Filename || f.Title != tt.wantTitle || f.Channel != tt.wantChannel ||
				f.ThreadTS != wantThread || !f.Complete || !bytes.Equal(f.Content, tt.content) {
				t.Errorf("file = %+v (%q), want %s %q in %q/%q with %q", f, f.Content, sum.ID, tt.wantTitle,
					tt.wantChannel, wantThread, tt.content)
			}

			// The wire, step by step.
			get := srv.Calls("files.getUploadURLExternal")
			if len(get) != 1 || get[0].Form.Get("filename") != p.Filename || get[0].Form.Get("length") != strconv.Itoa(len(tt.content)) ||
				get[0].Form.Get("alt_txt") != p.AltTxt || get[0].Form.Get("snippet_type") != p.SnippetType || get[0].Token != "xoxb-test" {
				t.Errorf("getUploadURLExternal calls = %+v", get)
			}
			up := srv.Calls("upload_url")
			if len(up) != 1 || up[0].Status != http.StatusOK || up[0].Token != "xoxb-test" || len(up[0].Form) != 0 {
				t.Errorf("upload calls = %+v", up)
			}
			done := srv.Calls("files.completeUploadExternal")
			if len(done) != 1 {
				t.Fatalf("completeUploadExternal calls = %+v", done)
			}
			form := done[0].Form
			var sent []map[string]string
			if err := json.Unmarshal([]byte(form.Get("files")), &sent); err != nil || len(sent) != 1 ||
				sent[0]["id"] != sum.ID || sent[0]["title"] != p.Title {
				t.Errorf("files = %q (%v)", form.Get("files"), err)
			}
			if form.Get("channel_id") != p.Channel || form.Get("thread_ts") != p.ThreadTimestamp || form.Get("initial_comment") != p.InitialComment {
				t.Errorf("complete form = %v", form)
			}

			// The share is a message carrying the file.
			var shares []slacktest.Message
			for _, ch := range []string{"C1", "C2", "C3"} {
				for _, m := range srv.Messages(ch) {
					if len(m.Files) > 0 {
						shares = append(shares, m)
					}
				}
			}
			if tt.wantChannel == "" {
				if len(shares) != 0 {
					t.Errorf("private file shared: %+v", shares)
				}
				return
			}
			if len(shares) != 1 {
				t.Fatalf("shares = %+v, want 1", shares)
			}
			m := shares[0]
			if m.Channel != tt.wantChannel || m.ThreadTS != wantThread || m.Text != p.InitialComment ||
				m.User != slacktest.BotUserID || len(m.Files) != 1 || m.Files[0] != sum.ID {
				t.Errorf("share = %+v", m)
			}
			if !tt.wantThreaded {
				return
			}
			if th := srv.Thread("C1", parent); len(th) != 2 || th[1].TS != m.TS {
				t.Errorf("thread = %+v, want the reply then the share", th)
			}
			// slack-go reads the share back with its files.
			msgs, _, _, err := api.GetConversationRepliesContext(ctx, &slack.GetConversationRepliesParameters{ChannelID: "C1", Timestamp: parent})
			if err != nil || len(msgs) != 3 {
				t.Fatalf("replies = %d, %v", len(msgs), err)
			}
			got := msgs[2]
			if got.Timestamp != m.TS || got.ThreadTimestamp != parent || len(got.Files) != 1 {
				t.Fatalf("share as read = %+v", got.Msg)
			}
			if gf := got.Files[0]; gf.ID != sum.ID || gf.Name != p.Filename || gf.Title != tt.wantTitle ||
				gf.Size != len(tt.content) || gf.User != slacktest.BotUserID || gf.Created == 0 {
				t.Errorf("file as read = %+v", gf)
			}
		})
	}
}

// TestUploadRawBody: Slack also takes the bytes as a plain body.
func TestUploadRawBody(t *testing.T) {
	srv := newServer(t)
	api := newAPI(srv, "xapp-test")
	ctx := waitCtx(t)
	content := []byte("raw bytes, no multipart")

	u, err := api.GetUploadURLExternalContext(ctx, slack.GetUploadURLExternalParameters{FileName: "raw.txt", FileSize: len(content)})
	if err != nil {
		t.Fatal(err)
	}
	if want := srv.URL() + "/upload/" + u.FileID; u.UploadURL != want {
		t.Errorf("upload_url = %q, want %q", u.UploadURL, want)
	}
	resp, err := http.Post(u.UploadURL, "application/octet-stream", bytes.NewReader(content))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "OK - 23" || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Errorf("upload answer = %d %q %q", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	c, err := api.CompleteUploadExternalContext(ctx, slack.CompleteUploadExternalParameters{
		Files: []slack.FileSummary{{ID: u.FileID, Title: "Raw"}}, Channel: "C9"})
	if err != nil || len(c.Files) != 1 || c.Files[0].ID != u.FileID || c.Files[0].Title != "Raw" {
		t.Fatalf("complete = %+v, %v", c, err)
	}
	if f := srv.Files(); len(f) != 1 || !bytes.Equal(f[0].Content, content) || f[0].Channel != "C9" {
		t.Errorf("Files() = %+v", f)
	}
	if m := srv.Messages("C9"); len(m) != 1 || len(m[0].Files) != 1 || m[0].Files[0] != u.FileID || m[0].ThreadTS != "" {
		t.Errorf("C9 = %+v", m)
	}
}

func TestUploadErrors(t *testing.T) {
	postForm := func(t *testing.T, srv *slacktest.Server, method string, form url.Values) string {
		t.Helper()
		form.Set("token", "xoxb-test")
		resp, err := http.PostForm(srv.APIURL()+method, form)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body struct {
			OK    bool   `json:"ok"`
			Error string `json:"error"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || resp.StatusCode != http.StatusOK || body.OK != (body.Error == "") {
			t.Fatalf("%s answered %d %+v %v", method, resp.StatusCode, body, err)
		}
		return body.Error
	}
	tests := []struct {
		name string
		run  func(t *testing.T, srv *slacktest.Server, api *slack.Client) error
		// want is the Slack error; "status:N" for an HTTP status, or
		// "ratelimited:N" for a *slack.RateLimitedError of N seconds.
		want string
		// shared is how many files the run completed and shared before
		// the failure (the failure itself must share nothing).
		shared int
	}{
		{"more bytes than declared", func(t *testing.T, srv *slacktest.Server, api *slack.Client) error {
			return uploadN(t, api, 5, 10)
		}, "file_upload_size_mismatch", 0},
		{"fewer bytes than declared", func(t *testing.T, srv *slacktest.Server, api *slack.Client) error {
			return uploadN(t, api, 10, 5)
		}, "file_upload_size_mismatch", 0},
		{"never uploaded", func(t *testing.T, srv *slacktest.Server, api *slack.Client) error {
			u, err := api.GetUploadURLExternalContext(waitCtx(t), slack.GetUploadURLExternalParameters{FileName: "f", FileSize: 3})
			if err != nil {
				return err
			}
			return complete(t, api, u.FileID)
		}, "file_upload_size_mismatch", 0},
		{"unknown file_id", func(t *testing.T, srv *slacktest.Server, api *slack.Client) error {
			return complete(t, api, "F404")
		}, "file_not_found", 0},
		{"completed twice", func(t *testing.T, srv *slacktest.Server, api *slack.Client) error {
			sum, err := api.UploadFileContext(waitCtx(t), slack.UploadFileParameters{Channel: "C1", Filename: "f",
				FileSize: 1, Reader: strings.NewReader("x")})
			if err != nil {
				t.Fatal(err)
			}
			return complete(t, api, sum.ID)
		}, "file_not_found", 1},
		{"upload to unknown URL", func(t *testing.T, srv *slacktest.Server, api *slack.Client) error {
			return api.UploadToURL(waitCtx(t), slack.UploadToURLParameters{UploadURL: srv.URL() + "/upload/F404",
				Filename: "f", Content: "x"})
		}, "status:404", 0},
		{"upload after completion", func(t *testing.T, srv *slacktest.Server, api *slack.Client) error {
			if err := uploadN(t, api, 1, 1); err != nil {
				t.Fatal(err)
			}
			return api.UploadToURL(waitCtx(t), slack.UploadToURLParameters{UploadURL: srv.URL() + "/upload/" + srv.Files()[0].ID,
				Filename: "f", Content: "x"})
		}, "status:404", 1},
		{"upload with GET", func(t *testing.T, srv *slacktest.Server, api *slack.Client) error {
			u, err := api.GetUploadURLExternalContext(waitCtx(t), slack.GetUploadURLExternalParameters{FileName: "f", FileSize: 1})
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.Get(u.UploadURL)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			return slack.StatusCodeError{Code: resp.StatusCode}
		}, "status:405", 0},
		{"length 0", func(t *testing.T, srv *slacktest.Server, _ *slack.Client) error {
			return errString(postForm(t, srv, "files.getUploadURLExternal", url.Values{"filename": {"f"}, "length": {"0"}}))
		}, "missing_argument", 0},
		{"length not a number", func(t *testing.T, srv *slacktest.Server, _ *slack.Client) error {
			return errString(postForm(t, srv, "files.getUploadURLExternal", url.Values{"filename": {"f"}, "length": {"ten"}}))
		}, "invalid_arguments", 0},
		{"no filename", func(t *testing.T, srv *slacktest.Server, _ *slack.Client) error {
			return errString(postForm(t, srv, "files.getUploadURLExternal", url.Values{"length": {"3"}}))
		}, "invalid_arguments", 0},
		{"files not JSON", func(t *testing.T, srv *slacktest.Server, _ *slack.Client) error {
			return errString(postForm(t, srv, "files.completeUploadExternal", url.Values{"files": {"F1"}}))
		}, "invalid_arguments", 0},
		{"thread_ts with two channels", func(t *testing.T, srv *slacktest.Server, _ *slack.Client) error {
			return errString(postForm(t, srv, "files.completeUploadExternal", url.Values{"files": {`[{"id":"F1"}]`},
				"channels": {"C1,C2"}, "thread_ts": {"1.000000"}}))
		}, "invalid_arguments", 0},
		{"wrong token", func(t *testing.T, srv *slacktest.Server, _ *slack.Client) error {
			_, err := slack.New("xoxb-wrong", slack.OptionAPIURL(srv.APIURL())).GetUploadURLExternalContext(waitCtx(t),
				slack.GetUploadURLExternalParameters{FileName: "f", FileSize: 1})
			return err
		}, "invalid_auth", 0},
		{"FailNext getUploadURLExternal", func(t *testing.T, srv *slacktest.Server, api *slack.Client) error {
			srv.FailNext("files.getUploadURLExternal", 1, "file_uploads_disabled")
			return uploadN(t, api, 1, 1)
		}, "file_uploads_disabled", 0},
		{"FailNext completeUploadExternal", func(t *testing.T, srv *slacktest.Server, api *slack.Client) error {
			srv.FailNext("files.completeUploadExternal", 1, "not_in_channel")
			return uploadN(t, api, 1, 1)
		}, "not_in_channel", 0},
		{"FailNext upload_url", func(t *testing.T, srv *slacktest.Server, api *slack.Client) error {
			srv.FailNext("upload_url", 1, "upload_failed")
			return uploadN(t, api, 1, 1)
		}, "status:400", 0},
		{"RateLimit upload_url", func(t *testing.T, srv *slacktest.Server, api *slack.Client) error {
			srv.RateLimit("upload_url", 1, 2*time.Second)
			return uploadN(t, api, 1, 1)
		}, "ratelimited:2", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newServer(t)
			api := newAPI(srv, "xapp-test")
			err := tt.run(t, srv, api)

			var got string
			var sce slack.StatusCodeError
			var rl *slack.RateLimitedError
			switch {
			case errors.As(err, &rl):
				got = "ratelimited:" + strconv.Itoa(int(rl.RetryAfter/time.Second))
			case errors.As(err, &sce):
				got = "status:" + strconv.Itoa(sce.Code)
			default:
				got = slackErr(err)
			}
			if got != tt.want {
				t.Errorf("error = %q (%v), want %q", got, err, tt.want)
			}
			// A failure completes and shares nothing.
			if files := srv.Files(); len(files) != tt.shared {
				t.Errorf("Files() = %+v, want %d", files, tt.shared)
			}
			shares := 0
			for _, m := range srv.Messages("C1") {
				shares += len(m.Files)
			}
			if shares != tt.shared {
				t.Errorf("%d files shared in C1, want %d", shares, tt.shared)
			}
		})
	}
}

// uploadN runs slack-go's whole upload declaring size bytes and sending n.
func uploadN(t *testing.T, api *slack.Client, size, n int) error {
	_, err := api.UploadFileContext(waitCtx(t), slack.UploadFileParameters{Channel: "C1", Filename: "f.txt",
		FileSize: size, Reader: bytes.NewReader(bytes.Repeat([]byte("x"), n))})
	return err
}

func complete(t *testing.T, api *slack.Client, id string) error {
	_, err := api.CompleteUploadExternalContext(waitCtx(t), slack.CompleteUploadExternalParameters{
		Files: []slack.FileSummary{{ID: id}}, Channel: "C1"})
	return err
}

// errString turns a Slack error string into the error slack-go would give.
func errString(e string) error {
	if e == "" {
		return nil
	}
	return slack.SlackErrorResponse{Err: e}
}
