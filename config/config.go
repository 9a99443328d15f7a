// Package config reads hbrbot's configuration from environment variables,
// optionally supplied by a .env file, and validates all of it at once.
//
// The variables, their defaults and their meaning are listed in the outside
// contract (CONTRACT.md). Load reports every missing or malformed variable in
// one *Error, one line per variable, and never includes a secret (a Slack
// token, the Alibaba Cloud access key secret or security token, or a Redis
// password) in an error message. Config.Redacted, Config.LogValue and
// Config.String give forms that are safe to log.
package config

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/joho/godotenv"
	"github.com/redis/go-redis/v9"

	"github.com/hbrbot/hbrbot"
)

// Limits enforced by Load.
const (
	// MinPollInterval is the shortest HBRBOT_POLL_INTERVAL accepted. It is
	// far below anything sensible against the real HBR API (the default is
	// 10s) and exists so that tests can poll a fake quickly.
	MinPollInterval = 100 * time.Millisecond
	// MinLease is the shortest HBRBOT_LEASE: one step of work (an HBR call
	// with its retries, a Slack post) must fit in a lease.
	MinLease = 5 * time.Second
	// MinMaxTargets and MaxMaxTargets bound HBRBOT_MAX_TARGETS.
	MinMaxTargets = 1
	MaxMaxTargets = 10000
	// MaxHBRRateLimit bounds HBRBOT_HBR_RATE_LIMIT: a hundred times HBR's
	// documented 600 a minute per API, for accounts with a raised quota
	// (and for load tests against a fake).
	MaxHBRRateLimit = 60000
	// DefaultHBRRateLimits is HBRBOT_HBR_RATE_LIMITS' default: each action
	// at 80% of HBR's documented 600 a minute.
	DefaultHBRRateLimits = "DescribeTask=480,UpgradeBackupClients=480,DescribeBackupClients=480"
	// DefaultPollMaxIntervals is HBRBOT_POLL_MAX_INTERVAL's default in
	// intervals: measured to halve the calls of fixed polling.
	DefaultPollMaxIntervals = 4.5
)

// HBRActions are the actions HBRBOT_HBR_RATE_LIMITS may name.
var HBRActions = []string{"DescribeTask", "UpgradeBackupClients", "DescribeBackupClients"}

