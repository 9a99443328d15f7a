package hbrbot_test

import (
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/hbrbot/hbrbot"
)

func TestParseTaskResult(t *testing.T) {
	type cr = hbrbot.ClientResult
	one := []cr{{InstanceID: "i-aaa", ClientID: "c-000aaa", ClientStatus: "ACTIVATED"}}
	long := strings.Repeat("é", 300) // 600 bytes
	tests := []struct {
		name    string
		in      string
		want    []cr
		wantErr string
	}{
		{name: "empty", in: ""},
		{name: "whitespace", in: " \n\t\r "},
		{name: "null", in: "null"},
		{name: "empty object", in: "{}"},
		{name: "empty object spaced", in: " { } "},
		{name: "empty array", in: "[]"},
		{name: "bom", in: "\ufeff[]"},
		{name: "bom and spaces", in: "\ufeff [ ] "},
		{name: "nested syntax error", in: `"[x]"`, wantErr: "task result is a JSON string whose content is not JSON (syntax error near byte 1)"},
		{name: "typical", in: `[{"instanceId":"i-aaa","clientId":"c-000aaa","clientStatus":"ACTIVATED","errorCode":""}]`, want: one},
		{name: "several", in: `[{"instanceId":"i-a","clientStatus":"ACTIVATED"},{"instanceId":"i-b","clientId":"c-b","clientStatus":"UPGRADE_FAILED","errorCode":"CLIENT_UPGRADE_FAILED"}]`,
			want: []cr{{InstanceID: "i-a", ClientStatus: "ACTIVATED"}, {InstanceID: "i-b", ClientID: "c-b", ClientStatus: "UPGRADE_FAILED", ErrorCode: "CLIENT_UPGRADE_FAILED"}}},
		{name: "key case", in: `[{"InstanceId":"i-aaa","CLIENTID":"c-000aaa","clientstatus":"ACTIVATED"}]`, want: one},
		{name: "snake keys", in: `[{"instance_id":"i-aaa","client_id":"c-000aaa","client_status":"ACTIVATED"}]`, want: one},
		{name: "unknown keys ignored", in: `[{"instanceId":"i-aaa","clientId":"c-000aaa","clientStatus":"ACTIVATED","extra":{"a":[1,2]},"progress":100}]`, want: one},
		{name: "whitespace around", in: "\n  [ {\"instanceId\" : \"i-aaa\" , \"clientId\":\"c-000aaa\",\"clientStatus\":\"ACTIVATED\"} ]  \n", want: one},
		{name: "values trimmed", in: `[{"instanceId":" i-aaa ","clientId":"c-000aaa","clientStatus":"ACTIVATED\n"}]`, want: one},
		{name: "number error code", in: `[{"instanceId":"i-a","errorCode":403}]`, want: []cr{{InstanceID: "i-a", ErrorCode: "403"}}},
		{name: "float and bool", in: `[{"instanceId":"i-a","errorCode":1.5e3,"clientStatus":true}]`, want: []cr{{InstanceID: "i-a", ClientStatus: "true", ErrorCode: "1.5e3"}}},
		{name: "null and object values", in: `[{"instanceId":"i-a","errorCode":null,"clientStatus":{"x":1},"clientId":["c"]}]`, want: []cr{{InstanceID: "i-a"}}},
		{name: "repeated key: last non-empty wins", in: `[{"instanceId":"i-a","InstanceId":"i-b","instance_id":""}]`, want: []cr{{InstanceID: "i-b"}}},
		{name: "null element skipped", in: `[null,{"instanceId":"i-a"},null]`, want: []cr{{InstanceID: "i-a"}}},
		{name: "empty element skipped", in: `[{},{"errorCode":""},{"other":1},{"clientId":"c-a"}]`, want: []cr{{ClientID: "c-a"}}},
		{name: "unicode escapes", in: `[{"instanceId":"i-\u0061","errorCode":"\u00e9"}]`, want: []cr{{InstanceID: "i-a", ErrorCode: "é"}}},
		{name: "long value cut", in: `[{"errorCode":"` + long + `"}]`, want: []cr{{ErrorCode: strings.Repeat("é", 126) + "…"}}},
		{name: "single object", in: `{"instanceId":"i-aaa","clientId":"c-000aaa","clientStatus":"ACTIVATED"}`, want: one},
		{name: "single object of empty known keys", in: `{"instanceId":""}`},
		{name: "encoded twice", in: `"[{\"instanceId\":\"i-aaa\",\"clientId\":\"c-000aaa\",\"clientStatus\":\"ACTIVATED\"}]"`, want: one},
		{name: "encoded twice empty", in: `""`},
		{name: "encoded twice {}", in: `" {} "`},

		{name: "object of unknown keys", in: `{"code":"200","message":"ok"}`, wantErr: `task result is an object without instanceId or clientId: "{\"code\":\"200\",\"message\":\"…"`},
		{name: "nested error quotes the input", in: `"{\"a\":1}"`, wantErr: `task result is a JSON string whose content is an object without instanceId or clientId: "\"{\\\"a\\\":1}\""`},
		{name: "wrapped array", in: `{"results":[{"instanceId":"i-a"}]}`, wantErr: "task result is an object without instanceId or clientId"},
		{name: "array of strings", in: `["i-a"]`, wantErr: `task result element 0 is not an object: "[\"i-a\"]"`},
		{name: "array of arrays", in: `[{"instanceId":"i-a"},[1]]`, wantErr: "element 1 is not an object"},
		{name: "number", in: `42`, wantErr: `task result is not a JSON array: "42"`},
		{name: "true", in: `true`, wantErr: "not a JSON array"},
		{name: "encoded three times", in: `"\"[]\""`, wantErr: `task result is a JSON string whose content is not a JSON array: "\"\\\"[]\\\"\""`},
		{name: "string with trailing data", in: `"[]" x`, wantErr: "task result has data after the JSON value"},
		{name: "trailing data", in: `[] []`, wantErr: "task result has data after the JSON value"},
		{name: "trailing object", in: `{} x`, wantErr: "task result has data after the JSON value: \"{} x\""},
		{name: "not json", in: `ACTIVATED`, wantErr: `task result is not JSON (syntax error near byte 1): "ACTIVATED"`},
		{name: "truncated", in: `[{"instanceId":"i-a"`, wantErr: "task result is not JSON"},
		{name: "unterminated array", in: `[`, wantErr: "task result is not JSON"},
		{name: "bad key", in: `[{1:2}]`, wantErr: "not JSON (syntax error"},
		{name: "deep value", in: `[{"x":` + strings.Repeat("[", 65) + strings.Repeat("]", 65) + `}]`, wantErr: "task result is nested too deeply: "},
		{name: "deep value ok", in: `[{"instanceId":"i-a","x":` + strings.Repeat("[", 63) + strings.Repeat("]", 63) + `}]`, want: []cr{{InstanceID: "i-a"}}},
		{name: "closing bracket", in: `]`, wantErr: "not JSON"},
		{name: "invalid utf-8 is quoted", in: "\xff\xfe", wantErr: `"\xff\xfe"`},
		{name: "long input quoted short", in: strings.Repeat("x", 10000), wantErr: `"` + strings.Repeat("x", 32) + `…"`},
		{name: "too many elements", in: "[" + strings.Repeat("null,", 10000) + "null]", wantErr: "task result has more than 10000 elements"},
		{name: "too large", in: "[" + strings.Repeat(" ", 4<<20) + "]", wantErr: "task result too large: 4194306 bytes, at most 4194304"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := hbrbot.ParseTaskResult(tt.in)
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("ParseTaskResult(%.60q) = %+v, want error containing %q", tt.in, got, tt.wantErr)
				}
				ptrCheckError(t, tt.in, err)
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseTaskResult(%.60q) error %q, want it to contain %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseTaskResult(%.60q): %v", tt.in, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("ParseTaskResult(%.60q) =\n%+v\nwant\n%+v", tt.in, got, tt.want)
			}
		})
	}
}

