package config

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

const (
	appToken = "xapp-1-A0123-4567-APPSECRETVALUE"
	botToken = "xoxb-1234-5678-BOTSECRETVALUE"
)

// base is the smallest valid environment.
func base() map[string]string {
	return map[string]string{
		"SLACK_APP_TOKEN":         appToken,
		"SLACK_BOT_TOKEN":         botToken,
		"ALIBABA_CLOUD_REGION_ID": "cn-hangzhou",
	}
}

// unset in an overrides map deletes the variable from base.
const unset = "\x00unset"

func with(overrides map[string]string) map[string]string {
	m := base()
	for k, v := range overrides {
		if v == unset {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	return m
}

func getter(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func mustLoad(t *testing.T, m map[string]string) Config {
	t.Helper()
	c, err := Load(getter(m), "")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return c
}

func loadErr(t *testing.T, m map[string]string, envFile string) *Error {
	t.Helper()
	c, err := Load(getter(m), envFile)
	if err == nil {
		t.Fatalf("Load succeeded: %+v", c)
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("error %T %v is not *Error", err, err)
	}
	if !reflect.DeepEqual(c, Config{}) {
		t.Errorf("Config with error is not zero: %+v", c)
	}
	return e
}

func TestDefaults(t *testing.T) {
	c := mustLoad(t, base())
	if c.SlackAppToken != appToken || c.SlackBotToken != botToken {
		t.Errorf("tokens = %q, %q", c.SlackAppToken, c.SlackBotToken)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"SlackAPIURL", c.SlackAPIURL, "https://slack.com/api/"},
		{"AccessKeyID", c.AccessKeyID, ""},
		{"AccessKeySecret", c.AccessKeySecret, ""},
		{"SecurityToken", c.SecurityToken, ""},
		{"Region", c.Region, "cn-hangzhou"},
		{"HBREndpoint", c.HBREndpoint.String(), "https://hbr.cn-hangzhou.aliyuncs.com"},
		{"RedisURL", c.RedisURL, ""},
		{"PollInterval", c.PollInterval, 10 * time.Second},
		{"TaskTimeout", c.TaskTimeout, 20 * time.Minute},
		{"RequestTTL", c.RequestTTL, time.Hour},
		{"Approvers", len(c.Approvers), 0},
		{"AllowSelfApproval", c.AllowSelfApproval, false},
		{"AllowedChannels", len(c.AllowedChannels), 0},
		{"MaxTargets", c.MaxTargets, 500},
		{"HTTPAddr", c.HTTPAddr, ":8080"},
	}
	for _, ch := range checks {
		if !reflect.DeepEqual(ch.got, ch.want) {
			t.Errorf("%s = %#v, want %#v", ch.name, ch.got, ch.want)
		}
	}
}

func TestHBREndpointDefaultFollowsRegion(t *testing.T) {
	for _, region := range []string{"cn-shanghai", "ap-southeast-1", "cn-shanghai-finance-1"} {
		c := mustLoad(t, with(map[string]string{"ALIBABA_CLOUD_REGION_ID": region}))
		if got, want := c.HBREndpoint.String(), "https://hbr."+region+".aliyuncs.com"; got != want {
			t.Errorf("region %s: endpoint %s, want %s", region, got, want)
		}
	}
}

func TestValid(t *testing.T) {
	tests := []struct {
		name  string
		env   map[string]string
		check func(Config) error
	}{
		{"app token trimmed", map[string]string{"SLACK_APP_TOKEN": "  " + appToken + "\n"}, func(c Config) error {
			return eq(c.SlackAppToken, appToken)
		}},
		{"bot token", map[string]string{"SLACK_BOT_TOKEN": "xoxb-other"}, func(c Config) error {
			return eq(c.SlackBotToken, "xoxb-other")
		}},
		{"api url gets slash", map[string]string{"SLACK_API_URL": "http://127.0.0.1:9999/api"}, func(c Config) error {
			return eq(c.SlackAPIURL, "http://127.0.0.1:9999/api/")
		}},
		{"api url keeps slash", map[string]string{"SLACK_API_URL": "https://slack.example.com/api/"}, func(c Config) error {
			return eq(c.SlackAPIURL, "https://slack.example.com/api/")
		}},
		{"api url no path", map[string]string{"SLACK_API_URL": "http://localhost:8081"}, func(c Config) error {
			return eq(c.SlackAPIURL, "http://localhost:8081/")
		}},
		{"api url upper-case scheme", map[string]string{"SLACK_API_URL": "HTTPS://slack.com/api"}, func(c Config) error {
			return eq(c.SlackAPIURL, "https://slack.com/api/")
		}},
		{"key pair", map[string]string{"ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAI5tExample", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "s3cr3t"}, func(c Config) error {
			return errors.Join(eq(c.AccessKeyID, "LTAI5tExample"), eq(c.AccessKeySecret, "s3cr3t"), eq(c.SecurityToken, ""))
		}},
		{"key pair and token", map[string]string{"ALIBABA_CLOUD_ACCESS_KEY_ID": "STS.id", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "s3cr3t", "ALIBABA_CLOUD_SECURITY_TOKEN": "tok"}, func(c Config) error {
			return errors.Join(eq(c.AccessKeyID, "STS.id"), eq(c.AccessKeySecret, "s3cr3t"), eq(c.SecurityToken, "tok"))
		}},
		{"region", map[string]string{"ALIBABA_CLOUD_REGION_ID": "us-west-1"}, func(c Config) error {
			return eq(c.Region, "us-west-1")
		}},
		{"endpoint", map[string]string{"HBR_ENDPOINT": "http://127.0.0.1:18080"}, func(c Config) error {
			return eq(c.HBREndpoint.String(), "http://127.0.0.1:18080")
		}},
		{"endpoint slash dropped", map[string]string{"HBR_ENDPOINT": "https://hbr-vpc.cn-hangzhou.aliyuncs.com/"}, func(c Config) error {
			return eq(c.HBREndpoint.String(), "https://hbr-vpc.cn-hangzhou.aliyuncs.com")
		}},
		{"endpoint ipv6", map[string]string{"HBR_ENDPOINT": "http://[::1]:8080"}, func(c Config) error {
			return eq(c.HBREndpoint.Host, "[::1]:8080")
		}},
		{"redis", map[string]string{"REDIS_URL": "redis://localhost:6379/0"}, func(c Config) error {
			return eq(c.RedisURL, "redis://localhost:6379/0")
		}},
		{"rediss with password", map[string]string{"REDIS_URL": "rediss://user:pass@redis.example.com:6380/2"}, func(c Config) error {
			return eq(c.RedisURL, "rediss://user:pass@redis.example.com:6380/2")
		}},
		{"poll interval", map[string]string{"HBRBOT_POLL_INTERVAL": "250ms"}, func(c Config) error {
			return eq(c.PollInterval, 250*time.Millisecond)
		}},
		{"poll interval minimum", map[string]string{"HBRBOT_POLL_INTERVAL": "100ms"}, func(c Config) error {
			return eq(c.PollInterval, 100*time.Millisecond)
		}},
		{"task timeout", map[string]string{"HBRBOT_TASK_TIMEOUT": "1h30m"}, func(c Config) error {
			return eq(c.TaskTimeout, 90*time.Minute)
		}},
		{"request ttl", map[string]string{"HBRBOT_REQUEST_TTL": "15m"}, func(c Config) error {
			return eq(c.RequestTTL, 15*time.Minute)
		}},
		{"redis sentinel", map[string]string{"REDIS_MODE": "sentinel", "REDIS_URL": "redis://:pw@10.0.0.1:26379/2?master_name=mymaster&addr=10.0.0.2:26379"}, func(c Config) error {
			return eq(c.RedisMode, "sentinel")
		}},
		{"redis cluster", map[string]string{"REDIS_MODE": "cluster", "REDIS_URL": "redis://10.0.0.1:7000?addr=10.0.0.2:7000"}, func(c Config) error {
			return eq(c.RedisMode, "cluster")
		}},
		{"poll policy default adaptive, min a fifth", map[string]string{"HBRBOT_POLL_INTERVAL": "10s"}, func(c Config) error {
			if c.PollPolicy != "adaptive" {
				return eq(c.PollPolicy, "adaptive")
			}
			return eq(c.PollMinInterval, 2*time.Second)
		}},
		{"poll max interval", map[string]string{"HBRBOT_POLL_MAX_INTERVAL": "30s"}, func(c Config) error {
			return eq(c.PollMaxInterval, 30*time.Second)
		}},
		{"poll max interval default 4.5 intervals", map[string]string{"HBRBOT_POLL_INTERVAL": "10s"}, func(c Config) error {
			return eq(c.PollMaxInterval, 45*time.Second)
		}},
		{"poll max interval default at most 1h", map[string]string{"HBRBOT_POLL_INTERVAL": "20m"}, func(c Config) error {
			return eq(c.PollMaxInterval, time.Hour)
		}},
		{"poll min interval floor", map[string]string{"HBRBOT_POLL_INTERVAL": "200ms"}, func(c Config) error {
			return eq(c.PollMinInterval, 100*time.Millisecond)
		}},
		{"poll fixed", map[string]string{"HBRBOT_POLL_POLICY": "fixed", "HBRBOT_POLL_MIN_INTERVAL": "1s"}, func(c Config) error {
			if c.PollPolicy != "fixed" {
				return eq(c.PollPolicy, "fixed")
			}
			return eq(c.PollMinInterval, time.Second)
		}},
		{"governance", map[string]string{"HBRBOT_REQUESTERS": "U0A,S0SRE", "HBRBOT_REQUIRED_APPROVALS": "2", "HBRBOT_DRY_RUN": "true", "HBRBOT_POLICY_FILE": "policy.yaml"}, func(c Config) error {
			return eq(fmt.Sprintln(c.Requesters, c.RequiredApprovals, c.DryRun, c.PolicyFile), "[U0A S0SRE] 2 true policy.yaml\n")
		}},
		{"lease", map[string]string{"HBRBOT_LEASE": "5s"}, func(c Config) error {
			return eq(c.Lease, 5*time.Second)
		}},
		{"hbr rate limit", map[string]string{"HBRBOT_HBR_RATE_LIMIT": "120"}, func(c Config) error {
			return eq(c.HBRRateLimit, 120)
		}},
		{"hbr rate limits default: 480 each, the total above their sum", map[string]string{}, func(c Config) error {
			if c.HBRRateLimit != 1800 {
				return eq(c.HBRRateLimit, 1800)
			}
			return eq(c.HBRRateLimits, map[string]int{"DescribeTask": 480, "UpgradeBackupClients": 480, "DescribeBackupClients": 480})
		}},
		{"hbr rate limits: one named, the others default", map[string]string{"HBRBOT_HBR_RATE_LIMITS": " DescribeTask = 300 "}, func(c Config) error {
			return eq(c.HBRRateLimits, map[string]int{"DescribeTask": 300, "UpgradeBackupClients": 480, "DescribeBackupClients": 480})
		}},
		{"approvers trimmed, deduplicated", map[string]string{"HBRBOT_APPROVERS": " U012AB3CD, W0ABC ,,S0GROUP,U012AB3CD, "}, func(c Config) error {
			return eq(c.Approvers, []string{"U012AB3CD", "W0ABC", "S0GROUP"})
		}},
		{"approvers only commas", map[string]string{"HBRBOT_APPROVERS": " , ,"}, func(c Config) error {
			return eq(len(c.Approvers), 0)
		}},
		{"self approval true", map[string]string{"HBRBOT_ALLOW_SELF_APPROVAL": "true"}, func(c Config) error {
			return eq(c.AllowSelfApproval, true)
		}},
		{"self approval 1", map[string]string{"HBRBOT_ALLOW_SELF_APPROVAL": "1"}, func(c Config) error {
			return eq(c.AllowSelfApproval, true)
		}},
		{"self approval 0", map[string]string{"HBRBOT_ALLOW_SELF_APPROVAL": "0"}, func(c Config) error {
			return eq(c.AllowSelfApproval, false)
		}},
		{"self approval FALSE", map[string]string{"HBRBOT_ALLOW_SELF_APPROVAL": "FALSE"}, func(c Config) error {
			return eq(c.AllowSelfApproval, false)
		}},
		{"channels", map[string]string{"HBRBOT_ALLOWED_CHANNELS": "C0123ABC,G0PRIV, D0DM,C0123ABC"}, func(c Config) error {
			return eq(c.AllowedChannels, []string{"C0123ABC", "G0PRIV", "D0DM"})
		}},
		{"max targets", map[string]string{"HBRBOT_MAX_TARGETS": "1"}, func(c Config) error {
			return eq(c.MaxTargets, 1)
		}},
		{"max targets max", map[string]string{"HBRBOT_MAX_TARGETS": "10000"}, func(c Config) error {
			return eq(c.MaxTargets, 10000)
		}},
		{"http addr", map[string]string{"HBRBOT_HTTP_ADDR": "127.0.0.1:0"}, func(c Config) error {
			return eq(c.HTTPAddr, "127.0.0.1:0")
		}},
		{"http addr ipv6", map[string]string{"HBRBOT_HTTP_ADDR": "[::]:65535"}, func(c Config) error {
			return eq(c.HTTPAddr, "[::]:65535")
		}},
		{"whitespace-only is unset", map[string]string{"HBRBOT_MAX_TARGETS": "   ", "SLACK_API_URL": " "}, func(c Config) error {
			return errors.Join(eq(c.MaxTargets, 500), eq(c.SlackAPIURL, "https://slack.com/api/"))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := mustLoad(t, with(tt.env))
			if err := tt.check(c); err != nil {
				t.Error(err)
			}
		})
	}
}

func eq(got, want any) error {
	if !reflect.DeepEqual(got, want) {
		return fmt.Errorf("got %#v, want %#v", got, want)
	}
	return nil
}

func TestInvalid(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		wantVar string
		reason  string // substring of the problem's reason
	}{
		{"app token missing", map[string]string{"SLACK_APP_TOKEN": unset}, "SLACK_APP_TOKEN", "required"},
		{"app token empty", map[string]string{"SLACK_APP_TOKEN": "  "}, "SLACK_APP_TOKEN", "required"},
		{"app token is bot token", map[string]string{"SLACK_APP_TOKEN": botToken}, "SLACK_APP_TOKEN", `"xapp-"`},
		{"app token bare prefix", map[string]string{"SLACK_APP_TOKEN": "xapp-"}, "SLACK_APP_TOKEN", `"xapp-"`},
		{"app token inner space", map[string]string{"SLACK_APP_TOKEN": "xapp-1 2"}, "SLACK_APP_TOKEN", "whitespace"},
		{"bot token missing", map[string]string{"SLACK_BOT_TOKEN": unset}, "SLACK_BOT_TOKEN", "required"},
		{"bot token is user token", map[string]string{"SLACK_BOT_TOKEN": "xoxp-123"}, "SLACK_BOT_TOKEN", `"xoxb-"`},
		{"api url relative", map[string]string{"SLACK_API_URL": "/api/"}, "SLACK_API_URL", "http"},
		{"api url ftp", map[string]string{"SLACK_API_URL": "ftp://slack.com/api/"}, "SLACK_API_URL", "http"},
		{"api url no host", map[string]string{"SLACK_API_URL": "https:///api/"}, "SLACK_API_URL", "no host"},
		{"api url query", map[string]string{"SLACK_API_URL": "https://slack.com/api/?x=1"}, "SLACK_API_URL", "query"},
		{"api url bad port", map[string]string{"SLACK_API_URL": "https://slack.com:99999/api/"}, "SLACK_API_URL", "port"},
		{"api url unparsable", map[string]string{"SLACK_API_URL": "https://slack .com/%zz"}, "SLACK_API_URL", "not a URL"},
		{"api url user info", map[string]string{"SLACK_API_URL": "https://u:p@slack.com/api/"}, "SLACK_API_URL", "user info"},
		{"key id without secret", map[string]string{"ALIBABA_CLOUD_ACCESS_KEY_ID": "LTAI5t"}, "ALIBABA_CLOUD_ACCESS_KEY_SECRET", "required when ALIBABA_CLOUD_ACCESS_KEY_ID"},
		{"secret without key id", map[string]string{"ALIBABA_CLOUD_ACCESS_KEY_SECRET": "s3cr3t"}, "ALIBABA_CLOUD_ACCESS_KEY_ID", "required when ALIBABA_CLOUD_ACCESS_KEY_SECRET"},
		{"token without pair", map[string]string{"ALIBABA_CLOUD_SECURITY_TOKEN": "tok"}, "ALIBABA_CLOUD_SECURITY_TOKEN", "needs"},
		{"token with id only", map[string]string{"ALIBABA_CLOUD_SECURITY_TOKEN": "tok", "ALIBABA_CLOUD_ACCESS_KEY_ID": "id"}, "ALIBABA_CLOUD_ACCESS_KEY_SECRET", "required"},
		{"secret with space", map[string]string{"ALIBABA_CLOUD_ACCESS_KEY_ID": "id", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": "a b"}, "ALIBABA_CLOUD_ACCESS_KEY_SECRET", "whitespace"},
		{"region missing", map[string]string{"ALIBABA_CLOUD_REGION_ID": unset}, "ALIBABA_CLOUD_REGION_ID", "required"},
		{"region upper case", map[string]string{"ALIBABA_CLOUD_REGION_ID": "CN-HANGZHOU"}, "ALIBABA_CLOUD_REGION_ID", `"CN-HANGZHOU" is not a region`},
		{"region no dash", map[string]string{"ALIBABA_CLOUD_REGION_ID": "hangzhou"}, "ALIBABA_CLOUD_REGION_ID", "not a region"},
		{"region host injection", map[string]string{"ALIBABA_CLOUD_REGION_ID": "cn-hangzhou.evil.com/x"}, "ALIBABA_CLOUD_REGION_ID", "not a region"},
		{"region longer than the command accepts", map[string]string{"ALIBABA_CLOUD_REGION_ID": "cn-" + strings.Repeat("a", 30)}, "ALIBABA_CLOUD_REGION_ID", "not a region"},
		{"endpoint path", map[string]string{"HBR_ENDPOINT": "https://hbr.example.com/v1"}, "HBR_ENDPOINT", "without path"},
		{"endpoint query", map[string]string{"HBR_ENDPOINT": "https://hbr.example.com?a=b"}, "HBR_ENDPOINT", "query"},
		{"endpoint fragment", map[string]string{"HBR_ENDPOINT": "https://hbr.example.com/#x"}, "HBR_ENDPOINT", "fragment"},
		{"endpoint scheme", map[string]string{"HBR_ENDPOINT": "tcp://hbr.example.com"}, "HBR_ENDPOINT", "http"},
		{"endpoint no scheme", map[string]string{"HBR_ENDPOINT": "hbr.example.com"}, "HBR_ENDPOINT", "http"},
		{"endpoint bad port", map[string]string{"HBR_ENDPOINT": "http://h:0"}, "HBR_ENDPOINT", "port"},
		{"endpoint empty port", map[string]string{"HBR_ENDPOINT": "http://h:"}, "HBR_ENDPOINT", "empty port"},
		{"endpoint user info", map[string]string{"HBR_ENDPOINT": "http://u@h"}, "HBR_ENDPOINT", "user info"},
		{"redis scheme", map[string]string{"REDIS_URL": "http://localhost:6379"}, "REDIS_URL", "scheme"},
		{"redis unix", map[string]string{"REDIS_URL": "unix:///tmp/redis.sock"}, "REDIS_URL", "scheme"},
		{"redis bare host", map[string]string{"REDIS_URL": "localhost:6379"}, "REDIS_URL", "scheme"},
		{"redis db", map[string]string{"REDIS_URL": "redis://localhost:6379/x"}, "REDIS_URL", "database"},
		{"redis path", map[string]string{"REDIS_URL": "redis://localhost:6379/0/1"}, "REDIS_URL", "path"},
		{"redis option", map[string]string{"REDIS_URL": "redis://localhost:6379/0?nope=1"}, "REDIS_URL", "unexpected option"},
		{"redis port", map[string]string{"REDIS_URL": "redis://localhost:port/0"}, "REDIS_URL", "invalid port"},
		{"redis port range", map[string]string{"REDIS_URL": "redis://localhost:70000/0"}, "REDIS_URL", "between 1 and 65535"},
		{"poll not duration", map[string]string{"HBRBOT_POLL_INTERVAL": "10"}, "HBRBOT_POLL_INTERVAL", `"10" is not a duration (e.g. 10s)`},
		{"poll zero", map[string]string{"HBRBOT_POLL_INTERVAL": "0s"}, "HBRBOT_POLL_INTERVAL", "positive"},
		{"poll below minimum", map[string]string{"HBRBOT_POLL_INTERVAL": "99ms"}, "HBRBOT_POLL_INTERVAL", "minimum 100ms"},
		{"task timeout negative", map[string]string{"HBRBOT_TASK_TIMEOUT": "-1m"}, "HBRBOT_TASK_TIMEOUT", "positive"},
		{"task timeout garbage", map[string]string{"HBRBOT_TASK_TIMEOUT": "twenty minutes"}, "HBRBOT_TASK_TIMEOUT", "not a duration"},
		{"request ttl zero", map[string]string{"HBRBOT_REQUEST_TTL": "0"}, "HBRBOT_REQUEST_TTL", "positive"},
		{"redis mode unknown", map[string]string{"REDIS_MODE": "ring"}, "REDIS_MODE", "not single, sentinel or cluster"},
		{"sentinel without master", map[string]string{"REDIS_MODE": "sentinel", "REDIS_URL": "redis://10.0.0.1:26379"}, "REDIS_URL", "master_name"},
		{"poll max below interval", map[string]string{"HBRBOT_POLL_MAX_INTERVAL": "5s"}, "HBRBOT_POLL_MAX_INTERVAL", "not between HBRBOT_POLL_INTERVAL (10s) and 1h"},
		{"poll policy unknown", map[string]string{"HBRBOT_POLL_POLICY": "lazy"}, "HBRBOT_POLL_POLICY", "not adaptive or fixed"},
		{"poll min above interval", map[string]string{"HBRBOT_POLL_MIN_INTERVAL": "1m"}, "HBRBOT_POLL_MIN_INTERVAL", "not between 100ms and HBRBOT_POLL_INTERVAL (10s)"},
		{"log format", map[string]string{"HBRBOT_LOG_FORMAT": "xml"}, "HBRBOT_LOG_FORMAT", "not json or text"},
		{"log level", map[string]string{"HBRBOT_LOG_LEVEL": "loud"}, "HBRBOT_LOG_LEVEL", "not debug, info, warn or error"},
		{"required approvals zero", map[string]string{"HBRBOT_REQUIRED_APPROVALS": "0"}, "HBRBOT_REQUIRED_APPROVALS", "not between 1 and 10"},
		{"bad requester", map[string]string{"HBRBOT_REQUESTERS": "alice"}, "HBRBOT_REQUESTERS", "alice"},
		{"lease too short", map[string]string{"HBRBOT_LEASE": "1s"}, "HBRBOT_LEASE", "less than the minimum 5s"},
		{"lease garbage", map[string]string{"HBRBOT_LEASE": "long"}, "HBRBOT_LEASE", `"long" is not a duration`},
		{"rate limit zero", map[string]string{"HBRBOT_HBR_RATE_LIMIT": "0"}, "HBRBOT_HBR_RATE_LIMIT", "not between 1 and 60000"},
		{"rate limit too high", map[string]string{"HBRBOT_HBR_RATE_LIMIT": "60001"}, "HBRBOT_HBR_RATE_LIMIT", "60001 is not between 1 and 60000"},
		{"rate limit garbage", map[string]string{"HBRBOT_HBR_RATE_LIMIT": "many"}, "HBRBOT_HBR_RATE_LIMIT", "not a whole number"},
		{"rate limits unknown action", map[string]string{"HBRBOT_HBR_RATE_LIMITS": "DescribeVaults=10"}, "HBRBOT_HBR_RATE_LIMITS", `"DescribeVaults" is not an action the bot calls`},
		{"rate limits zero", map[string]string{"HBRBOT_HBR_RATE_LIMITS": "DescribeTask=0"}, "HBRBOT_HBR_RATE_LIMITS", "DescribeTask=0 is not between 1 and 60000"},
		{"rate limits garbage", map[string]string{"HBRBOT_HBR_RATE_LIMITS": "DescribeTask"}, "HBRBOT_HBR_RATE_LIMITS", "is not ACTION=N"},
		{"request ttl garbage", map[string]string{"HBRBOT_REQUEST_TTL": "1d"}, "HBRBOT_REQUEST_TTL", `"1d" is not a duration`},
		{"approver lower case", map[string]string{"HBRBOT_APPROVERS": "U0ABC,u0abc"}, "HBRBOT_APPROVERS", `"u0abc" is not`},
		{"approver channel id", map[string]string{"HBRBOT_APPROVERS": "C0123,@alice"}, "HBRBOT_APPROVERS", `"C0123", "@alice" are not`},
		{"approver too short", map[string]string{"HBRBOT_APPROVERS": "U1"}, "HBRBOT_APPROVERS", `"U1"`},
		{"self approval yes", map[string]string{"HBRBOT_ALLOW_SELF_APPROVAL": "yes"}, "HBRBOT_ALLOW_SELF_APPROVAL", `"yes" is not a boolean`},
		{"channel name", map[string]string{"HBRBOT_ALLOWED_CHANNELS": "#general"}, "HBRBOT_ALLOWED_CHANNELS", `"#general"`},
		{"channel user id", map[string]string{"HBRBOT_ALLOWED_CHANNELS": "C0ABC, U0ABC"}, "HBRBOT_ALLOWED_CHANNELS", `"U0ABC"`},
		{"max targets zero", map[string]string{"HBRBOT_MAX_TARGETS": "0"}, "HBRBOT_MAX_TARGETS", "between 1 and 10000"},
		{"max targets too many", map[string]string{"HBRBOT_MAX_TARGETS": "10001"}, "HBRBOT_MAX_TARGETS", "between 1 and 10000"},
		{"max targets negative", map[string]string{"HBRBOT_MAX_TARGETS": "-5"}, "HBRBOT_MAX_TARGETS", "between"},
		{"max targets text", map[string]string{"HBRBOT_MAX_TARGETS": "many"}, "HBRBOT_MAX_TARGETS", `"many" is not a whole number`},
		{"max targets float", map[string]string{"HBRBOT_MAX_TARGETS": "1.5"}, "HBRBOT_MAX_TARGETS", "whole number"},
		{"max targets huge", map[string]string{"HBRBOT_MAX_TARGETS": "99999999999999"}, "HBRBOT_MAX_TARGETS", "out of range"},
		{"http addr no port", map[string]string{"HBRBOT_HTTP_ADDR": "localhost"}, "HBRBOT_HTTP_ADDR", "host:port"},
		{"http addr big port", map[string]string{"HBRBOT_HTTP_ADDR": ":65536"}, "HBRBOT_HTTP_ADDR", "port"},
		{"http addr named port", map[string]string{"HBRBOT_HTTP_ADDR": ":http"}, "HBRBOT_HTTP_ADDR", "port"},
		{"http addr empty port", map[string]string{"HBRBOT_HTTP_ADDR": "0.0.0.0:"}, "HBRBOT_HTTP_ADDR", "port"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := loadErr(t, with(tt.env), "")
			if len(e.Problems) != 1 {
				t.Fatalf("want one problem, got:\n%v", e)
			}
			p := e.Problems[0]
			if p.Var != tt.wantVar || !strings.Contains(p.Reason, tt.reason) {
				t.Errorf("problem %q, want %s with reason containing %q", p, tt.wantVar, tt.reason)
			}
			if !strings.HasPrefix(e.Error(), "invalid configuration:\n  "+tt.wantVar+": ") {
				t.Errorf("Error() = %q", e.Error())
			}
		})
	}
}

func TestLongValueTruncated(t *testing.T) {
	long := strings.Repeat("x", 500)
	e := loadErr(t, with(map[string]string{"HBRBOT_POLL_INTERVAL": long}), "")
	if len(e.Error()) > 150 {
		t.Errorf("error not truncated (%d bytes): %s", len(e.Error()), e)
	}
}

func TestManyProblemsAtOnce(t *testing.T) {
	m := map[string]string{
		"SLACK_BOT_TOKEN":            "xoxp-nope",
		"ALIBABA_CLOUD_REGION_ID":    "Hangzhou",
		"HBRBOT_POLL_INTERVAL":       "10",
		"HBRBOT_TASK_TIMEOUT":        "0s",
		"HBRBOT_APPROVERS":           "alice",
		"HBRBOT_ALLOW_SELF_APPROVAL": "maybe",
		"HBRBOT_MAX_TARGETS":         "x",
		"HBRBOT_HTTP_ADDR":           "8080",
		"REDIS_URL":                  "memcached://x",
	}
	e := loadErr(t, m, "")
	want := []string{
		"SLACK_APP_TOKEN",
		"SLACK_BOT_TOKEN",
		"ALIBABA_CLOUD_REGION_ID",
		"REDIS_URL",
		"HBRBOT_POLL_INTERVAL",
		"HBRBOT_TASK_TIMEOUT",
		"HBRBOT_APPROVERS",
		"HBRBOT_ALLOW_SELF_APPROVAL",
		"HBRBOT_MAX_TARGETS",
		"HBRBOT_HTTP_ADDR",
	}
	if got := e.Vars(); !slices.Equal(got, want) {
		t.Errorf("vars %v, want %v\n%v", got, want, e)
	}
	lines := strings.Split(e.Error(), "\n")
	if lines[0] != "invalid configuration:" || len(lines) != len(want)+1 {
		t.Fatalf("Error() =\n%s", e)
	}
	for i, v := range want {
		if !strings.HasPrefix(lines[i+1], "  "+v+": ") {
			t.Errorf("line %d = %q, want it to name %s", i+1, lines[i+1], v)
		}
	}
	if !strings.Contains(e.Error(), "  SLACK_APP_TOKEN: required\n") {
		t.Errorf("missing required line:\n%s", e)
	}
	if !strings.Contains(e.Error(), `  HBRBOT_POLL_INTERVAL: "10" is not a duration (e.g. 10s)`) {
		t.Errorf("missing duration line:\n%s", e)
	}
}

func TestEverythingMissing(t *testing.T) {
	e := loadErr(t, nil, "")
	want := []string{"SLACK_APP_TOKEN", "SLACK_BOT_TOKEN", "ALIBABA_CLOUD_REGION_ID"}
	if got := e.Vars(); !slices.Equal(got, want) {
		t.Errorf("vars %v, want %v", got, want)
	}
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), ".env")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDotEnv(t *testing.T) {
	file := `# hbrbot settings
SLACK_APP_TOKEN=xapp-from-file
export SLACK_BOT_TOKEN="xoxb-from-file"
ALIBABA_CLOUD_REGION_ID = cn-beijing
HBRBOT_MAX_TARGETS=42 # inline comment
HBRBOT_APPROVERS='U0AAA, U0BBB'
UNRELATED_VARIABLE=whatever
`
	t.Run("file supplies values", func(t *testing.T) {
		c, err := Load(getter(nil), writeFile(t, file))
		if err != nil {
			t.Fatal(err)
		}
		if err := errors.Join(
			eq(c.SlackAppToken, "xapp-from-file"),
			eq(c.SlackBotToken, "xoxb-from-file"),
			eq(c.Region, "cn-beijing"),
			eq(c.HBREndpoint.String(), "https://hbr.cn-beijing.aliyuncs.com"),
			eq(c.MaxTargets, 42),
			eq(c.Approvers, []string{"U0AAA", "U0BBB"}),
			eq(c.PollInterval, 10*time.Second),
		); err != nil {
			t.Error(err)
		}
	})
	t.Run("real environment wins", func(t *testing.T) {
		real := map[string]string{
			"SLACK_APP_TOKEN":    "xapp-from-env",
			"HBRBOT_MAX_TARGETS": "7",
			"SLACK_BOT_TOKEN":    "  ", // blank counts as unset: the file's value applies
		}
		c, err := Load(getter(real), writeFile(t, file))
		if err != nil {
			t.Fatal(err)
		}
		if err := errors.Join(
			eq(c.SlackAppToken, "xapp-from-env"),
			eq(c.SlackBotToken, "xoxb-from-file"),
			eq(c.MaxTargets, 7),
			eq(c.Region, "cn-beijing"),
		); err != nil {
			t.Error(err)
		}
	})
	t.Run("blank in file means default", func(t *testing.T) {
		c, err := Load(getter(base()), writeFile(t, "HBRBOT_HTTP_ADDR=\nHBRBOT_POLL_INTERVAL=''\n"))
		if err != nil {
			t.Fatal(err)
		}
		if err := errors.Join(eq(c.HTTPAddr, ":8080"), eq(c.PollInterval, 10*time.Second)); err != nil {
			t.Error(err)
		}
	})
	t.Run("bad value in file is reported", func(t *testing.T) {
		e := loadErr(t, base(), writeFile(t, "HBRBOT_POLL_INTERVAL=soon\n"))
		if got := e.Vars(); !slices.Equal(got, []string{"HBRBOT_POLL_INTERVAL"}) {
			t.Errorf("vars %v", got)
		}
	})
	t.Run("missing file is fine", func(t *testing.T) {
		c, err := Load(getter(base()), filepath.Join(t.TempDir(), "nope.env"))
		if err != nil {
			t.Fatal(err)
		}
		if c.SlackAppToken != appToken {
			t.Errorf("app token %q", c.SlackAppToken)
		}
	})
	t.Run("no file", func(t *testing.T) {
		if _, err := Load(getter(base()), ""); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("unterminated quote", func(t *testing.T) {
		p := writeFile(t, "SLACK_BOT_TOKEN=\"xoxb-FILESECRET\nREDIS_URL=redis://:FILEPASS@h\n")
		e := loadErr(t, base(), p)
		if len(e.Problems) != 1 || e.Problems[0].Var != p || !strings.Contains(e.Problems[0].Reason, "malformed") {
			t.Errorf("error %v", e)
		}
		for _, s := range []string{"FILESECRET", "FILEPASS"} {
			if strings.Contains(e.Error(), s) {
				t.Errorf("error leaks %s: %v", s, e)
			}
		}
	})
	t.Run("bad variable name", func(t *testing.T) {
		p := writeFile(t, "SLACK-BOT-TOKEN=xoxb-FILESECRET\n")
		e := loadErr(t, base(), p)
		if len(e.Problems) != 1 || e.Problems[0].Var != p || !strings.Contains(e.Problems[0].Reason, "malformed") {
			t.Errorf("error %v", e)
		}
		if strings.Contains(e.Error(), "FILESECRET") {
			t.Errorf("error leaks the file's content: %v", e)
		}
	})
	t.Run("unreadable file", func(t *testing.T) {
		e := loadErr(t, base(), t.TempDir()) // a directory
		if len(e.Problems) != 1 || !strings.Contains(e.Problems[0].Reason, "cannot read") {
			t.Errorf("error %v", e)
		}
	})
}

func TestOSEnvironment(t *testing.T) {
	for k, v := range base() {
		t.Setenv(k, v)
	}
	t.Setenv("HBRBOT_MAX_TARGETS", "12")
	c, err := Load(nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxTargets != 12 || c.SlackAppToken != appToken {
		t.Errorf("config %+v", c)
	}
}

// Secrets that must never be printed, each unique so a leak is easy to spot.
const (
	leakApp    = "LEAKAPPTOKEN"
	leakBot    = "LEAKBOTTOKEN"
	leakSecret = "LEAKKEYSECRET"
	leakSTS    = "LEAKSTSTOKEN"
	leakRedis  = "LEAKREDISPASS"
)

var leaks = []string{leakApp, leakBot, leakSecret, leakSTS, leakRedis}

func assertNoLeak(t *testing.T, what, s string) {
	t.Helper()
	for _, l := range leaks {
		if strings.Contains(s, l) {
			t.Errorf("%s leaks %s:\n%s", what, l, s)
		}
	}
}

func TestSecretsNeverInErrors(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
	}{
		{"tokens swapped", map[string]string{"SLACK_APP_TOKEN": "xoxb-" + leakApp, "SLACK_BOT_TOKEN": "xapp-" + leakBot}},
		{"tokens no prefix", map[string]string{"SLACK_APP_TOKEN": leakApp, "SLACK_BOT_TOKEN": leakBot}},
		{"tokens with spaces", map[string]string{"SLACK_APP_TOKEN": "xapp-" + leakApp + " x", "SLACK_BOT_TOKEN": "xoxb-\t" + leakBot}},
		{"secret without id", map[string]string{"ALIBABA_CLOUD_ACCESS_KEY_SECRET": leakSecret, "ALIBABA_CLOUD_SECURITY_TOKEN": leakSTS}},
		{"token alone", map[string]string{"ALIBABA_CLOUD_SECURITY_TOKEN": leakSTS}},
		{"secret and token with spaces", map[string]string{"ALIBABA_CLOUD_ACCESS_KEY_ID": "id", "ALIBABA_CLOUD_ACCESS_KEY_SECRET": leakSecret + " 1", "ALIBABA_CLOUD_SECURITY_TOKEN": leakSTS + " 2"}},
		{"redis bad scheme", map[string]string{"REDIS_URL": "http://user:" + leakRedis + "@h:6379"}},
		{"redis bad port", map[string]string{"REDIS_URL": "redis://user:" + leakRedis + "@h:port/0"}},
		{"redis bad escape", map[string]string{"REDIS_URL": "redis://user:" + leakRedis + "%zz@h/0"}},
		{"redis bad escape in password start", map[string]string{"REDIS_URL": "redis://:%zz" + leakRedis + "@h/0"}},
		{"redis space in password", map[string]string{"REDIS_URL": "redis://user:" + leakRedis + " x@h/0"}},
		{"redis bad db", map[string]string{"REDIS_URL": "redis://user:" + leakRedis + "@h/" + leakRedis}},
		{"redis bad option", map[string]string{"REDIS_URL": "redis://:" + leakRedis + "@h/0?dial_timeout=" + leakRedis}},
		{"redis bad option bool", map[string]string{"REDIS_URL": "rediss://:" + leakRedis + "@h/0?skip_verify=" + leakRedis}},
		{"redis missing scheme", map[string]string{"REDIS_URL": "user:" + leakRedis + "@h:6379"}},
		{"redis port out of range", map[string]string{"REDIS_URL": "redis://user:" + leakRedis + "@h:99999/0"}},
		{"everything at once", map[string]string{
			"SLACK_APP_TOKEN":                 leakApp,
			"SLACK_BOT_TOKEN":                 leakBot,
			"ALIBABA_CLOUD_ACCESS_KEY_SECRET": leakSecret,
			"ALIBABA_CLOUD_SECURITY_TOKEN":    leakSTS,
			"REDIS_URL":                       "redis://u:" + leakRedis + "@h:x",
			"HBRBOT_MAX_TARGETS":              "0",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Load(getter(with(tt.env)), "")
			if err == nil {
				t.Fatal("Load succeeded")
			}
			assertNoLeak(t, "error", err.Error())
			assertNoLeak(t, "error %+v", fmt.Sprintf("%+v", err))
			assertNoLeak(t, "error %#v", fmt.Sprintf("%#v", err))
		})
	}
}

func fullConfig(t *testing.T) Config {
	t.Helper()
	return mustLoad(t, with(map[string]string{
		"SLACK_APP_TOKEN":                 "xapp-1-" + leakApp,
		"SLACK_BOT_TOKEN":                 "xoxb-1-" + leakBot,
		"ALIBABA_CLOUD_ACCESS_KEY_ID":     "LTAI5tKEYID",
		"ALIBABA_CLOUD_ACCESS_KEY_SECRET": leakSecret,
		"ALIBABA_CLOUD_SECURITY_TOKEN":    leakSTS,
		"REDIS_URL":                       "rediss://default:" + leakRedis + "@redis.example.com:6380/1",
		"HBRBOT_APPROVERS":                "U0AAA",
		"HBRBOT_REQUESTERS":               "U0BBB",
		"HBRBOT_ALLOWED_CHANNELS":         "C0AAA",
	}))
}

func TestRedacted(t *testing.T) {
	c := fullConfig(t)
	r := c.Redacted()
	if err := errors.Join(
		eq(r.SlackAppToken, "[redacted]"),
		eq(r.SlackBotToken, "[redacted]"),
		eq(r.AccessKeySecret, "[redacted]"),
		eq(r.SecurityToken, "[redacted]"),
		eq(r.AccessKeyID, "LTAI5tKEYID"),
		eq(r.RedisURL, "rediss://default:[redacted]@redis.example.com:6380/1"),
		eq(r.Region, c.Region),
		eq(r.HBREndpoint.String(), c.HBREndpoint.String()),
		eq(r.Approvers, c.Approvers),
	); err != nil {
		t.Error(err)
	}
	// A copy: the original keeps its secrets and shares no slices.
	if c.SlackAppToken != "xapp-1-"+leakApp || !strings.Contains(c.RedisURL, leakRedis) {
		t.Error("Redacted changed the original")
	}
	r.Approvers[0] = "U0ZZZ"
	r.Requesters[0] = "U0ZZZ"
	r.AllowedChannels[0] = "C0ZZZ"
	r.HBREndpoint.Host = "changed"
	if c.Approvers[0] != "U0AAA" || c.Requesters[0] != "U0BBB" || c.AllowedChannels[0] != "C0AAA" || c.HBREndpoint.Host == "changed" {
		t.Error("Redacted shares memory with the original")
	}

	for _, f := range []string{"%v", "%+v", "%#v", "%s"} {
		assertNoLeak(t, "fmt "+f, fmt.Sprintf(f, c))
		assertNoLeak(t, "fmt "+f+" pointer", fmt.Sprintf(f, &c))
	}
	assertNoLeak(t, "Redacted %#v", fmt.Sprintf("%#v", r))

	// Unset secrets stay empty, so the log shows they are unset.
	plain := mustLoad(t, base()).Redacted()
	if plain.AccessKeySecret != "" || plain.SecurityToken != "" || plain.RedisURL != "" {
		t.Errorf("unset secrets redacted to %+v", plain)
	}
}

func TestRedactRedisURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"redis://localhost:6379/0", "redis://localhost:6379/0"},
		{"redis://user@localhost:6379/0", "redis://user@localhost:6379/0"},
		{"redis://:" + leakRedis + "@localhost:6379/0", "redis://:[redacted]@localhost:6379/0"},
		{"redis://us%3Aer:" + leakRedis + "@localhost/0", "redis://us%3Aer:[redacted]@localhost/0"},
		{"redis://u:" + leakRedis + ":xxxxx@h/0", "redis://u:[redacted]@h/0"},
		{"redis://u:" + leakRedis + "%zz@h", "[redacted]"},
		// Sentinel's master password comes in the query (go-redis takes it
		// nowhere else), and so may the sentinels' own.
		{"redis://:" + leakRedis + "@s1:26379/0?master_name=m&password=" + leakRedis + "&sentinel_password=" + leakRedis,
			"redis://:[redacted]@s1:26379/0?master_name=m&password=%5Bredacted%5D&sentinel_password=%5Bredacted%5D"},
	}
	for _, tt := range tests {
		if got := redactRedisURL(tt.in); got != tt.want {
			t.Errorf("redactRedisURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestSlogNeverLeaks(t *testing.T) {
	c := fullConfig(t)
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, nil))
	log.Info("starting", "config", c)
	log.Info("starting", "config", &c)
	log.Info("starting", slog.Any("config", c))
	out := buf.String()
	assertNoLeak(t, "slog output", out)
	for _, want := range []string{
		`"SLACK_APP_TOKEN":"[redacted]"`,
		`"ALIBABA_CLOUD_ACCESS_KEY_SECRET":"[redacted]"`,
		`"REDIS_URL":"rediss://default:[redacted]@redis.example.com:6380/1"`,
		`"ALIBABA_CLOUD_REGION_ID":"cn-hangzhou"`,
		`"HBR_ENDPOINT":"https://hbr.cn-hangzhou.aliyuncs.com"`,
		`"HBRBOT_APPROVERS":["U0AAA"]`,
		`"HBRBOT_MAX_TARGETS":500`,
		`"HBRBOT_POLL_INTERVAL":"10s"`,
		`"HBRBOT_LOG_LEVEL":"INFO"`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("slog output lacks %s:\n%s", want, out)
		}
	}

	buf.Reset()
	text := slog.New(slog.NewTextHandler(&buf, nil))
	text.Info("starting", "config", c)
	assertNoLeak(t, "slog text output", buf.String())
}

