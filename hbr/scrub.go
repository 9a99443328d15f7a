package hbr

import (
	"strings"
)

// HBR's SignatureDoesNotMatch and IncompleteSignature answers echo the
// server's string to sign, which holds the AccessKeyId and, with STS
// credentials, the SecurityToken; SDK errors can quote the signed URL.
// Every message from HBR or the SDK passes through scrub before it is kept
// in an error, so it reaches no log, thread, audit record or Redis.

// stringToSign starts the echoed string to sign in Alibaba's wording.
const stringToSign = "string to sign"

// secretKeys are the parameters whose values are never repeated.
var secretKeys = []string{"AccessKeyId", "AccessKeySecret", "SecurityToken", "Signature"}

// scrub cuts an echoed string to sign and redacts the values of secret
// parameters, plain or URL-encoded (once or twice).
func scrub(msg string) string {
	if i := strings.Index(strings.ToLower(msg), stringToSign); i >= 0 {
		msg = strings.TrimRight(msg[:i], " :") + " [string to sign withheld]"
	}
	for _, k := range secretKeys {
		msg = redactParam(msg, k)
	}
	return msg
}

// redactParam replaces the value of every key=value (or key%3Dvalue,
// key%253Dvalue) in msg with [redacted].
func redactParam(msg, key string) string {
	var b strings.Builder
	for {
		i := strings.Index(msg, key)
		if i < 0 {
			b.WriteString(msg)
			return b.String()
		}
		b.WriteString(msg[:i+len(key)])
		msg = msg[i+len(key):]
		sep := ""
		for _, s := range []string{"=", "%3D", "%3d", "%253D", "%253d"} {
			if strings.HasPrefix(msg, s) {
				sep = s
				break
			}
		}
		if sep == "" {
			continue
		}
		b.WriteString(sep + "[redacted]")
		msg = msg[len(sep):]
		msg = msg[valueEnd(msg):]
	}
}

// valueEnd is where a parameter's value ends: at the next parameter (&,
// %26, %2526), a space, a quote or the end.
func valueEnd(s string) int {
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '&' || s[i] == ' ' || s[i] == '"' || s[i] == '\'' || s[i] == '\n':
			return i
		case strings.HasPrefix(s[i:], "%26") || strings.HasPrefix(s[i:], "%2526"):
			return i
		}
	}
	return len(s)
}
