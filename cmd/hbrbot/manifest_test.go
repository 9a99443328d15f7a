package main

import (
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/hbrbot/hbrbot"
	"github.com/hbrbot/hbrbot/bot"
)

// slackMethods are the Slack methods the bot calls, each with the bot
// scopes it needs (any one of a list of alternatives: the public and the
// private channel kind). Add a method here, with its scopes in
// slack-app-manifest.yaml, when the bot starts calling it.
var slackMethods = map[string][]string{
	"chat.postMessage":             {"chat:write"},
	"chat.update":                  {"chat:write"},
	"chat.postEphemeral":           {"chat:write"},
	"chat.getPermalink":            nil,
	"conversations.replies":        {"channels:history", "groups:history"},
	"usergroups.users.list":        {"usergroups:read"},
	"files.getUploadURLExternal":   {"files:write"},
	"files.completeUploadExternal": {"files:write"},
	"auth.test":                    nil,
	"users.info":                   {"users:read"},
	"conversations.info":           {"channels:read", "groups:read"},
	// The app-level token's connections:write, not a bot scope.
	"apps.connections.open": nil,
}

// notMethods are what slacktest records besides Web API methods: posts to
// an interaction's response_url and a file's bytes to its upload URL, which
// need no scope of their own.
var notMethods = []string{"response_url", "upload_url"}

type slashCommand struct {
	Command string `yaml:"command"`
}

// manifest is the part of slack-app-manifest.yaml the bot depends on.
type manifest struct {
	Features struct {
		SlashCommands []slashCommand `yaml:"slash_commands"`
	} `yaml:"features"`
	OAuthConfig struct {
		Scopes struct {
			Bot []string `yaml:"bot"`
		} `yaml:"scopes"`
	} `yaml:"oauth_config"`
	Settings struct {
		Interactivity struct {
			IsEnabled bool `yaml:"is_enabled"`
		} `yaml:"interactivity"`
		SocketModeEnabled bool `yaml:"socket_mode_enabled"`
	} `yaml:"settings"`
}

func readManifest(t *testing.T) manifest {
	t.Helper()
	raw, err := os.ReadFile("../../slack-app-manifest.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var m manifest
	if err := yaml.Unmarshal(raw, &m); err != nil {
		t.Fatalf("slack-app-manifest.yaml: %v", err)
	}
	return m
}

// scopeProblems compares the methods' scopes with the manifest's bot
// scopes: a method none of whose scopes the app has, and a scope that no
// method (nor the slash command, "commands") needs.
func scopeProblems(methods map[string][]string, scopes []string) []string {
	var problems []string
	needed := map[string]bool{"commands": true}
	for method, alternatives := range methods {
		for _, s := range alternatives {
			needed[s] = true
			if !slices.Contains(scopes, s) {
				problems = append(problems, fmt.Sprintf("%s needs %s, which the manifest lacks", method, s))
			}
		}
	}
	for _, s := range scopes {
		if !needed[s] {
			problems = append(problems, fmt.Sprintf("scope %s is in the manifest, but no method the bot calls needs it", s))
		}
	}
	if slices.Contains(scopes, "connections:write") {
		problems = append(problems, "connections:write is the app-level token's scope, not a bot scope")
	}
	sort.Strings(problems)
	return problems
}

// TestManifestScopes: the app asks for exactly the scopes the bot's calls
// need, and has the slash command, interactivity and Socket Mode on.
func TestManifestScopes(t *testing.T) {
	m := readManifest(t)
	for _, p := range scopeProblems(slackMethods, m.OAuthConfig.Scopes.Bot) {
		t.Error(p)
	}
	if !slices.Contains(m.Features.SlashCommands, slashCommand{Command: bot.Command}) {
		t.Errorf("the manifest has no slash command %s", bot.Command)
	}
	if !m.Settings.Interactivity.IsEnabled {
		t.Error("settings.interactivity.is_enabled is not true: the card's buttons would not work")
	}
	if !m.Settings.SocketModeEnabled {
		t.Error("settings.socket_mode_enabled is not true")
	}
}

// TestScopeProblemsFails keeps the check above honest.
func TestScopeProblemsFails(t *testing.T) {
	got := scopeProblems(map[string][]string{"chat.postMessage": {"chat:write"}}, []string{"commands", "files:write"})
	want := []string{"chat.postMessage needs chat:write, which the manifest lacks", "scope files:write is in the manifest, but no method the bot calls needs it"}
	if !slices.Equal(got, want) {
		t.Errorf("scopeProblems = %q, want %q", got, want)
	}
}

// TestCalledMethodsAreKnown runs a flow that reaches most of the bot's
// Slack calls (a user group approver, a job with a CSV table, status) and
// checks that every method the fake Slack saw is in slackMethods, so a new
// call cannot go without its scope in the manifest.
func TestCalledMethodsAreKnown(t *testing.T) {
	h := newHarness(t, map[string]string{"HBRBOT_APPROVERS": "S0OPS"})
	h.slack.SetUserGroup("S0OPS", approver)
	h.start()
	ids := make([]string, 50) // over 40: the report comes with a CSV table
	for i := range ids {
		ids[i] = fmt.Sprintf("i-%03d", i)
	}
	h.command(requester, strings.Join(ids, " "))
	card := h.awaitCard(1)
	h.awaitAudit(hbrbot.AuditRequestPosted, requestID(t, card)) // the card's ts is recorded
	h.command(approver, "status")
	h.awaitTold(approver, "/archives/"+channel+"/p") // chat.getPermalink
	h.click(approver, card, "hbr_upgrade_approve")
	h.awaitReports(card, "final", 1)
	h.awaitUnscheduled()

	called := h.slack.Methods()
	for _, m := range called {
		if _, ok := slackMethods[m]; !ok && !slices.Contains(notMethods, m) {
			t.Errorf("the bot calls %s, which slackMethods (and so the manifest check) does not know: add it with its scopes", m)
		}
	}
	for _, m := range []string{"auth.test", "apps.connections.open", "chat.postMessage", "chat.update", "usergroups.users.list", "chat.getPermalink", "files.completeUploadExternal"} {
		if !slices.Contains(called, m) {
			t.Errorf("the flow never called %s (called %q): it covers less than it claims", m, called)
		}
	}
}
