package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestConfigErrors: a bad configuration stops the bot before it connects,
// naming every bad variable and no secret.
func TestConfigErrors(t *testing.T) {
	env := map[string]string{
		"SLACK_BOT_TOKEN":                 "xoxb-secret-value",
		"ALIBABA_CLOUD_ACCESS_KEY_ID":     "testid",
		"ALIBABA_CLOUD_ACCESS_KEY_SECRET": "very-secret-key",
		"HBRBOT_POLL_INTERVAL":            "often",
		"HBRBOT_APPROVERS":                "bob",
	}
	var stderr bytes.Buffer
	err := run(context.Background(), []string{"hbrbot"}, func(k string) string { return env[k] }, &bytes.Buffer{}, &stderr)
	if err == nil {
		t.Fatal("run accepted a bad configuration")
	}
	for _, want := range []string{"SLACK_APP_TOKEN", "ALIBABA_CLOUD_REGION_ID", "HBRBOT_POLL_INTERVAL", "HBRBOT_APPROVERS"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %s:\n%v", want, err)
		}
	}
	for _, secret := range []string{"xoxb-secret-value", "very-secret-key"} {
		if strings.Contains(err.Error()+stderr.String(), secret) {
			t.Errorf("a secret leaked: %v %s", err, stderr.String())
		}
	}
}

func TestVersion(t *testing.T) {
	var stdout bytes.Buffer
	if err := run(context.Background(), []string{"hbrbot", "-version"}, func(string) string { return "" }, &stdout, &bytes.Buffer{}); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(stdout.String(), "hbrbot ") {
		t.Errorf("version output %q", stdout.String())
	}
}
