package hbrtest

import (
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"time"
)

// apiError is a failed call. Gateway errors (auth, throttling, ...) have no
// Success field, like the POP gateway's bodies; HBR business errors carry
// "Success":false like HBR's own responses.
type apiError struct {
	status   int
	code     string
	message  string
	business bool
}

func (e *apiError) Error() string { return e.code + ": " + e.message }

func gatewayErr(status int, code, msg string) *apiError {
	return &apiError{status: status, code: code, message: msg}
}

func businessErr(status int, code, msg string) *apiError {
	return &apiError{status: status, code: code, message: msg, business: true}
}

func missingParam(name string) *apiError {
	return businessErr(http.StatusBadRequest, CodeMissingParameter,
		fmt.Sprintf("The input parameter %q that is mandatory for processing this request is not supplied.", name))
}

func invalidParam(name, why string) *apiError {
	msg := fmt.Sprintf("The specified parameter %q is not valid.", name)
	if why != "" {
		msg += " " + why
	}
	return businessErr(http.StatusBadRequest, CodeInvalidParameter, msg)
}

// errorBody is the JSON of every error. Code MUST be a string: the SDK's
// NewServerError does errorCode.(string) and panics on a number.
type errorBody struct {
	RequestId string
	HostId    string
	Code      string
	Message   string
	Recommend string
	Success   *bool `json:",omitempty"`
}

// envelope is embedded in every success body.
type envelope struct {
	RequestId string
	Success   bool
	Code      string
	Message   string
}

func okEnvelope(requestID string) envelope {
	return envelope{RequestId: requestID, Success: true, Code: "200", Message: "successful"}
}

// request is a parsed incoming call.
type request struct {
	method    string
	query     url.Values
	form      url.Values
	params    url.Values // query + form, form wins
	requestID string
	host      string
}

func (r *request) get(name string) (string, bool) {
	v, ok := r.params[name]
	if !ok || len(v) == 0 {
		return "", false
	}
	return v[0], true
}

// reply is what a handler decided.
type reply struct {
	status int
	body   any
	code   string
}

// ServeHTTP answers one RPC call. Server implements http.Handler so it can
// also be mounted in another test server; NewServer already serves it.
func (s *Server) ServeHTTP(w http.ResponseWriter, hr *http.Request) {
	// Track the handler so Close can wait for it; refuse new work once
	// closing (Add under the lock, before Close's Wait, keeps WaitGroup legal).
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		http.Error(w, "server closed", http.StatusServiceUnavailable)
		return
	}
	s.inflight.Add(1)
	s.mu.Unlock()
	defer s.inflight.Done()

	req := &request{method: hr.Method, requestID: newRequestID(), host: hr.Host}
	call := Call{Method: hr.Method, RequestID: req.requestID}
	rep, hang := s.process(hr, req, &call)

	if rep.code == "" {
		rep.code = "200"
	}
	call.Status, call.Code = rep.status, rep.code
	call.Hung = hang > 0
	s.mu.Lock()
	call.At = s.now()
	s.calls = append(s.calls, call)
	s.notifyLocked()
	s.mu.Unlock()

	if hang > 0 {
		t := time.NewTimer(hang)
		select {
		case <-t.C:
		case <-s.closing:
		case <-hr.Context().Done(): // client gave up; nobody will read the answer
		}
		t.Stop()
	}

	b, _ := json.Marshal(rep.body)
	w.Header().Set("Content-Type", "application/json;charset=utf-8")
	w.Header().Set("x-acs-request-id", req.requestID)
	w.WriteHeader(rep.status)
	_, _ = w.Write(b)
}

