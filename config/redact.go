package config

import (
	"fmt"
	"log/slog"
	"net/url"
	"slices"
	"strings"
)

const redacted = "[redacted]"

// Redacted returns a copy of c that is safe to log: every Secret variable's
// value is redacted when set (the Slack tokens, the access key secret and
// the security token are "[redacted]"; so is the password in RedisURL). The
// copy shares nothing with c.
func (c Config) Redacted() Config {
	r := c
	for _, v := range variables {
		switch p := v.field(&r).(type) {
		case *string:
			if v.hide != nil {
				*p = v.hide(*p)
			}
		case *[]string:
			*p = slices.Clone(*p)
		case **url.URL:
			if *p != nil {
				u := **p
				if u.User != nil { // not from Load, which refuses user info
					u.User = url.User(redacted)
				}
				*p = &u
			}
		}
	}
	return r
}

// LogValue implements slog.LogValuer: a group of the redacted settings, keyed
// by their environment variables' names.
func (c Config) LogValue() slog.Value {
	r := c.Redacted()
	attrs := make([]slog.Attr, len(variables))
	for i, v := range variables {
		attrs[i] = slog.Attr{Key: v.Name, Value: logValue(v.field(&r))}
	}
	return slog.GroupValue(attrs...)
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
	if q := u.Query(); len(passwordParams(q)) > 0 {
		// Sentinel's master password (and the like) comes as a query value.
		for _, k := range passwordParams(q) {
			q[k] = []string{redacted}
		}
		u.RawQuery = q.Encode()
		s = u.String()
	}
	if _, ok := u.User.Password(); !ok {
		return s
	}
	// url.URL.Redacted writes the password as "xxxxx"; the username is
	// escaped there, so the first ":xxxxx@" is the password.
	return strings.Replace(u.Redacted(), ":xxxxx@", ":"+redacted+"@", 1)
}

// passwordParams are the query keys that hold a password: password,
// sentinel_password, any key containing "pass".
func passwordParams(q url.Values) []string {
	var keys []string
	for k := range q {
		if strings.Contains(strings.ToLower(k), "pass") {
			keys = append(keys, k)
		}
	}
	return keys
}

// urlSecrets are the passwords a URL holds, in its user info and query.
func urlSecrets(u *url.URL) []string {
	var out []string
	if u.User != nil {
		if p, ok := u.User.Password(); ok {
			out = append(out, p)
		}
	}
	q := u.Query()
	for _, k := range passwordParams(q) {
		out = append(out, q[k]...)
	}
	return out
}