// Config is the validated configuration. Load fills every field; a Config
// returned together with an error is the zero value.
type Config struct {
	// SlackAppToken is SLACK_APP_TOKEN, an app-level token "xapp-..." for
	// Socket Mode. Required. Secret.
	SlackAppToken string
	// SlackBotToken is SLACK_BOT_TOKEN, a bot token "xoxb-...". Required.
	// Secret.
	SlackBotToken string
	// SlackAPIURL is SLACK_API_URL, the Slack Web API base, an absolute
	// http(s) URL that always ends with "/". Default
	// "https://slack.com/api/".
	SlackAPIURL string

	// AccessKeyID, AccessKeySecret and SecurityToken are
	// ALIBABA_CLOUD_ACCESS_KEY_ID, ALIBABA_CLOUD_ACCESS_KEY_SECRET and
	// ALIBABA_CLOUD_SECURITY_TOKEN. All optional: when the ID and secret are
	// empty the Alibaba SDK's default credential chain applies. The ID and
	// the secret are set together or not at all; the security token needs
	// both. AccessKeySecret and SecurityToken are secret.
	AccessKeyID, AccessKeySecret, SecurityToken string

	// Region is ALIBABA_CLOUD_REGION_ID, e.g. "cn-hangzhou". Required.
	Region string
	// HBREndpoint is HBR_ENDPOINT, scheme://host[:port] with scheme http or
	// https and no path, query or fragment. Default
	// https://hbr.<Region>.aliyuncs.com. Never nil in a Config from Load.
	HBREndpoint *url.URL

	// RedisURL is REDIS_URL, "redis://[user:pass@]host:port/db" or
	// "rediss://..."; it has been checked with redis.ParseURL. Empty means
	// the embedded in-process store. May hold a password.
	RedisURL string
	// RedisMode is REDIS_MODE: "single" (default), "sentinel" (REDIS_URL
	// names a Sentinel and ?master_name=, more Sentinels as &addr=) or
	// "cluster" (REDIS_URL names a node, more as ?addr=).
	RedisMode string

	// PollInterval is HBRBOT_POLL_INTERVAL, default 10s, at least
	// MinPollInterval (100ms): the wait before a job's first DescribeTask,
	// and fixed polling's between any two.
	PollInterval time.Duration
	// PollPolicy is HBRBOT_POLL_POLICY: "adaptive" (default) schedules the
	// next DescribeTask at the job's predicted end, from its progress rate,
	// no sooner than PollMinInterval and, below 10% progress, no later
	// than PollMaxInterval; "fixed" polls every PollInterval.
	PollPolicy string
	// PollMinInterval is HBRBOT_POLL_MIN_INTERVAL, the adaptive policy's
	// shortest interval: default a fifth of PollInterval (at least
	// MinPollInterval), at most PollInterval.
	PollMinInterval time.Duration
	// PollMaxInterval is HBRBOT_POLL_MAX_INTERVAL, the adaptive policy's
	// longest interval for a job below 10% progress: default
	// DefaultPollMaxIntervals (4.5) times PollInterval, at most 1h; it
	// trades report lag on jobs that report no progress for fewer
	// DescribeTask calls.
	PollMaxInterval time.Duration
	// TaskTimeout is HBRBOT_TASK_TIMEOUT, default 20m, positive.
	TaskTimeout time.Duration
	// RequestTTL is HBRBOT_REQUEST_TTL, default 1h, positive.
	RequestTTL time.Duration

	// Approvers is HBRBOT_APPROVERS: Slack user IDs (U..., W...) and
	// user-group IDs (S...), without duplicates, in the order given. Empty
	// means anyone may approve.
	Approvers []string
	// Requesters is HBRBOT_REQUESTERS, the same form as Approvers: who may
	// ask for an upgrade. Empty means anyone.
	Requesters []string
	// RequiredApprovals is HBRBOT_REQUIRED_APPROVALS, default 1: how many
	// distinct approvers must approve (N of M).
	RequiredApprovals int
	// AllowSelfApproval is HBRBOT_ALLOW_SELF_APPROVAL, default false.
	AllowSelfApproval bool
	// AllowedChannels is HBRBOT_ALLOWED_CHANNELS: Slack channel IDs (C...,
	// G..., D...), without duplicates, in the order given. Empty means any
	// channel.
	AllowedChannels []string
	// MaxTargets is HBRBOT_MAX_TARGETS, default 500, between MinMaxTargets
	// and MaxMaxTargets.
	MaxTargets int
	// HTTPAddr is HBRBOT_HTTP_ADDR, host:port for /healthz, /readyz and
	// /metrics, default ":8080".
	HTTPAddr string

	// Lease is HBRBOT_LEASE, default 1m, at least MinLease: how long a
	// replica owns a unit of work it claimed. A replica killed while
	// holding one delays that work by at most this long.
	Lease time.Duration
	// HBRRateLimit is HBRBOT_HBR_RATE_LIMIT, default 1800: the most HBR
	// calls per minute that all replicas together make, all actions
	// together; by default above the sum of HBRRateLimits, so it does not
	// bind before them.
	HBRRateLimit int
	// HBRRateLimits is HBRBOT_HBR_RATE_LIMITS: each action's calls per
	// minute, all replicas together (HBR allows 600 per action and
	// account); default DefaultHBRRateLimits, 480 each. Every action of
	// HBRActions has an entry.
	HBRRateLimits map[string]int
	// PolicyFile is HBRBOT_POLICY_FILE: per-channel rules (YAML); the
	// variables above are its defaults. Empty: no file.
	PolicyFile string
	// DryRun is HBRBOT_DRY_RUN: never call UpgradeBackupClients.
	DryRun bool
	// LogFormat is HBRBOT_LOG_FORMAT: json (default) or text.
	LogFormat string
	// LogLevel is HBRBOT_LOG_LEVEL: debug, info (default), warn or error.
	LogLevel slog.Level
	// RedisDurability is HBRBOT_REDIS_DURABILITY, default auto: auto, none,
	// replica or aof.
	RedisDurability string
	// PProf is HBRBOT_PPROF, default false: serve net/http/pprof under
	// /debug/pprof/ on PProfAddr.
	PProf bool
	// PProfAddr is HBRBOT_PPROF_ADDR, default 127.0.0.1:6060: the
	// profiler's own address, which must differ from HTTPAddr's.
	PProfAddr string
	// AllowedTeams is HBRBOT_ALLOWED_TEAMS: Slack workspace (T...) and
	// Enterprise Grid (E...) IDs besides the bot's own whose members may
	// act.
	AllowedTeams []string
	// UserCommands and ChannelCommands are HBRBOT_USER_COMMANDS (default
	// 10) and HBRBOT_CHANNEL_COMMANDS (default 30): upgrade commands a
	// minute, per user and per channel, all replicas together.
	UserCommands, ChannelCommands int
	// UserPending is HBRBOT_USER_PENDING, default 5: requests one user may
	// have awaiting approval at once.
	UserPending int
}