// process parses, authenticates and dispatches one call, filling call.
// The returned duration is the HangNext delay (0 = answer now).
func (s *Server) process(hr *http.Request, req *request, call *Call) (reply, time.Duration) {
	fail := func(e *apiError) (reply, time.Duration) { return s.errorReply(req, e), 0 }

	if e := parseRequest(hr, req); e != nil {
		return fail(e)
	}
	call.Params, call.Query, call.Form = cloneValues(req.params), req.query, req.form
	action, _ := req.get("Action")
	call.Action = action

	if e := s.checkCommon(req); e != nil {
		return fail(e)
	}
	if e := s.authenticate(req); e != nil {
		return fail(e)
	}
	call.SignatureOK = true

	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.useNonceLocked(req); e != nil {
		return fail(e)
	}
	if s.overQuotaLocked(action, s.now()) {
		return fail(gatewayErr(http.StatusBadRequest, CodeThrottlingUser, defaultMessage(CodeThrottlingUser)))
	}
	if f := s.takeFault(faultFail, action); f != nil {
		msg := f.message
		if msg == "" {
			msg = defaultMessage(f.code)
		}
		return fail(gatewayErr(f.status, f.code, msg))
	}
	if f := s.takeFault(faultSuccessFalse, action); f != nil {
		return s.successFalseReply(req, f.code), 0
	}

	var rep reply
	switch action {
	case ActionUpgradeBackupClients:
		rep = s.upgradeBackupClientsLocked(req)
	case ActionDescribeTask:
		rep = s.describeTaskLocked(req)
	case ActionDescribeBackupClients:
		rep = s.describeBackupClientsLocked(req)
	}
	var hang time.Duration
	if f := s.takeFault(faultHang, action); f != nil {
		hang = f.delay
	}
	return rep, hang
}

func (s *Server) errorReply(req *request, e *apiError) reply {
	body := errorBody{
		RequestId: req.requestID,
		HostId:    req.host,
		Code:      e.code,
		Message:   e.message,
		Recommend: "https://api.aliyun.com/troubleshoot?q=" + url.QueryEscape(e.code) + "&product=hbr",
	}
	if e.business {
		f := false
		body.Success = &f
	}
	return reply{status: e.status, body: body, code: e.code}
}

func (s *Server) successFalseReply(req *request, code string) reply {
	return reply{status: http.StatusOK, code: code, body: envelope{
		RequestId: req.requestID, Success: false, Code: code, Message: defaultMessage(code),
	}}
}

// parseRequest reads the query and, for a form-encoded body, the form.
// Both are signed and both may carry API parameters.
func parseRequest(hr *http.Request, req *request) *apiError {
	if hr.Method != http.MethodGet && hr.Method != http.MethodPost {
		return gatewayErr(http.StatusBadRequest, CodeUnsupportedHTTPMethod,
			"Specified http method "+hr.Method+" is not supported.")
	}
	if hr.URL.Path != "/" && hr.URL.Path != "" {
		return gatewayErr(http.StatusNotFound, CodeInvalidActionNotFound,
			"Specified api is not found, please check your url and method.")
	}
	q, err := url.ParseQuery(hr.URL.RawQuery)
	if err != nil {
		return gatewayErr(http.StatusBadRequest, CodeInvalidParameter, "The query string is malformed: "+err.Error())
	}
	req.query = q
	req.form = url.Values{}
	if mt, _, _ := mime.ParseMediaType(hr.Header.Get("Content-Type")); mt == "application/x-www-form-urlencoded" {
		b, err := io.ReadAll(io.LimitReader(hr.Body, maxRequestBodyLength))
		if err != nil {
			return gatewayErr(http.StatusBadRequest, CodeInvalidParameter, "The request body cannot be read.")
		}
		if req.form, err = url.ParseQuery(string(b)); err != nil {
			return gatewayErr(http.StatusBadRequest, CodeInvalidParameter, "The form body is malformed: "+err.Error())
		}
	}
	// The SDK signs map(query) overwritten by map(form), so a parameter in
	// both places is signed with its form value; merge the same way.
	req.params = cloneValues(req.query)
	for k, v := range req.form {
		req.params[k] = slices.Clone(v)
	}
	return nil
}

