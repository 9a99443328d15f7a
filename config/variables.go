package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Variable is one environment variable hbrbot reads.
type Variable struct {
	Name string
	// Default is the value Load uses when the variable is unset, as it
	// would be written in the environment; "" when there is none (the
	// field's zero value) or Load works it out (HBR_ENDPOINT follows the
	// region, the poll bounds follow HBRBOT_POLL_INTERVAL).
	Default string
	// Required variables have no default: Load refuses to start without
	// them.
	Required bool
	Secrecy  Secrecy
	// Meaning says in one line what the variable sets.
	Meaning string
}

// Secrecy says where a variable's value may appear.
type Secrecy int

const (
	// Public values are logged as they are, and a deployment may keep them
	// in a ConfigMap or write them out.
	Public Secrecy = iota
	// Credential values are half a credential and grant nothing alone (the
	// access key ID): logged as they are, so that operators can tell which
	// key is in use, but deployed from a Secret along with the other half.
	Credential
	// Secret values grant access, or may hold what does (REDIS_URL's
	// password): deployed from a Secret, never shown in logs or errors.
	Secret
)

// Names of the environment variables.
const (
	varSlackAppToken     = "SLACK_APP_TOKEN"
	varSlackBotToken     = "SLACK_BOT_TOKEN"
	varSlackAPIURL       = "SLACK_API_URL"
	varAccessKeyID       = "ALIBABA_CLOUD_ACCESS_KEY_ID"
	varAccessKeySecret   = "ALIBABA_CLOUD_ACCESS_KEY_SECRET"
	varSecurityToken     = "ALIBABA_CLOUD_SECURITY_TOKEN"
	varRegion            = "ALIBABA_CLOUD_REGION_ID"
	varHBREndpoint       = "HBR_ENDPOINT"
	varRedisURL          = "REDIS_URL"
	varRedisMode         = "REDIS_MODE"
	varRedisDurability   = "HBRBOT_REDIS_DURABILITY"
	varPollInterval      = "HBRBOT_POLL_INTERVAL"
	varPollPolicy        = "HBRBOT_POLL_POLICY"
	varPollMinInterval   = "HBRBOT_POLL_MIN_INTERVAL"
	varPollMaxInterval   = "HBRBOT_POLL_MAX_INTERVAL"
	varTaskTimeout       = "HBRBOT_TASK_TIMEOUT"
	varRequestTTL        = "HBRBOT_REQUEST_TTL"
	varApprovers         = "HBRBOT_APPROVERS"
	varRequesters        = "HBRBOT_REQUESTERS"
	varRequiredApprovals = "HBRBOT_REQUIRED_APPROVALS"
	varAllowSelfApproval = "HBRBOT_ALLOW_SELF_APPROVAL"
	varAllowedChannels   = "HBRBOT_ALLOWED_CHANNELS"
	varMaxTargets        = "HBRBOT_MAX_TARGETS"
	varHTTPAddr          = "HBRBOT_HTTP_ADDR"
	varLease             = "HBRBOT_LEASE"
	varHBRRateLimit      = "HBRBOT_HBR_RATE_LIMIT"
	varHBRRateLimits     = "HBRBOT_HBR_RATE_LIMITS"
	varPolicyFile        = "HBRBOT_POLICY_FILE"
	varDryRun            = "HBRBOT_DRY_RUN"
	varLogFormat         = "HBRBOT_LOG_FORMAT"
	varLogLevel          = "HBRBOT_LOG_LEVEL"
	varPProf             = "HBRBOT_PPROF"
	varPProfAddr         = "HBRBOT_PPROF_ADDR"
	varAllowedTeams      = "HBRBOT_ALLOWED_TEAMS"
	varUserCommands      = "HBRBOT_USER_COMMANDS"
	varChannelCommands   = "HBRBOT_CHANNEL_COMMANDS"
	varUserPending       = "HBRBOT_USER_PENDING"
)

// variable is a Variable and the Config field it sets.
type variable struct {
	Variable
	// field points at the variable's field of a Config. Its type says how
	// the text is converted (see convert) and logged (see logValue).
	field func(*Config) any
	// hide redacts a Secret's value; nil for the others.
	hide func(string) string
}