// Load reads the configuration. Each variable's value comes from getenv (the
// real environment) when that is not empty, else from the .env file named
// envFile, else from its default. Values are trimmed of surrounding
// whitespace; a value that is empty after trimming counts as unset.
//
// getenv nil means os.Getenv. envFile "" means no file; a file that does not
// exist is not an error, one that cannot be read or parsed is. Variables in
// the file that hbrbot does not know are ignored.
//
// On any problem Load returns the zero Config and an *Error naming every bad
// variable.
func Load(getenv func(string) string, envFile string) (Config, error) {
	if getenv == nil {
		getenv = os.Getenv
	}

	environ, err := environment(getenv, envFile)
	if err != nil {
		return Config{}, err
	}
	return parse(environ, nil)
}

// environment collects the known variables: getenv's values first, the
// .env file's for the rest.
func environment(getenv func(string) string, envFile string) (map[string]string, error) {
	if getenv == nil {
		getenv = os.Getenv
	}
	var fileValues map[string]string
	if envFile != "" {
		m, err := godotenv.Read(envFile)
		switch {
		case err == nil:
			fileValues = m
		case errors.Is(err, fs.ErrNotExist):
		default:
			// The file's variables are unknown, so checking the rest would
			// only add noise ("required" for what the file meant to set).
			return nil, &Error{Problems: []Problem{{Var: envFile, Reason: dotenvReason(err)}}}
		}
	}

	environ := make(map[string]string, len(variables))
	for _, vr := range variables {
		v := strings.TrimSpace(getenv(vr.Name))
		if v == "" {
			v = strings.TrimSpace(fileValues[vr.Name])
		}
		if v != "" {
			environ[vr.Name] = v
		}
	}

	return environ, nil
}

// parse validates environ; with only set, problems of other variables are
// ignored (their fields may then be zero).
func parse(environ map[string]string, only map[string]bool) (Config, error) {
	v := validator{environ: environ, failed: map[string]bool{}}
	cfg := v.validate(v.convert())
	if only != nil {
		kept := v.problems[:0]
		for _, p := range v.problems {
			if only[p.Var] {
				kept = append(kept, p)
			}
		}
		v.problems = kept
	}
	if len(v.problems) > 0 {
		return Config{}, v.err()
	}
	return cfg, nil
}

