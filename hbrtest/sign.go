package hbrtest

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"net/url"
	"strings"
)

// StringToSign builds the Alibaba Cloud RPC v1 string to sign:
//
//	METHOD + "&%2F&" + percentEncode(canonicalQuery)
//
// canonicalQuery is every parameter except "Signature", sorted by key, each
// key and value RFC 3986 encoded and joined as k=v with "&". Empty values
// (the SDK always sends "SignatureType=") are part of it. The encoding is
// done exactly like sdk/auth/rpc_signature_composer.go: url.Values.Encode,
// then "+"→"%20", "*"→"%2A", "%7E"→"~", so that what the fake computes
// matches what the real SDK computes byte for byte.
//
// method is used verbatim (Alibaba uses the HTTP method, always upper case).
func StringToSign(method string, params url.Values) string {
	p := make(url.Values, len(params))
	for k, v := range params {
		if k == "Signature" {
			continue
		}
		p[k] = v
	}
	canonical := p.Encode() // sorts by key
	canonical = strings.ReplaceAll(canonical, "+", "%20")
	canonical = strings.ReplaceAll(canonical, "*", "%2A")
	canonical = strings.ReplaceAll(canonical, "%7E", "~")
	return method + "&%2F&" + url.QueryEscape(canonical)
}

// Sign returns the RPC v1 signature of params (the "Signature" parameter,
// if present, is ignored): base64(HMAC-SHA1(secret+"&", StringToSign)).
func Sign(method string, params url.Values, secret string) string {
	mac := hmac.New(sha1.New, []byte(secret+"&"))
	mac.Write([]byte(StringToSign(method, params)))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}