// variables lists every variable, in the contract's order: the order of
// Load's problems and of the log form.
var variables = []variable{
	{Variable{Name: varSlackAppToken, Required: true, Secrecy: Secret, Meaning: "app-level token xapp-... (connections:write), for Socket Mode"},
		func(c *Config) any { return &c.SlackAppToken }, redact},
	{Variable{Name: varSlackBotToken, Required: true, Secrecy: Secret, Meaning: "bot token xoxb-..."},
		func(c *Config) any { return &c.SlackBotToken }, redact},
	{Variable{Name: varSlackAPIURL, Default: "https://slack.com/api/", Meaning: "Slack Web API base, Socket Mode's apps.connections.open included"},
		func(c *Config) any { return &c.SlackAPIURL }, nil},
	{Variable{Name: varAccessKeyID, Secrecy: Credential, Meaning: "static access key ID; unset: the Alibaba SDK's default credential chain"},
		func(c *Config) any { return &c.AccessKeyID }, nil},
	{Variable{Name: varAccessKeySecret, Secrecy: Secret, Meaning: "the access key ID's secret"},
		func(c *Config) any { return &c.AccessKeySecret }, redact},
	{Variable{Name: varSecurityToken, Secrecy: Secret, Meaning: "STS security token that goes with the access key"},
		func(c *Config) any { return &c.SecurityToken }, redact},
	{Variable{Name: varRegion, Required: true, Meaning: "default region, e.g. cn-hangzhou"},
		func(c *Config) any { return &c.Region }, nil},
	{Variable{Name: varHBREndpoint, Meaning: "HBR RPC endpoint scheme://host[:port]; unset: https://hbr.<region>.aliyuncs.com"},
		func(c *Config) any { return &c.HBREndpoint }, nil},
	{Variable{Name: varRedisURL, Secrecy: Secret, Meaning: "redis://[user:pass@]host:port/db or rediss://...; unset: an in-process store"},
		func(c *Config) any { return &c.RedisURL }, redactRedisURL},
	{Variable{Name: varRedisMode, Default: "single", Meaning: "single, sentinel or cluster: what REDIS_URL names"},
		func(c *Config) any { return &c.RedisMode }, nil},
	{Variable{Name: varRedisDurability, Default: "auto", Meaning: "how a batch's submitting mark is made durable before UpgradeBackupClients: auto, none, replica (WAIT) or aof (WAITAOF)"},
		func(c *Config) any { return &c.RedisDurability }, nil},
	{Variable{Name: varPollInterval, Default: "10s", Meaning: "wait before a job's first DescribeTask call, and fixed polling's between any two"},
		func(c *Config) any { return &c.PollInterval }, nil},
	{Variable{Name: varPollPolicy, Default: "adaptive", Meaning: "adaptive (poll at the job's predicted end) or fixed"},
		func(c *Config) any { return &c.PollPolicy }, nil},
	{Variable{Name: varPollMinInterval, Meaning: "the adaptive policy's shortest wait; unset: a fifth of the interval"},
		func(c *Config) any { return &c.PollMinInterval }, nil},
	{Variable{Name: varPollMaxInterval, Meaning: "the adaptive policy's longest wait for a job below 10% progress; unset: 4.5 intervals"},
		func(c *Config) any { return &c.PollMaxInterval }, nil},
	{Variable{Name: varTaskTimeout, Default: "20m", Meaning: "a job not finished this long after it started is reported timed out"},
		func(c *Config) any { return &c.TaskTimeout }, nil},
	{Variable{Name: varRequestTTL, Default: "1h", Meaning: "how long an unapproved request can be approved"},
		func(c *Config) any { return &c.RequestTTL }, nil},
	{Variable{Name: varApprovers, Meaning: "Slack user and user-group IDs who may approve; empty: anyone"},
		func(c *Config) any { return &c.Approvers }, nil},
	{Variable{Name: varRequesters, Meaning: "Slack user and user-group IDs who may request; empty: anyone"},
		func(c *Config) any { return &c.Requesters }, nil},
	{Variable{Name: varRequiredApprovals, Default: "1", Meaning: "distinct approvals a request needs (N of M)"},
		func(c *Config) any { return &c.RequiredApprovals }, nil},
	{Variable{Name: varAllowSelfApproval, Default: "false", Meaning: "whether requesters may approve their own requests"},
		func(c *Config) any { return &c.AllowSelfApproval }, nil},
	{Variable{Name: varAllowedChannels, Meaning: "Slack channel IDs where the command is accepted; empty: any channel not shared with another organisation"},
		func(c *Config) any { return &c.AllowedChannels }, nil},
	{Variable{Name: varAllowedTeams, Meaning: "other Slack workspaces (T...) or Enterprise Grid orgs (E...) whose members may act; empty: only the bot's own"},
		func(c *Config) any { return &c.AllowedTeams }, nil},
	{Variable{Name: varUserCommands, Default: "10", Meaning: "upgrade commands one user may give a minute"},
		func(c *Config) any { return &c.UserCommands }, nil},
	{Variable{Name: varChannelCommands, Default: "30", Meaning: "upgrade commands one channel may take a minute"},
		func(c *Config) any { return &c.ChannelCommands }, nil},
	{Variable{Name: varUserPending, Default: "5", Meaning: "requests one user may have awaiting approval at once"},
		func(c *Config) any { return &c.UserPending }, nil},
	{Variable{Name: varMaxTargets, Default: "500", Meaning: "most IDs one command may name"},
		func(c *Config) any { return &c.MaxTargets }, nil},
	{Variable{Name: varHTTPAddr, Default: ":8080", Meaning: "host:port of /healthz, /readyz and /metrics"},
		func(c *Config) any { return &c.HTTPAddr }, nil},
	{Variable{Name: varLease, Default: "1m", Meaning: "how long a replica owns a unit of work it claimed"},
		func(c *Config) any { return &c.Lease }, nil},
	{Variable{Name: varHBRRateLimit, Default: "1800", Meaning: "HBR calls per minute, all actions and replicas together: a cap above the per-action budgets"},
		func(c *Config) any { return &c.HBRRateLimit }, nil},
	{Variable{Name: varHBRRateLimits, Default: DefaultHBRRateLimits, Meaning: "each HBR action's calls per minute, all replicas together (ACTION=N,...; unnamed actions keep their default)"},
		func(c *Config) any { return &c.HBRRateLimits }, nil},
	{Variable{Name: varPolicyFile, Meaning: "per-channel rules (YAML); unset: none"},
		func(c *Config) any { return &c.PolicyFile }, nil},
	{Variable{Name: varDryRun, Default: "false", Meaning: "never call UpgradeBackupClients"},
		func(c *Config) any { return &c.DryRun }, nil},
	{Variable{Name: varLogFormat, Default: "json", Meaning: "json or text"},
		func(c *Config) any { return &c.LogFormat }, nil},
	{Variable{Name: varLogLevel, Default: "info", Meaning: "debug, info, warn or error"},
		func(c *Config) any { return &c.LogLevel }, nil},
	{Variable{Name: varPProf, Default: "false", Meaning: "serve net/http/pprof under /debug/pprof/ on HBRBOT_PPROF_ADDR"},
		func(c *Config) any { return &c.PProf }, nil},
	{Variable{Name: varPProfAddr, Default: "127.0.0.1:6060", Meaning: "host:port of the profiler, never the main port; loopback by default"},
		func(c *Config) any { return &c.PProfAddr }, nil},
}