// LoadRedis reads only what reaching Redis needs (REDIS_URL, REDIS_MODE),
// for commands such as `hbrbot audit` that need nothing else.
func LoadRedis(getenv func(string) string, envFile string) (url, mode string, err error) {
	environ, err := environment(getenv, envFile)
	if err != nil {
		return "", "", err
	}
	cfg, err := parse(environ, map[string]bool{varRedisURL: true, varRedisMode: true})
	return cfg.RedisURL, cfg.RedisMode, err
}

// LoadHTTPAddr reads only HBRBOT_HTTP_ADDR, for `hbrbot healthcheck`,
// which asks the running bot on that address.
func LoadHTTPAddr(getenv func(string) string, envFile string) (string, error) {
	environ, err := environment(getenv, envFile)
	if err != nil {
		return "", err
	}
	cfg, err := parse(environ, map[string]bool{varHTTPAddr: true})
	return cfg.HTTPAddr, err
}

// validator collects problems.
type validator struct {
	environ  map[string]string
	failed   map[string]bool // variables required and unset, or that did not convert
	problems []Problem
}

func (v *validator) add(name, format string, args ...any) {
	v.problems = append(v.problems, Problem{Var: name, Reason: fmt.Sprintf(format, args...)})
}

// convert converts each variable's text, or its default, to its field's
// type. A variable that is required and unset, or does not convert, is a
// problem, and failed for the validator.
func (v *validator) convert() Config {
	var raw Config
	for _, vr := range variables {
		text, set := v.environ[vr.Name]
		switch {
		case set:
		case vr.Required:
			v.failed[vr.Name] = true
			v.add(vr.Name, "required")
			continue
		default:
			text = vr.Default
		}
		if text == "" {
			continue
		}
		field := vr.field(&raw)
		if err := convert(field, text); err != nil {
			v.failed[vr.Name] = true
			v.add(vr.Name, "%s", convertReason(field, text, err))
		}
	}
	return raw
}

