package config

import (
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestPlaceholderTokens: the examples' stand-ins are refused at load,
// saying where real tokens come from, and never echoed; real-looking
// tokens pass.
func TestPlaceholderTokens(t *testing.T) {
	tests := []struct {
		name, variable, value string
		refused               bool
	}{
		{".env.example app token", "SLACK_APP_TOKEN", "xapp-...", true},
		{".env.example bot token", "SLACK_BOT_TOKEN", "xoxb-...", true},
		{"ellipsis character", "SLACK_BOT_TOKEN", "xoxb-…", true},
		{"secret example", "SLACK_APP_TOKEN", "xapp-REPLACE-ME", true},
		{"angle brackets", "SLACK_BOT_TOKEN", "xoxb-<your-token>", true},
		{"your token", "SLACK_BOT_TOKEN", "xoxb-your-bot-token", true},
		{"xxxx", "SLACK_BOT_TOKEN", "xoxb-xxxx-xxxx", true},
		{"changeme", "SLACK_APP_TOKEN", "xapp-CHANGEME", true},
		{"real-looking app token", "SLACK_APP_TOKEN", appToken, false},
		{"real-looking bot token", "SLACK_BOT_TOKEN", botToken, false},
		{"the fake Slack's", "SLACK_BOT_TOKEN", "xoxb-test", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(getter(with(map[string]string{tt.variable: tt.value})), "")
			if !tt.refused {
				if err != nil {
					t.Fatalf("refused a real-looking token: %v", err)
				}
				return
			}
			e, ok := err.(*Error)
			if !ok || len(e.Problems) != 1 || e.Problems[0].Var != tt.variable {
				t.Fatalf("want one problem naming %s, got %v", tt.variable, err)
			}
			reason := e.Problems[0].Reason
			for _, want := range []string{"placeholder", "slack-app-manifest.yaml", `README "Slack app"`} {
				if !strings.Contains(reason, want) {
					t.Errorf("reason %q does not say %q", reason, want)
				}
			}
			if strings.Contains(e.Error(), tt.value) {
				t.Errorf("the value is echoed: %s", e)
			}
		})
	}
}

// TestEnvExample: the example file names only variables Load reads, says
// what each line is for, leaves REDIS_URL commented out (the embedded
// store applies), and as copied, unedited, is refused for its placeholder
// tokens, naming where real ones come from.
func TestEnvExample(t *testing.T) {
	raw, err := os.ReadFile("../.env.example")
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	for _, v := range Variables() {
		known[v.Name] = true
	}
	assignment := regexp.MustCompile(`^#?\s*([A-Z][A-Z0-9_]*)=`)
	lines := strings.Split(string(raw), "\n")
	for i, line := range lines {
		m := assignment.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		if !known[m[1]] {
			t.Errorf(".env.example:%d: %s is not a variable Load reads", i+1, m[1])
		}
		if m[1] == "REDIS_URL" && !strings.HasPrefix(line, "#") {
			t.Errorf(".env.example:%d: REDIS_URL is set; leave it commented out so the embedded store applies on a first run", i+1)
		}
		// A comment line above it, or above the group of lines it ends.
		j := i - 1
		for j >= 0 && assignment.MatchString(lines[j]) {
			j--
		}
		if j < 0 || !strings.HasPrefix(lines[j], "#") {
			t.Errorf(".env.example:%d: %s has no comment line above it saying what it is for", i+1, m[1])
		}
	}

	dir := t.TempDir()
	if err := os.WriteFile(dir+"/.env", raw, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load(func(string) string { return "" }, dir+"/.env")
	e, ok := err.(*Error)
	if !ok {
		t.Fatalf("the unedited .env.example loads: %v", err)
	}
	if got := e.Vars(); len(got) != 2 || got[0] != "SLACK_APP_TOKEN" || got[1] != "SLACK_BOT_TOKEN" {
		t.Errorf("unedited .env.example: problems with %v, want only the two tokens:\n%v", got, e)
	}
	if !strings.Contains(e.Error(), "placeholder") {
		t.Errorf("unedited .env.example: the error does not say the tokens are placeholders:\n%v", e)
	}
}

// TestReadmeNamesTheSections: the messages above send people to README
// sections; those sections exist.
func TestReadmeNamesTheSections(t *testing.T) {
	raw, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	quoted := regexp.MustCompile(`README "([^"]+)"`)
	var named []string
	for _, name := range []string{varSlackAppToken, varSlackBotToken, "other"} {
		for _, m := range quoted.FindAllStringSubmatch(TokenSource(name), -1) {
			named = append(named, m[1])
		}
	}
	for _, m := range quoted.FindAllStringSubmatch(Hint, -1) {
		named = append(named, m[1])
	}
	if len(named) == 0 {
		t.Fatal("no README section named: the check proves nothing")
	}
	for _, section := range named {
		if !regexp.MustCompile(`(?m)^#+ ` + regexp.QuoteMeta(section) + `$`).Match(raw) {
			t.Errorf("README.md has no section %q", section)
		}
	}
}

func TestLoadHTTPAddr(t *testing.T) {
	tests := []struct {
		name, value, want string
		bad               bool
	}{
		{"default", "", ":8080", false},
		{"set", "127.0.0.1:9000", "127.0.0.1:9000", false},
		{"bad", "9000", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Nothing else is needed: no token, no region.
			got, err := LoadHTTPAddr(getter(map[string]string{"HBRBOT_HTTP_ADDR": tt.value}), "")
			if (err != nil) != tt.bad || got != tt.want {
				t.Errorf("LoadHTTPAddr = %q, %v; want %q (error %v)", got, err, tt.want, tt.bad)
			}
		})
	}
}