// checkCommon validates the common RPC parameters that do not need the
// secret, in the order the gateway resolves them: presence, API, format.
func (s *Server) checkCommon(req *request) *apiError {
	for _, name := range []string{"Action", "Version", "Format", "AccessKeyId",
		"SignatureMethod", "SignatureVersion", "SignatureNonce", "Timestamp", "Signature"} {
		if v, ok := req.get(name); !ok || v == "" {
			return gatewayErr(http.StatusBadRequest, CodeMissingParameter,
				fmt.Sprintf("The input parameter %q that is mandatory for processing this request is not supplied.", name))
		}
	}
	if v, _ := req.get("Version"); v != APIVersion {
		return gatewayErr(http.StatusBadRequest, CodeInvalidVersion, "Specified parameter Version is not valid.")
	}
	switch a, _ := req.get("Action"); a {
	case ActionUpgradeBackupClients, ActionDescribeTask, ActionDescribeBackupClients:
	default:
		return gatewayErr(http.StatusNotFound, CodeInvalidActionNotFound,
			"Specified api is not found, please check your url and method.")
	}
	// The fake only answers JSON (what the SDK asks for).
	if f, _ := req.get("Format"); f != "JSON" && f != "json" {
		return gatewayErr(http.StatusBadRequest, CodeInvalidParameter,
			`The specified parameter "Format" is not valid: this fake only serves JSON.`)
	}
	if v, _ := req.get("SignatureMethod"); v != "HMAC-SHA1" {
		return gatewayErr(http.StatusBadRequest, CodeInvalidSignatureMethod, "Specified signature method is not supported.")
	}
	if v, _ := req.get("SignatureVersion"); v != "1.0" {
		return gatewayErr(http.StatusBadRequest, CodeInvalidSignatureVersion, "Specified signature version is not supported.")
	}
	if v, _ := req.get("SignatureType"); v != "" {
		return gatewayErr(http.StatusBadRequest, CodeInvalidSignatureMethod, "Specified signature type is not supported.")
	}
	ts, _ := req.get("Timestamp")
	if _, err := time.Parse(timestampLayout, ts); err != nil {
		return gatewayErr(http.StatusBadRequest, CodeInvalidTimeStampFormat,
			"Specified time stamp or date value is not well formatted.")
	}
	return nil
}

// authenticate checks the AccessKeyId, the STS token, the signature and the
// timestamp window.
func (s *Server) authenticate(req *request) *apiError {
	if id, _ := req.get("AccessKeyId"); id != s.cfg.accessKeyID {
		return gatewayErr(http.StatusNotFound, CodeInvalidAccessKeyIDNotFound, "Specified access key is not found.")
	}
	tok, hasTok := req.get("SecurityToken")
	switch {
	case s.cfg.securityToken != "" && !hasTok:
		return gatewayErr(http.StatusBadRequest, CodeMissingSecurityToken,
			"The input parameter \"SecurityToken\" that is mandatory for processing this request is not supplied.")
	case hasTok && tok != s.cfg.securityToken:
		return gatewayErr(http.StatusBadRequest, CodeInvalidSecurityToken,
			"The Security Token does not match the AccessKeyId.")
	}

	got, _ := req.get("Signature")
	want := Sign(req.method, req.params, s.cfg.secret)
	if subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
		// Exactly Alibaba's wording, no space after "is:": the SDK splits on
		// "server string to sign is:" and compares with its own string to
		// sign to tell a wrong secret from an SDK bug (Recommend field).
		return gatewayErr(http.StatusBadRequest, CodeSignatureDoesNotMatch,
			"Specified signature is not matched with our calculation. server string to sign is:"+
				StringToSign(req.method, req.params))
	}

	ts, _ := req.get("Timestamp")
	t, _ := time.Parse(timestampLayout, ts)
	if d := time.Since(t); d > TimestampWindow || d < -TimestampWindow {
		return gatewayErr(http.StatusBadRequest, CodeInvalidTimeStampExpired,
			"Specified time stamp or date value is expired.")
	}
	return nil
}

// useNonceLocked rejects a replayed SignatureNonce. Only authenticated
// requests consume a nonce, so a forged request cannot burn one.
func (s *Server) useNonceLocked(req *request) *apiError {
	n, _ := req.get("SignatureNonce")
	if _, used := s.nonces[n]; used {
		return gatewayErr(http.StatusBadRequest, CodeSignatureNonceUsed, "Specified signature nonce was used already.")
	}
	s.nonces[n] = struct{}{}
	return nil
}

// intParam parses an optional integer parameter.
func intParam(req *request, name string, def int64) (int64, *apiError) {
	v, ok := req.get(name)
	if !ok || v == "" {
		return def, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, invalidParam(name, "It must be an integer.")
	}
	return n, nil
}

// idsParam parses a JSON-array-of-strings parameter (META style "json").
// present is false when the parameter is absent or empty.
func idsParam(req *request, name string) (ids []string, present bool, e *apiError) {
	v, ok := req.get(name)
	if !ok || v == "" {
		return nil, false, nil
	}
	if err := json.Unmarshal([]byte(v), &ids); err != nil {
		return nil, false, invalidParam(name, "It must be a JSON array of strings, e.g. [\"i-xxx\"].")
	}
	for _, id := range ids {
		if id == "" {
			return nil, false, invalidParam(name, "It contains an empty ID.")
		}
	}
	return ids, len(ids) > 0, nil
}
