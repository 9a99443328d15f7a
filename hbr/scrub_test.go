package hbr

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"

	"github.com/hbrbot/hbrbot"
	"github.com/hbrbot/hbrbot/hbrtest"
)

func TestScrub(t *testing.T) {
	const token, keyID = "CAIS.the-sts-token+/=", "STS.NTestKeyId"
	for _, tc := range []struct{ name, in string }{
		{"string to sign", "Specified signature is not matched with our calculation. server string to sign is:POST&%2F&AccessKeyId%3D" +
			keyID + "%26Action%3DDescribeTask%26SecurityToken%3D" + token + "%26Version%3D2017-09-08"},
		{"incomplete signature", "The request signature does not conform to Aliyun standards. server string to sign is:GET&%2F&SecurityToken%3D" + token},
		{"signed URL", `Post "https://hbr.cn-hangzhou.aliyuncs.com/?AccessKeyId=` + keyID + `&SecurityToken=` + token + `&Signature=abc%3D": EOF`},
		{"twice encoded", "AccessKeyId%253D" + keyID + "%2526SecurityToken%253D" + token + "%2526x"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := scrub(tc.in)
			for _, secret := range []string{token, keyID, "CAIS", "abc%3D"} {
				if strings.Contains(got, secret) {
					t.Errorf("scrub kept %q: %q", secret, got)
				}
			}
			if got == "" {
				t.Error("scrub left nothing to say what went wrong")
			}
		})
	}
	if got := scrub("Request was denied due to user flow control."); got != "Request was denied due to user flow control." {
		t.Errorf("scrub changed a harmless message: %q", got)
	}
}

// TestRotatedSecretRevealsNoToken: with STS credentials whose secret HBR
// no longer accepts, HBR answers SignatureDoesNotMatch with its string to
// sign, SecurityToken included. Neither the error nor any log line, debug
// included, repeats the token.
func TestRotatedSecretRevealsNoToken(t *testing.T) {
	const token = "CAIS.sts-token-value-0123456789"
	srv := hbrtest.NewServer(hbrtest.WithCredentials("STS.NKeyId", "current-secret"), hbrtest.WithSecurityToken(token))
	t.Cleanup(srv.Close)
	var logs bytes.Buffer
	o := testOptions(srv.Host())
	o.AccessKeyID, o.AccessKeySecret, o.SecurityToken = "STS.NKeyId", "rotated-away-secret", token
	o.Logger = slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	c := newClient(t, o)
	_, err := c.DescribeTask(testCtx(t), testRegion, "t-1")
	if hbrbot.ErrorCode(err) != hbrtest.CodeSignatureDoesNotMatch {
		t.Fatalf("DescribeTask: %v, want %s", err, hbrtest.CodeSignatureDoesNotMatch)
	}
	var he *hbrbot.HBRError
	if !errors.As(err, &he) {
		t.Fatalf("%v is not an HBR answer", err)
	}
	// The message is what a batch keeps and a report shows.
	for _, where := range []string{err.Error(), he.Message, logs.String()} {
		for _, secret := range []string{token, "rotated-away-secret", "current-secret"} {
			if strings.Contains(where, secret) {
				t.Errorf("%q appears in %q", secret, where)
			}
		}
	}
	if !strings.Contains(logs.String(), "hbr call") {
		t.Error("no debug line of the call: the test would not see a leak")
	}
}