func TestVariableNames(t *testing.T) {
	want := []string{
		"SLACK_APP_TOKEN", "SLACK_BOT_TOKEN", "SLACK_API_URL",
		"ALIBABA_CLOUD_ACCESS_KEY_ID", "ALIBABA_CLOUD_ACCESS_KEY_SECRET", "ALIBABA_CLOUD_SECURITY_TOKEN",
		"ALIBABA_CLOUD_REGION_ID", "HBR_ENDPOINT", "REDIS_URL", "REDIS_MODE", "HBRBOT_REDIS_DURABILITY",
		"HBRBOT_POLL_INTERVAL", "HBRBOT_POLL_POLICY", "HBRBOT_POLL_MIN_INTERVAL", "HBRBOT_POLL_MAX_INTERVAL", "HBRBOT_TASK_TIMEOUT", "HBRBOT_REQUEST_TTL",
		"HBRBOT_APPROVERS", "HBRBOT_REQUESTERS", "HBRBOT_REQUIRED_APPROVALS", "HBRBOT_ALLOW_SELF_APPROVAL", "HBRBOT_ALLOWED_CHANNELS",
		"HBRBOT_ALLOWED_TEAMS", "HBRBOT_USER_COMMANDS", "HBRBOT_CHANNEL_COMMANDS", "HBRBOT_USER_PENDING",
		"HBRBOT_MAX_TARGETS", "HBRBOT_HTTP_ADDR", "HBRBOT_LEASE", "HBRBOT_HBR_RATE_LIMIT", "HBRBOT_HBR_RATE_LIMITS",
		"HBRBOT_POLICY_FILE", "HBRBOT_DRY_RUN", "HBRBOT_LOG_FORMAT", "HBRBOT_LOG_LEVEL", "HBRBOT_PPROF", "HBRBOT_PPROF_ADDR",
	}
	var names []string
	for _, v := range Variables() {
		names = append(names, v.Name)
	}
	if !slices.Equal(names, want) {
		t.Errorf("variables %v, want %v", names, want)
	}
	// Every variable appears in the slog form.
	var keys []string
	for _, a := range fullConfig(t).LogValue().Group() {
		keys = append(keys, a.Key)
	}
	if !slices.Equal(keys, want) {
		t.Errorf("LogValue keys %v, want %v", keys, want)
	}
}

