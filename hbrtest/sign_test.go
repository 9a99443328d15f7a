package hbrtest

import (
	"net/url"
	"testing"

	"github.com/aliyun/alibaba-cloud-sdk-go/sdk/auth"
	"github.com/aliyun/alibaba-cloud-sdk-go/sdk/auth/credentials"
	"github.com/aliyun/alibaba-cloud-sdk-go/sdk/requests"
)

func TestSignVectors(t *testing.T) {
	// Published ECS DescribeRegions vector (notes §5).
	published := url.Values{
		"AccessKeyId":      {"testid"},
		"Action":           {"DescribeRegions"},
		"Format":           {"XML"},
		"SignatureMethod":  {"HMAC-SHA1"},
		"SignatureNonce":   {"3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf"},
		"SignatureVersion": {"1.0"},
		"Timestamp":        {"2016-02-23T12:46:24Z"},
		"Version":          {"2014-05-26"},
	}
	// The SDK's own vector (sdk/auth/rpc_signature_composer_test.go): an
	// empty CommonRequest, so Action and Version are empty but present.
	sdkParams := url.Values{
		"AccessKeyId":      {"accessKeyId"},
		"Action":           {""},
		"Format":           {"JSON"},
		"RegionId":         {"regionId"},
		"SignatureMethod":  {"HMAC-SHA1"},
		"SignatureNonce":   {"MOCK_UUID"},
		"SignatureType":    {""},
		"SignatureVersion": {"1.0"},
		"Timestamp":        {"mock date"},
		"Version":          {""},
	}
	sdkSTS := cloneValues(sdkParams)
	sdkSTS.Set("SecurityToken", "accessKeyStsToken")
	withSig := cloneValues(published)
	withSig.Set("Signature", "ignored")

	tests := []struct {
		name, method, secret string
		params               url.Values
		want                 string
	}{
		{"published", "GET", "testsecret", published, "OLeaidS1JvxuMvnyHOwuJ+uX5qY="},
		{"published Signature param ignored", "GET", "testsecret", withSig, "OLeaidS1JvxuMvnyHOwuJ+uX5qY="},
		{"sdk access key", "GET", "accessKeySecret", sdkParams, "7loPmFjvDnzOVnQeQNj85S6nFGY="},
		{"sdk sts", "GET", "accessKeySecret", sdkSTS, "5Nxdcler+ihqWqv0Hr2On4PsBf4="},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Sign(tc.method, tc.params, tc.secret); got != tc.want {
				t.Fatalf("Sign = %q, want %q\nstring to sign: %s", got, tc.want, StringToSign(tc.method, tc.params))
			}
		})
	}

	const wantSTS = "GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeRegions%26Format%3DXML%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3D3ee8c1b8-83d3-44af-a94f-4e0ad82fd6cf%26SignatureVersion%3D1.0%26Timestamp%3D2016-02-23T12%253A46%253A24Z%26Version%3D2014-05-26"
	if got := StringToSign("GET", published); got != wantSTS {
		t.Fatalf("StringToSign = %s\nwant          %s", got, wantSTS)
	}
}

// TestSignMatchesSDKSigner signs awkward parameter values with the SDK's own
// signer (query and form) and checks that Sign over the decoded union
// reproduces the signature.
func TestSignMatchesSDKSigner(t *testing.T) {
	values := []string{
		"", "plain", "a b", "a+b", "a*b", "a~b", "a/b?c=d&e", `["i-a","i-b"]`,
		"中文", "100%", "tab\tnew\nline", "semi;colon", "!'()",
	}
	for i, v := range values {
		for _, inForm := range []bool{false, true} {
			req := requests.NewCommonRequest()
			req.Method = requests.POST
			req.Product, req.Version, req.ApiName = "hbr", APIVersion, ActionUpgradeBackupClients
			if inForm {
				req.FormParams["Weird"] = v
			} else {
				req.QueryParams["Weird"] = v
			}
			req.QueryParams["Other"] = values[(i+1)%len(values)]
			req.TransToAcsRequest()
			provider := credentials.NewStaticAKCredentialsProvider("testid", "testsecret")
			if err := auth.Sign(req.Ontology, nil, "cn-hangzhou", provider); err != nil {
				t.Fatal(err)
			}
			params := url.Values{}
			for k, val := range req.QueryParams {
				params.Set(k, val)
			}
			for k, val := range req.FormParams {
				params.Set(k, val)
			}
			want := params.Get("Signature")
			if got := Sign("POST", params, "testsecret"); got != want {
				t.Errorf("value %q inForm=%v: Sign = %s, SDK = %s", v, inForm, got, want)
			}
			if got := StringToSign("POST", params); got != req.GetStringToSign() {
				t.Errorf("value %q: StringToSign\n got %s\nsdk  %s", v, got, req.GetStringToSign())
			}
		}
	}
}