// validate checks raw, the variables converted to their fields' types,
// and returns the Config that Load gives.
func (v *validator) validate(raw Config) Config {
	var c Config

	c.SlackAppToken = v.token(varSlackAppToken, raw.SlackAppToken, "xapp-", "an app-level token")
	c.SlackBotToken = v.token(varSlackBotToken, raw.SlackBotToken, "xoxb-", "a bot token")
	c.SlackAPIURL = v.slackAPIURL(raw.SlackAPIURL)

	c.AccessKeyID, c.AccessKeySecret, c.SecurityToken = v.credentials(raw.AccessKeyID, raw.AccessKeySecret, raw.SecurityToken)

	regionOK := false
	if !v.failed[varRegion] {
		if hbrbot.ValidRegion(raw.Region) {
			c.Region = raw.Region
			regionOK = true
		} else {
			v.add(varRegion, "%s is not a region ID (e.g. cn-hangzhou)", show(raw.Region))
		}
	}
	switch {
	case v.environ[varHBREndpoint] != "":
		c.HBREndpoint = v.hbrEndpoint(v.environ[varHBREndpoint])
	case regionOK:
		c.HBREndpoint = &url.URL{Scheme: "https", Host: "hbr." + c.Region + ".aliyuncs.com"}
	}

	c.RedisMode = raw.RedisMode
	switch raw.RedisMode {
	case "single", "sentinel", "cluster":
		c.RedisURL = v.redisURL(raw.RedisURL, raw.RedisMode)
	default:
		v.add(varRedisMode, "%s is not single, sentinel or cluster", show(raw.RedisMode))
	}

	c.PollInterval = v.duration(varPollInterval, raw.PollInterval, MinPollInterval)
	c.PollPolicy = raw.PollPolicy
	if raw.PollPolicy != "adaptive" && raw.PollPolicy != "fixed" {
		v.add(varPollPolicy, "%s is not adaptive or fixed", show(raw.PollPolicy))
	}
	switch {
	case v.failed[varPollMinInterval] || v.failed[varPollInterval]:
	case raw.PollMinInterval == 0:
		c.PollMinInterval = max(c.PollInterval/5, MinPollInterval)
	case raw.PollMinInterval < MinPollInterval || raw.PollMinInterval > c.PollInterval:
		v.add(varPollMinInterval, "%s is not between %s and HBRBOT_POLL_INTERVAL (%s)", show(v.environ[varPollMinInterval]), MinPollInterval, c.PollInterval)
	default:
		c.PollMinInterval = raw.PollMinInterval
	}
	switch {
	case v.failed[varPollMaxInterval] || v.failed[varPollInterval]:
	case raw.PollMaxInterval == 0:
		c.PollMaxInterval = min(time.Duration(DefaultPollMaxIntervals*float64(c.PollInterval)), time.Hour)
	case raw.PollMaxInterval < c.PollInterval || raw.PollMaxInterval > time.Hour:
		v.add(varPollMaxInterval, "%s is not between HBRBOT_POLL_INTERVAL (%s) and 1h", show(v.environ[varPollMaxInterval]), c.PollInterval)
	default:
		c.PollMaxInterval = raw.PollMaxInterval
	}
	c.TaskTimeout = v.duration(varTaskTimeout, raw.TaskTimeout, 0)
	c.RequestTTL = v.duration(varRequestTTL, raw.RequestTTL, 0)
	c.Lease = v.duration(varLease, raw.Lease, MinLease)
	if !v.failed[varHBRRateLimit] {
		if raw.HBRRateLimit < 1 || raw.HBRRateLimit > MaxHBRRateLimit {
			v.add(varHBRRateLimit, "%d is not between 1 and %d calls a minute", raw.HBRRateLimit, MaxHBRRateLimit)
		}
		c.HBRRateLimit = raw.HBRRateLimit
	}
	c.HBRRateLimits = v.rateLimits(raw.HBRRateLimits)

	c.Approvers = v.ids(varApprovers, raw.Approvers, hbrbot.ValidUserOrGroupID, "Slack user or user-group IDs (U..., W..., S...)")
	c.AllowSelfApproval = raw.AllowSelfApproval
	c.Requesters = v.ids(varRequesters, raw.Requesters, hbrbot.ValidUserOrGroupID, "Slack user or user-group IDs (U..., W..., S...)")
	if !v.failed[varRequiredApprovals] {
		if !hbrbot.ValidApprovals(raw.RequiredApprovals) {
			v.add(varRequiredApprovals, "%d is not between %d and %d", raw.RequiredApprovals, hbrbot.MinApprovals, hbrbot.MaxApprovals)
		}
		c.RequiredApprovals = raw.RequiredApprovals
	}
	c.PolicyFile = raw.PolicyFile
	c.DryRun = raw.DryRun
	c.PProf = raw.PProf
	c.RedisDurability = raw.RedisDurability
	switch raw.RedisDurability {
	case "auto", "none", "replica", "aof":
	default:
		v.add(varRedisDurability, "%s is not auto, none, replica or aof", show(raw.RedisDurability))
	}
	c.PProfAddr = v.hostPort(varPProfAddr, raw.PProfAddr)
	if c.PProfAddr != "" && c.PProfAddr == raw.HTTPAddr {
		v.add(varPProfAddr, "must differ from HBRBOT_HTTP_ADDR: the profiler is never served on the main port")
	}
	c.AllowedTeams = v.ids(varAllowedTeams, raw.AllowedTeams, hbrbot.ValidTeamID, "Slack workspace or Enterprise Grid IDs (T..., E...)")
	c.UserCommands = v.perMinute(varUserCommands, raw.UserCommands)
	c.ChannelCommands = v.perMinute(varChannelCommands, raw.ChannelCommands)
	c.UserPending = v.perMinute(varUserPending, raw.UserPending)
	c.LogFormat = raw.LogFormat
	if raw.LogFormat != "json" && raw.LogFormat != "text" {
		v.add(varLogFormat, "%s is not json or text", show(raw.LogFormat))
	}
	c.LogLevel = raw.LogLevel
	c.AllowedChannels = v.ids(varAllowedChannels, raw.AllowedChannels, hbrbot.ValidChannelID, "Slack channel IDs (C..., G..., D...)")

	if !v.failed[varMaxTargets] {
		if raw.MaxTargets < MinMaxTargets || raw.MaxTargets > MaxMaxTargets {
			v.add(varMaxTargets, "%d is not between %d and %d", raw.MaxTargets, MinMaxTargets, MaxMaxTargets)
		}
		c.MaxTargets = raw.MaxTargets
	}

	c.HTTPAddr = v.hostPort(varHTTPAddr, raw.HTTPAddr)
	return c
}