// Variables lists every variable Load reads, in the order of its problems
// and of the log form. Deployment checks read it.
func Variables() []Variable {
	out := make([]Variable, len(variables))
	for i, v := range variables {
		out[i] = v.Variable
	}
	return out
}

// order is a variable's index in variables; other names (a .env file's)
// sort last.
func order(name string) int {
	if i := slices.IndexFunc(variables, func(v variable) bool { return v.Name == name }); i >= 0 {
		return i
	}
	return len(variables)
}

// convert sets the field from text. HBR_ENDPOINT's *url.URL is left to
// the validator, which checks the text's parts with their own messages.
func convert(field any, text string) error {
	switch p := field.(type) {
	case *string:
		*p = text
	case *[]string:
		*p = strings.Split(text, ",")
	case *int:
		n, err := strconv.ParseInt(text, 10, 32)
		if err != nil {
			return err
		}
		*p = int(n)
	case *bool:
		b, err := strconv.ParseBool(text)
		if err != nil {
			return err
		}
		*p = b
	case *time.Duration:
		d, err := time.ParseDuration(text)
		if err != nil {
			return err
		}
		*p = d
	case *slog.Level:
		return p.UnmarshalText([]byte(text))
	case *map[string]int:
		m := map[string]int{}
		for _, item := range strings.Split(text, ",") {
			k, v, ok := strings.Cut(strings.TrimSpace(item), "=")
			if !ok {
				return errors.New("not ACTION=N")
			}
			n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 32)
			if err != nil {
				return err
			}
			m[strings.TrimSpace(k)] = int(n)
		}
		*p = m
	case **url.URL:
	default:
		panic(fmt.Sprintf("config: no conversion to %T", field))
	}
	return nil
}

// convertReason explains why convert refused value. Only non-secret
// variables have types that can fail to convert, so the value may be shown.
func convertReason(field any, value string, err error) string {
	switch field.(type) {
	case *time.Duration:
		return show(value) + " is not a duration (e.g. 10s)"
	case *bool:
		return show(value) + " is not a boolean (true, false, 1 or 0)"
	case *int:
		if errors.Is(err, strconv.ErrRange) {
			return show(value) + " is out of range"
		}
		return show(value) + " is not a whole number"
	case *slog.Level:
		return show(value) + " is not debug, info, warn or error"
	case *map[string]int:
		return show(value) + " is not ACTION=N,... (e.g. DescribeTask=480,UpgradeBackupClients=480)"
	}
	return show(value) + " is malformed"
}

// logValue is the field's value in the log form: durations as text
// ("10s"), so that JSON logs do not show nanoseconds.
func logValue(field any) slog.Value {
	switch p := field.(type) {
	case *string:
		return slog.StringValue(*p)
	case *[]string:
		return slog.AnyValue(*p)
	case *int:
		return slog.IntValue(*p)
	case *bool:
		return slog.BoolValue(*p)
	case *time.Duration:
		return slog.StringValue(p.String())
	case *slog.Level:
		return slog.StringValue(p.String())
	case *map[string]int:
		return slog.StringValue(rateLimitsText(*p))
	case **url.URL:
		if *p == nil {
			return slog.StringValue("")
		}
		return slog.StringValue((*p).String())
	}
	panic(fmt.Sprintf("config: no log form of %T", field))
}
