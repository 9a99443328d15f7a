package config

import (
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
)

const redacted = "[redacted]"

// Redacted returns a copy of c that is safe to log: the Slack tokens, the
// access key secret and the security token are "[redacted]" when set, and so
// is the password in RedisURL. The copy shares nothing with c.
func (c Config) Redacted() Config {
	r := c
	r.SlackAppToken = redact(c.SlackAppToken)
	r.SlackBotToken = redact(c.SlackBotToken)
	r.AccessKeySecret = redact(c.AccessKeySecret)
	r.SecurityToken = redact(c.SecurityToken)
	r.RedisURL = redactRedisURL(c.RedisURL)
	if c.HBREndpoint != nil {
		u := *c.HBREndpoint
		if u.User != nil { // not from Load, which refuses user info
			u.User = url.User(redacted)
		}
		r.HBREndpoint = &u
	}
	r.Approvers = slices.Clone(c.Approvers)
	r.AllowedChannels = slices.Clone(c.AllowedChannels)
	return r
}

// LogValue implements slog.LogValuer: a group of the redacted settings, keyed
// by their environment variables' names.
func (c Config) LogValue() slog.Value {
	r := c.Redacted()
	endpoint := ""
	if r.HBREndpoint != nil {
		endpoint = r.HBREndpoint.String()
	}
	return slog.GroupValue(
		slog.String(varSlackAppToken, r.SlackAppToken),
		slog.String(varSlackBotToken, r.SlackBotToken),
		slog.String(varSlackAPIURL, r.SlackAPIURL),
		slog.String(varAccessKeyID, r.AccessKeyID),
		slog.String(varAccessKeySecret, r.AccessKeySecret),
		slog.String(varSecurityToken, r.SecurityToken),
		slog.String(varRegion, r.Region),
		slog.String(varHBREndpoint, endpoint),
		slog.String(varRedisURL, r.RedisURL),
		slog.String(varRedisMode, r.RedisMode),
		slog.Duration(varPollInterval, r.PollInterval),
		slog.String(varPollPolicy, r.PollPolicy),
		slog.Duration(varPollMinInterval, r.PollMinInterval),
		slog.Duration(varPollMaxInterval, r.PollMaxInterval),
		slog.Duration(varTaskTimeout, r.TaskTimeout),
		slog.Duration(varRequestTTL, r.RequestTTL),
		slog.Any(varApprovers, r.Approvers),
		slog.Any(varRequesters, r.Requesters),
		slog.Int(varRequiredApprovals, r.RequiredApprovals),
		slog.Bool(varAllowSelfApproval, r.AllowSelfApproval),
		slog.Any(varAllowedChannels, r.AllowedChannels),
		slog.Int(varMaxTargets, r.MaxTargets),
		slog.String(varHTTPAddr, r.HTTPAddr),
		slog.Duration(varLease, r.Lease),
		slog.Int(varHBRRateLimit, r.HBRRateLimit),
		slog.String(varPolicyFile, r.PolicyFile),
		slog.Bool(varDryRun, r.DryRun),
		slog.String(varLogFormat, r.LogFormat),
		slog.String(varLogLevel, r.LogLevel.String()),
		slog.Bool(varPProf, r.PProf),
	)
}

// String formats the redacted configuration, so that fmt's %v and %+v never
// print a secret.
func (c Config) String() string {
	var b strings.Builder
	b.WriteString("config.Config{")
	for i, a := range c.LogValue().Group() {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "%s=%v", a.Key, a.Value)
	}
	b.WriteString("}")
	return b.String()
}

// GoString is String, so that %#v never prints a secret either.
func (c Config) GoString() string { return c.String() }

func redact(s string) string {
	if s == "" {
		return ""
	}
	return redacted
}

// redactRedisURL replaces the password in a Redis URL with "[redacted]". A
// URL that does not parse is redacted whole.
func redactRedisURL(s string) string {
	if s == "" {
		return ""
	}
	u, err := url.Parse(s)
	if err != nil {
		return redacted
	}
	if _, ok := u.User.Password(); !ok {
		return s
	}
	// url.URL.Redacted writes the password as "xxxxx"; the username is
	// escaped there, so the first ":xxxxx@" is the password.
	return strings.Replace(u.Redacted(), ":xxxxx@", ":"+redacted+"@", 1)
}