// rateLimits checks HBRBOT_HBR_RATE_LIMITS: known actions, each 1 to
// MaxHBRRateLimit; actions it does not name keep their default.
func (v *validator) rateLimits(given map[string]int) map[string]int {
	if v.failed[varHBRRateLimits] {
		return nil
	}
	out := map[string]int{}
	var defaults map[string]int
	_ = convert(&defaults, DefaultHBRRateLimits)
	maps.Copy(out, defaults)
	for _, action := range slices.Sorted(maps.Keys(given)) {
		n := given[action]
		switch {
		case !slices.Contains(HBRActions, action):
			v.add(varHBRRateLimits, "%s is not an action the bot calls (%s)", show(action), strings.Join(HBRActions, ", "))
		case n < 1 || n > MaxHBRRateLimit:
			v.add(varHBRRateLimits, "%s=%d is not between 1 and %d calls a minute", action, n, MaxHBRRateLimit)
		default:
			out[action] = n
		}
	}
	return out
}

// rateLimitsText is the ACTION=N,... form of limits, in HBRActions' order.
func rateLimitsText(limits map[string]int) string {
	var parts []string
	for _, a := range HBRActions {
		if n, ok := limits[a]; ok {
			parts = append(parts, fmt.Sprintf("%s=%d", a, n))
		}
	}
	return strings.Join(parts, ",")
}

// perMinute checks a flood limit: at least 1, at most 10,000.
func (v *validator) perMinute(name string, n int) int {
	if !v.failed[name] && (n < 1 || n > 10000) {
		v.add(name, "%d is not between 1 and 10000", n)
	}
	return n
}

// token checks a Slack token. The value is secret and never shown.
func (v *validator) token(name, value, prefix, what string) string {
	if v.failed[name] {
		return ""
	}
	switch {
	case placeholder(value):
		v.add(name, "is a placeholder, not a token: %s", TokenSource(name))
	case !strings.HasPrefix(value, prefix) || len(value) == len(prefix):
		v.add(name, "must be %s starting with %q", what, prefix)
	case hasSpace(value):
		v.add(name, "must not contain whitespace")
	}
	return value
}

// TokenSource says where a real Slack token of the variable name comes
// from: the app made from slack-app-manifest.yaml, as the README's "Slack
// app" section tells.
func TokenSource(name string) string {
	switch name {
	case varSlackAppToken:
		return `create the Slack app from slack-app-manifest.yaml, then Basic Information > App-Level Tokens > one with connections:write (README "Slack app")`
	case varSlackBotToken:
		return `create the Slack app from slack-app-manifest.yaml and install it: the Bot User OAuth Token (README "Slack app")`
	}
	return `see README "Slack app"`
}

// placeholder reports whether a value is an example's stand-in rather than
// a value anyone was given: "xapp-...", "xoxb-REPLACE-ME", "<token>".
func placeholder(value string) bool {
	if strings.Contains(value, "...") || strings.ContainsAny(value, "…<>") {
		return true
	}
	lower := strings.ToLower(value)
	for _, word := range []string{"replace", "changeme", "change-me", "change_me", "placeholder", "your-", "your_", "xxxx"} {
		if strings.Contains(lower, word) {
			return true
		}
	}
	return false
}