// Exactly the element limit is fine.
func TestParseTaskResultElementLimit(t *testing.T) {
	in := "[" + strings.Repeat(`{"instanceId":"i-a"},`, 9999) + `{"instanceId":"i-a"}]`
	got, err := hbrbot.ParseTaskResult(in)
	if err != nil || len(got) != 10000 {
		t.Fatalf("got %d results, %v", len(got), err)
	}
}

// Our own storage form (snake_case tags) reads back too.
func TestParseTaskResultStorageForm(t *testing.T) {
	want := []hbrbot.ClientResult{{InstanceID: "i-a", ClientID: "c-a", ClientStatus: "ACTIVATED", ErrorCode: "E"}}
	b, _ := json.Marshal(want)
	got, err := hbrbot.ParseTaskResult(string(b))
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("%s: got %+v, %v", b, got, err)
	}
}

func ptrCheckError(t *testing.T, in string, err error) {
	t.Helper()
	msg := err.Error()
	if len(msg) > 300 {
		t.Fatalf("error is %d bytes: %q", len(msg), msg)
	}
	if n := pcLongestEcho(msg, in); n > 40 {
		t.Fatalf("error %q echoes %d consecutive runes of the input", msg, n)
	}
}

// ptrWire is the wire form of a result element.
type ptrWire struct {
	InstanceID   string `json:"instanceId"`
	ClientID     string `json:"clientId"`
	ClientStatus string `json:"clientStatus"`
	ErrorCode    string `json:"errorCode"`
}

