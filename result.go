package hbrbot

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ClientResult is one instance's or client's line in a DescribeTask Result.
type ClientResult struct {
	InstanceID   string `json:"instance_id,omitempty"`
	ClientID     string `json:"client_id,omitempty"`
	ClientStatus string `json:"client_status,omitempty"`
	ErrorCode    string `json:"error_code,omitempty"`
}

const (
	// resultMaxBytes is the largest Result ParseTaskResult reads.
	resultMaxBytes = 4 << 20
	// resultMaxElements is the most elements of a Result array. A job has
	// at most MaxBatchSize IDs; this leaves ample room.
	resultMaxElements = 10_000
	// resultMaxField is the most bytes kept of one field's value; a longer
	// value is cut (at a rune boundary) and ends with "…".
	resultMaxField = 256
	// resultMaxDepth bounds the nesting of an ignored value.
	resultMaxDepth = 64
	// resultExcerptRunes is the most runes of the input an error quotes.
	resultExcerptRunes = 32
)

// ParseTaskResult parses the Result of a DescribeTask answer: a JSON string
// that holds an array of {instanceId, clientId, clientStatus, errorCode}.
//
//   - "", whitespace, "null", "{}" and "[]" mean no per-ID outcome yet: nil, nil.
//   - Keys are matched case-insensitively, "_" and "-" ignored (instanceId,
//     InstanceId, instance_id); unknown keys are ignored. When a key comes
//     twice, the last non-empty value wins.
//   - A value that is a string is kept, trimmed of white space; a number or
//     a boolean is kept as its JSON text (errorCode 403 gives "403"); null,
//     objects and arrays count as empty. Values are cut to 256 bytes.
//   - null elements, and elements with no non-empty known field, are skipped.
//   - One object with a known key (instead of an array of one) is read as an
//     array of one; a JSON string holding the array (Result encoded twice)
//     is decoded once more.
//
// Any other shape (an object of unknown keys, an array of non-objects, text
// that is not JSON, trailing data), more than 4 MiB or more than 10,000
// elements is an error, which quotes at most 32 runes of the input.
func ParseTaskResult(s string) ([]ClientResult, error) {
	if len(s) > resultMaxBytes {
		return nil, fmt.Errorf("task result too large: %d bytes, at most %d", len(s), resultMaxBytes)
	}
	return resultParse(s, "")
}

// resultParse parses s; outer is the input s was decoded from, if any.
func resultParse(s, outer string) ([]ClientResult, error) {
	t := strings.Trim(s, " \t\r\n\uFEFF")
	if t == "" || t == "null" {
		return nil, nil
	}
	dec := json.NewDecoder(strings.NewReader(t))
	dec.UseNumber()
	fail := func(what string, err error) ([]ClientResult, error) {
		if outer != "" {
			return nil, resultError(outer, "is a JSON string whose content "+what, err)
		}
		return nil, resultError(t, what, err)
	}
	tok, err := dec.Token()
	if err != nil {
		return fail("is not JSON", err)
	}
	var out []ClientResult
	switch tok {
	case json.Delim('['):
		for n := 0; dec.More(); n++ {
			if n == resultMaxElements {
				return fail(fmt.Sprintf("has more than %d elements", resultMaxElements), nil)
			}
			tok, err := dec.Token()
			if err != nil {
				return fail("is not JSON", err)
			}
			switch tok {
			case nil:
				continue
			case json.Delim('{'):
			default:
				return fail(fmt.Sprintf("element %d is not an object", n), nil)
			}
			r, _, err := resultObject(dec)
			if err != nil {
				return fail("is not JSON", err)
			}
			if r != (ClientResult{}) {
				out = append(out, r)
			}
		}
		if _, err := dec.Token(); err != nil { // ']'
			return fail("is not JSON", err)
		}
	case json.Delim('{'):
		r, keys, err := resultObject(dec)
		if err != nil {
			return fail("is not JSON", err)
		}
		if keys.unknown && !keys.known {
			return fail("is an object without instanceId or clientId", nil)
		}
		if r != (ClientResult{}) {
			out = append(out, r)
		}
	default:
		str, ok := tok.(string)
		if !ok || outer != "" {
			return fail("is not a JSON array", nil)
		}
		if _, err := dec.Token(); err != io.EOF {
			return fail("has data after the JSON value", nil)
		}
		return resultParse(str, t)
	}
	if _, err := dec.Token(); err != io.EOF {
		return fail("has data after the JSON value", nil)
	}
	return out, nil
}

var errResultTooDeep = errors.New("nested too deeply")

var resultKeyReplacer = strings.NewReplacer("_", "", "-", "")

type resultKeys struct{ known, unknown bool }

// resultObject reads the rest of an object whose '{' dec has just read.
func resultObject(dec *json.Decoder) (ClientResult, resultKeys, error) {
	var (
		r    ClientResult
		keys resultKeys
	)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return r, keys, err
		}
		key, _ := tok.(string)
		v, err := resultValue(dec)
		if err != nil {
			return r, keys, err
		}
		var field *string
		switch resultKeyReplacer.Replace(strings.ToLower(key)) {
		case "instanceid":
			field = &r.InstanceID
		case "clientid":
			field = &r.ClientID
		case "clientstatus":
			field = &r.ClientStatus
		case "errorcode":
			field = &r.ErrorCode
		default:
			keys.unknown = true
			continue
		}
		keys.known = true
		if v != "" {
			*field = v
		}
	}
	_, err := dec.Token() // '}'
	return r, keys, err
}

// resultValue reads a field's value from dec and gives its text: see
// ParseTaskResult.
func resultValue(dec *json.Decoder) (string, error) {
	tok, err := dec.Token()
	if err != nil {
		return "", err
	}
	var v string
	switch tok := tok.(type) {
	case string:
		v = strings.TrimSpace(tok)
	case json.Number:
		v = string(tok)
	case bool:
		v = strconv.FormatBool(tok)
	case json.Delim: // '{' or '[': skip to its end
		for depth := 1; depth > 0; {
			tok, err := dec.Token()
			if err != nil {
				return "", err
			}
			switch tok {
			case json.Delim('{'), json.Delim('['):
				if depth++; depth > resultMaxDepth {
					return "", errResultTooDeep
				}
			case json.Delim('}'), json.Delim(']'):
				depth--
			}
		}
	}
	if len(v) > resultMaxField {
		cut := resultMaxField - len("…")
		for cut > 0 && !utf8.RuneStart(v[cut]) {
			cut--
		}
		v = v[:cut] + "…"
	}
	return v, nil
}

// resultError says why t cannot be read, quoting its beginning.
func resultError(t, what string, err error) error {
	if err != nil {
		var syn *json.SyntaxError
		switch {
		case errors.As(err, &syn):
			what = fmt.Sprintf("%s (syntax error near byte %d)", what, syn.Offset)
		case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
			what += " (unexpected end)"
		case errors.Is(err, errResultTooDeep):
			what = "is nested too deeply"
		}
	}
	// The beginning of t, quoted: at most resultExcerptRunes runes between
	// the quotes, escapes included.
	var b strings.Builder
	b.WriteByte('"')
	n := 0
	for i := 0; i < len(t); {
		_, size := utf8.DecodeRuneInString(t[i:])
		q := strconv.Quote(t[i : i+size])
		q = q[1 : len(q)-1]
		if k := utf8.RuneCountInString(q); n+k <= resultExcerptRunes {
			b.WriteString(q)
			n += k
			i += size
			continue
		}
		b.WriteString("…")
		break
	}
	b.WriteByte('"')
	return fmt.Errorf("task result %s: %s", what, b.String())
}
