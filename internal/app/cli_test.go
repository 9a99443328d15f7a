package app

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/hbrbot/hbrbot/config"
	"github.com/hbrbot/hbrbot/internal/botproc"
	"github.com/hbrbot/hbrbot/slacktest"
)

func noEnv(string) string { return "" }

// TestCLIHelp: every way of asking for help exits 0 and prints the
// subcommands and every variable with its default and meaning.
func TestCLIHelp(t *testing.T) {
	for _, arg := range []string{"help", "-h", "-help", "--help"} {
		t.Run(arg, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			if err := Run(context.Background(), []string{"hbrbot", arg}, noEnv, &stdout, &stderr); err != nil {
				t.Fatalf("hbrbot %s: %v", arg, err)
			}
			out := stdout.String()
			for _, want := range []string{"hbrbot audit", "hbrbot healthcheck", "hbrbot help", ".env.example"} {
				if !strings.Contains(out, want) {
					t.Errorf("help does not mention %q:\n%s", want, out)
				}
			}
			for _, v := range config.Variables() {
				line := ""
				for _, l := range strings.Split(out, "\n") {
					if f := strings.Fields(l); len(f) > 0 && f[0] == v.Name {
						line = l
					}
				}
				def := v.Default
				if v.Required {
					def = "required"
				}
				if line == "" || !strings.Contains(line, def) || !strings.Contains(line, v.Meaning) {
					t.Errorf("help's line for %s = %q, want its default %q and meaning", v.Name, line, def)
				}
			}
		})
	}
	// A mistyped flag still fails, with the help on stderr.
	var stderr bytes.Buffer
	if err := Run(context.Background(), []string{"hbrbot", "-verison"}, noEnv, &bytes.Buffer{}, &stderr); err == nil || !strings.Contains(stderr.String(), "hbrbot healthcheck") {
		t.Errorf("-verison: err %v, stderr %q", err, stderr.String())
	}
}

func TestBuildVersion(t *testing.T) {
	tests := []struct {
		name     string
		main     string
		settings map[string]string
		want     string
	}{
		{"go install @version", "v1.4.0", nil, "v1.4.0"},
		{"checkout", "(devel)", map[string]string{"vcs.revision": "0123456789abcdef0123", "vcs.time": "2026-11-29T10:00:00Z"}, "dev (revision 0123456789ab, 2026-11-29T10:00:00Z)"},
		{"modified checkout", "", map[string]string{"vcs.revision": "abc", "vcs.modified": "true"}, "dev (revision abc, modified)"},
		{"nothing recorded", "(devel)", nil, "dev"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			info := &debug.BuildInfo{Main: debug.Module{Path: "github.com/hbrbot/hbrbot", Version: tt.main}}
			for k, v := range tt.settings {
				info.Settings = append(info.Settings, debug.BuildSetting{Key: k, Value: v})
			}
			if got := buildVersion(info); got != tt.want {
				t.Errorf("buildVersion = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestHealthcheck(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/healthz":
			fmt.Fprintln(w, "ok")
		case "/readyz":
			http.Error(w, "slack: socket mode not connected", http.StatusServiceUnavailable)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	_, port, _ := strings.Cut(strings.TrimPrefix(srv.URL, "http://"), ":")
	closed := freeAddr(t)
	tests := []struct {
		name, addr string
		args       []string
		wantErr    string
	}{
		{"live", ":" + port, []string{"-live"}, ""},
		{"not ready", "0.0.0.0:" + port, nil, "503"},
		{"nobody listening", closed, nil, "connection refused"},
		{"bad address", "8080", nil, "HBRBOT_HTTP_ADDR"},
		{"stray argument", ":" + port, []string{"now"}, "unexpected"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := func(k string) string {
				if k == "HBRBOT_HTTP_ADDR" {
					return tt.addr
				}
				return ""
			}
			err := Run(context.Background(), append([]string{"hbrbot", "healthcheck"}, tt.args...), env, &bytes.Buffer{}, &bytes.Buffer{})
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("healthcheck: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("healthcheck: %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

// TestRefusedToken: when Slack refuses a token, the error says which one,
// at which method, and where a good one comes from.
func TestRefusedToken(t *testing.T) {
	slk := slacktest.NewServer()
	defer slk.Close()
	tests := []struct {
		name, app, bot string
		want           []string
	}{
		{"bot token", "xapp-test", "xoxb-revoked", []string{"SLACK_BOT_TOKEN", "auth.test", "invalid_auth", "Bot User OAuth Token"}},
		{"app token", "xapp-revoked", "xoxb-test", []string{"SLACK_APP_TOKEN", "apps.connections.open", "invalid_auth", "App-Level Tokens"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			env := map[string]string{
				"SLACK_APP_TOKEN": tt.app, "SLACK_BOT_TOKEN": tt.bot, "SLACK_API_URL": slk.APIURL(),
				"ALIBABA_CLOUD_REGION_ID": "cn-hangzhou", "HBRBOT_HTTP_ADDR": freeAddr(t),
			}
			ctx, cancel := context.WithTimeout(context.Background(), waitFor)
			defer cancel()
			var logs bytes.Buffer
			err := Run(ctx, []string{"hbrbot"}, func(k string) string { return env[k] }, &bytes.Buffer{}, &logs)
			if err == nil {
				t.Fatal("run accepted a refused token")
			}
			for _, want := range tt.want {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not say %q", err, want)
				}
			}
			for _, secret := range []string{tt.app, tt.bot} {
				if strings.Contains(err.Error()+logs.String(), secret) {
					t.Errorf("the token %q leaked: %v\n%s", secret, err, logs.String())
				}
			}
		})
	}
}

// TestLogsReadable: durations are text in every line, whatever logs them.
func TestLogsReadable(t *testing.T) {
	for _, format := range []string{"json", "text"} {
		t.Run(format, func(t *testing.T) {
			var buf bytes.Buffer
			log := newLogger(&buf, config.Config{LogFormat: format, LogLevel: slog.LevelDebug})
			log.Info("waited", "wait", 10*time.Second, slog.Group("poll", "next", 1500*time.Millisecond))
			redisLogger{log}.Printf(context.Background(), "redis: discarding bad conn: %s\n", "EOF")
			stdLogger(log, "slack-go").Printf("debug line")
			out := buf.String()
			for _, want := range []string{"10s", "1.5s", "discarding bad conn: EOF", "go-redis", "slack-go", "debug line"} {
				if !strings.Contains(out, want) {
					t.Errorf("log does not show %q:\n%s", want, out)
				}
			}
			if strings.Contains(out, "10000000000") {
				t.Errorf("a duration in nanoseconds:\n%s", out)
			}
			if format == "json" {
				for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
					if !json.Valid([]byte(line)) {
						t.Errorf("not one format: %q", line)
					}
				}
			}
		})
	}
}

// waitFor bounds the waits of these tests.
const waitFor = 30 * time.Second

func freeAddr(t *testing.T) string {
	t.Helper()
	addr, err := botproc.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}
