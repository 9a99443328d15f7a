package config_test

import (
	"fmt"

	"github.com/hbrbot/hbrbot/config"
)

func ExampleLoad() {
	env := map[string]string{
		"SLACK_BOT_TOKEN":      "xoxp-not-a-bot-token",
		"HBRBOT_POLL_INTERVAL": "10",
	}
	_, err := config.Load(func(k string) string { return env[k] }, "")
	fmt.Println(err)
	// Output:
	// invalid configuration:
	//   SLACK_APP_TOKEN: required
	//   SLACK_BOT_TOKEN: must be a bot token starting with "xoxb-"
	//   ALIBABA_CLOUD_REGION_ID: required
	//   HBRBOT_POLL_INTERVAL: "10" is not a duration (e.g. 10s)
}