func (v *validator) credentials(id, secret, token string) (string, string, string) {
	if hasSpace(id) {
		v.add(varAccessKeyID, "must not contain whitespace")
	}
	if hasSpace(secret) {
		v.add(varAccessKeySecret, "must not contain whitespace")
	}
	if hasSpace(token) {
		v.add(varSecurityToken, "must not contain whitespace")
	}
	switch {
	case id != "" && secret == "":
		v.add(varAccessKeySecret, "required when %s is set", varAccessKeyID)
	case id == "" && secret != "":
		v.add(varAccessKeyID, "required when %s is set", varAccessKeySecret)
	case id == "" && secret == "" && token != "":
		v.add(varSecurityToken, "needs %s and %s", varAccessKeyID, varAccessKeySecret)
	}
	return id, secret, token
}

func (v *validator) slackAPIURL(value string) string {
	u, ok := v.httpURL(varSlackAPIURL, value)
	if !ok {
		return ""
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		v.add(varSlackAPIURL, "must not have a query or fragment")
		return ""
	}
	if !strings.HasSuffix(u.Path, "/") {
		u.Path += "/"
		if u.RawPath != "" {
			u.RawPath += "/"
		}
	}
	return u.String()
}

func (v *validator) hbrEndpoint(value string) *url.URL {
	u, ok := v.httpURL(varHBREndpoint, value)
	if !ok {
		return nil
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		v.add(varHBREndpoint, "%s must be scheme://host[:port], without path, query or fragment", show(value))
		return nil
	}
	return &url.URL{Scheme: u.Scheme, Host: u.Host}
}

// httpURL parses an absolute http or https URL with a host, no user info
// and, if any, a valid port.
func (v *validator) httpURL(name, value string) (*url.URL, bool) {
	if value == "" { // only when the variable has no default and is unset
		return nil, false
	}
	shown := show(value)
	if strings.Contains(value, "@") {
		shown = "value" // may hold credentials
	}
	u, err := url.Parse(value)
	if err != nil {
		v.add(name, "%s is not a URL", shown)
		return nil, false
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		v.add(name, "%s must be an absolute http:// or https:// URL", shown)
		return nil, false
	}
	if u.Opaque != "" || u.Hostname() == "" {
		v.add(name, "%s has no host", shown)
		return nil, false
	}
	if u.User != nil {
		v.add(name, "must not contain user info")
		return nil, false
	}
	if strings.HasSuffix(u.Host, ":") {
		v.add(name, "%s has an empty port", shown)
		return nil, false
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			v.add(name, "port %s is not between 1 and 65535", show(p))
			return nil, false
		}
	}
	return u, true
}

// redisURL checks REDIS_URL with redis.ParseURL. The URL may hold a
// password, so the value is never shown, and neither is url.Parse's message
// when the URL has user info.
func (v *validator) redisURL(value, mode string) string {
	if value == "" {
		return ""
	}
	u, perr := url.Parse(value)
	if perr == nil && u.Scheme != "redis" && u.Scheme != "rediss" {
		v.add(varRedisURL, "scheme must be redis:// or rediss://, not %s", show(u.Scheme+"://"))
		return ""
	}
	var err error
	switch mode {
	case "sentinel":
		_, err = redis.ParseFailoverURL(value)
		if err == nil && u.Query().Get("master_name") == "" {
			err = errors.New("redis: sentinel mode needs ?master_name=")
		}
	case "cluster":
		_, err = redis.ParseClusterURL(value)
	default:
		_, err = redis.ParseURL(value)
	}
	if err != nil {
		reason := "not a Redis URL (redis://[user:pass@]host:port/db or rediss://...)"
		var uerr *url.Error
		switch {
		case errors.As(err, &uerr):
			// url.Error's message holds the whole URL; its cause may hold a
			// piece of the user info.
			if !strings.Contains(value, "@") {
				reason += ": " + uerr.Err.Error()
			}
		default:
			reason += ": " + strings.TrimPrefix(err.Error(), "redis: ")
		}
		v.add(varRedisURL, "%s", reason)
		return ""
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			v.add(varRedisURL, "port %s is not between 1 and 65535", show(p))
			return ""
		}
	}
	return value
}