func FuzzParseTaskResult(f *testing.F) {
	for _, s := range []string{
		"", "{}", "[]", "null", " [ ] ",
		`[{"instanceId":"i-aaa","clientId":"c-000aaa","clientStatus":"ACTIVATED","errorCode":""}]`,
		`[{"InstanceId":"i-a","errorCode":403,"x":{"y":[1]}},null,{}]`,
		`{"instanceId":"i-a"}`, `{"code":1}`, `"[{\"clientId\":\"c-a\"}]"`, `"\"[]\""`,
		`[{"errorCode":"` + strings.Repeat("ü", 200) + `"}]`, `[1]`, `[`, `]`, "\xff", `[{"a":1,"a":2}]`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		got, err := hbrbot.ParseTaskResult(in)
		if err != nil {
			if got != nil {
				t.Fatalf("results %+v with error %v", got, err)
			}
			ptrCheckError(t, in, err)
			return
		}
		if len(got) > 10000 {
			t.Fatalf("%d results", len(got))
		}
		wire := make([]ptrWire, len(got))
		for i, r := range got {
			if r == (hbrbot.ClientResult{}) {
				t.Fatalf("empty result %d", i)
			}
			for _, v := range []string{r.InstanceID, r.ClientID, r.ClientStatus, r.ErrorCode} {
				if len(v) > 256 || !utf8.ValidString(v) || v != strings.TrimSpace(v) {
					t.Fatalf("bad value %q", v)
				}
			}
			wire[i] = ptrWire(r)
		}
		// What was read, written back in the wire form, reads the same.
		b, err := json.Marshal(wire)
		if err != nil {
			t.Fatal(err)
		}
		again, err := hbrbot.ParseTaskResult(string(b))
		if err != nil || !reflect.DeepEqual(again, got) {
			t.Fatalf("%s reads back as %+v, %v; want %+v", b, again, err, got)
		}
	})
}

func BenchmarkParseTaskResult(b *testing.B) {
	elems := make([]ptrWire, 100)
	for i := range elems {
		elems[i] = ptrWire{
			InstanceID:   fmt.Sprintf("i-bp1abcdefgh%08d", i),
			ClientID:     fmt.Sprintf("c-000abcdefg%08d", i),
			ClientStatus: "ACTIVATED",
		}
		if i%10 == 0 {
			elems[i].ClientStatus, elems[i].ErrorCode = "UPGRADE_FAILED", "CLIENT_CONNECTION_ERROR"
		}
	}
	raw, _ := json.Marshal(elems)
	in := string(raw)
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		got, err := hbrbot.ParseTaskResult(in)
		if err != nil || len(got) != 100 {
			b.Fatal(len(got), err)
		}
	}
}