// TestVariablesTable: the table sets every Config field once, and only
// Secret variables are hidden.
func TestVariablesTable(t *testing.T) {
	var c Config
	fields := map[uintptr]string{}
	for _, v := range variables {
		p := reflect.ValueOf(v.field(&c))
		if other, dup := fields[p.Pointer()]; dup {
			t.Errorf("%s and %s set the same field", other, v.Name)
		}
		fields[p.Pointer()] = v.Name
		logValue(v.field(&c)) // panics on a type without a log form
		if (v.Secrecy == Secret) != (v.hide != nil) {
			t.Errorf("%s: secrecy %d, but hidden in logs: %v", v.Name, v.Secrecy, v.hide != nil)
		}
		if v.Meaning == "" || strings.Contains(v.Meaning, "\n") {
			t.Errorf("%s: meaning %q is not one line", v.Name, v.Meaning)
		}
		if v.Required && v.Default != "" {
			t.Errorf("%s is required and has a default", v.Name)
		}
	}
	if n := reflect.TypeFor[Config]().NumField(); len(fields) != n {
		t.Errorf("the table sets %d of Config's %d fields", len(fields), n)
	}
}

// TestRedisURLScrubbedOnlyOfItsPassword: a Redis URL is secret only in its
// password, so the rest of it does not blank out other variables' values.
func TestRedisURLScrubbedOnlyOfItsPassword(t *testing.T) {
	e := loadErr(t, with(map[string]string{"REDIS_URL": "sometimes", "HBRBOT_POLL_INTERVAL": "sometimes"}), "")
	if !strings.Contains(e.Error(), `HBRBOT_POLL_INTERVAL: "sometimes" is not a duration`) {
		t.Errorf("error:\n%v", e)
	}
}