func (v *validator) duration(name string, d, atLeast time.Duration) time.Duration {
	if v.failed[name] {
		return 0
	}
	switch {
	case d <= 0:
		v.add(name, "%s must be positive", show(v.environ[name]))
	case d < atLeast:
		v.add(name, "%s is less than the minimum %s", show(v.environ[name]), atLeast)
	}
	return d
}

// ids trims the items, drops empty ones and duplicates, and checks each
// with valid.
func (v *validator) ids(name string, items []string, valid func(string) bool, what string) []string {
	if v.failed[name] {
		return nil
	}
	var out, bad []string
	for _, it := range items {
		it = strings.TrimSpace(it)
		if it == "" || slices.Contains(out, it) {
			continue
		}
		out = append(out, it)
		if !valid(it) {
			bad = append(bad, show(it))
		}
	}
	if len(bad) > 0 {
		const most = 5
		more := ""
		if len(bad) > most {
			more = fmt.Sprintf(" (and %d more)", len(bad)-most)
			bad = bad[:most]
		}
		if len(bad) == 1 {
			v.add(name, "%s is not one of %s", bad[0], what)
		} else {
			v.add(name, "%s%s are not %s", strings.Join(bad, ", "), more, what)
		}
	}
	return out
}

func (v *validator) hostPort(name, value string) string {
	if v.failed[name] {
		return ""
	}
	_, port, err := net.SplitHostPort(value)
	if err != nil {
		v.add(name, "%s is not host:port (e.g. :8080)", show(value))
		return ""
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		v.add(name, "port %s is not a number between 0 and 65535", show(port))
		return ""
	}
	return value
}

// err builds the *Error: problems in the variables' order, secrets scrubbed
// from every reason as a last line of defence.
func (v *validator) err() *Error {
	var secrets []string
	for _, vr := range variables {
		if vr.Secrecy == Secret && vr.Name != varRedisURL { // a Redis URL's secret is its password, below
			secrets = append(secrets, v.environ[vr.Name])
		}
	}
	if u, err := url.Parse(v.environ[varRedisURL]); err == nil {
		secrets = append(secrets, urlSecrets(u)...)
	}
	problems := slices.Clone(v.problems)
	for i := range problems {
		problems[i].Reason = scrub(problems[i].Reason, secrets)
	}
	slices.SortStableFunc(problems, func(a, b Problem) int {
		return order(a.Var) - order(b.Var)
	})
	return &Error{Problems: problems}
}

// scrub replaces every secret of at least 6 characters in s with
// "[redacted]"; shorter ones (such as a bare "xapp-") would match the
// reasons' own words.
func scrub(s string, secrets []string) string {
	for _, sec := range secrets {
		if len(sec) >= 6 {
			s = strings.ReplaceAll(s, sec, redacted)
		}
	}
	return s
}

func hasSpace(s string) bool {
	return strings.ContainsFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) })
}

// show quotes a non-secret value for an error message, cut to about 40
// characters.
func show(s string) string {
	const most = 40
	if r := []rune(s); len(r) > most {
		s = string(r[:most]) + "…"
	}
	return strconv.Quote(s)
}

// dotenvReason describes a .env file godotenv could not read without
// quoting its content, which may hold secrets.
func dotenvReason(err error) string {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return "cannot read: " + pe.Err.Error()
	}
	msg := err.Error()
	switch {
	case strings.HasPrefix(msg, "unterminated quoted value"):
		return "malformed: unterminated quoted value"
	case strings.HasPrefix(msg, "unexpected character"):
		msg, _, _ = strings.Cut(msg, " near ")
		return "malformed: " + msg
	}
	return "malformed"
}
