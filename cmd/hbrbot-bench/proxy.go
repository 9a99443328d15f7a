package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// hbrProxy stands between the bot and the fake HBR (hbrtest). Every call
// goes through to hbrtest unchanged, so the fake still checks signatures,
// records calls and creates jobs; the proxy notes each job's TaskId and
// DescribeTask calls, and, in the wall-clock model, makes a job run for a
// set time instead of a set number of polls.
//
// Why: hbrtest advances a job one script step per DescribeTask call, so a
// job's length depends on how often it is polled. That cannot compare poll
// policies (a job polled half as often would last twice as long). With
// wallClock set, hbrtest's jobs are created already complete, and the
// proxy answers a DescribeTask made before the job's due time with
// "created" and Progress proportional to the time elapsed, as a real job
// would. The hbrtest answer is passed on as is from the due time on.
type hbrProxy struct {
	upstream  string // hbrtest's URL
	wallClock bool
	// durationOf gives the planned duration of the job whose first
	// instance ID is given; ok false for IDs the bench did not plan.
	durationOf func(firstID string) (job int, d time.Duration, ok bool)

	client *http.Client
	srv    *http.Server
	ln     net.Listener

	mu    sync.Mutex
	tasks map[string]*taskRec
	order []string // TaskIds in creation order
	other int      // calls of other actions
	nDesc int      // DescribeTask calls of known jobs
}

// taskRec is what the proxy saw of one job.
type taskRec struct {
	job      int // index in the plan; -1 if unknown
	created  time.Time
	duration time.Duration
	due      time.Time // wall clock: first moment a poll sees it terminal
	// describes are the DescribeTask arrival times.
	describes []time.Time
	// terminalAt is when a DescribeTask answer first said the job ended.
	terminalAt time.Time
}

func newHBRProxy(upstream string, wallClock bool, durationOf func(string) (int, time.Duration, bool)) (*hbrProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &hbrProxy{
		upstream: upstream, wallClock: wallClock, durationOf: durationOf,
		client: &http.Client{Transport: &http.Transport{MaxIdleConns: 512, MaxIdleConnsPerHost: 512,
			IdleConnTimeout: time.Minute}},
		ln:    ln,
		tasks: map[string]*taskRec{},
	}
	p.srv = &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = p.srv.Serve(ln) }()
	return p, nil
}

// URL is the proxy's "http://127.0.0.1:PORT", the bot's HBR_ENDPOINT.
func (p *hbrProxy) URL() string { return "http://" + p.ln.Addr().String() }

func (p *hbrProxy) Close() {
	_ = p.srv.Close()
	p.client.CloseIdleConnections()
}

func (p *hbrProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	arrived := time.Now()
	body, err := io.ReadAll(io.LimitReader(r.Body, 16<<20))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	params, _ := url.ParseQuery(r.URL.RawQuery)
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		if form, err := url.ParseQuery(string(body)); err == nil {
			for k, v := range form {
				params[k] = v
			}
		}
	}

	req, err := http.NewRequestWithContext(r.Context(), r.Method, p.upstream+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	req.Header = r.Header.Clone()
	resp, err := p.client.Do(req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	out, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}

	if resp.StatusCode == http.StatusOK {
		switch params.Get("Action") {
		case "UpgradeBackupClients":
			p.upgraded(params, out)
		case "DescribeTask":
			out = p.described(params.Get("TaskId"), arrived, out)
		default:
			p.mu.Lock()
			p.other++
			p.mu.Unlock()
		}
	}
	for k, vs := range resp.Header {
		if k == "Content-Length" {
			continue
		}
		w.Header()[k] = vs
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = w.Write(out)
}

// upgraded records a job hbrtest created.
func (p *hbrProxy) upgraded(params url.Values, answer []byte) {
	var a struct{ TaskId string }
	if json.Unmarshal(answer, &a) != nil || a.TaskId == "" {
		return
	}
	var ids []string
	_ = json.Unmarshal([]byte(params.Get("InstanceIds")), &ids)
	if len(ids) == 0 {
		_ = json.Unmarshal([]byte(params.Get("ClientIds")), &ids)
	}
	rec := &taskRec{job: -1, created: time.Now()}
	if len(ids) > 0 {
		if job, d, ok := p.durationOf(ids[0]); ok {
			rec.job, rec.duration, rec.due = job, d, rec.created.Add(d)
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.tasks[a.TaskId] = rec
	p.order = append(p.order, a.TaskId)
}

// described records a DescribeTask call and, in the wall-clock model,
// rewrites the answer of a job not yet due.
func (p *hbrProxy) described(taskID string, at time.Time, answer []byte) []byte {
	p.mu.Lock()
	rec := p.tasks[taskID]
	if rec == nil {
		p.mu.Unlock()
		return answer
	}
	rec.describes = append(rec.describes, at)
	p.nDesc++
	running := p.wallClock && rec.job >= 0 && at.Before(rec.due)
	p.mu.Unlock()

	var a map[string]any
	if json.Unmarshal(answer, &a) != nil {
		return answer
	}
	if running {
		progress := int(100 * float64(at.Sub(rec.created)) / float64(rec.duration))
		a["Progress"] = min(max(progress, 0), 99)
		a["Description"] = "created"
		a["Result"] = ""
		delete(a, "CompletedTime")
		out, err := json.Marshal(a)
		if err != nil {
			return answer
		}
		return out
	}
	progress, _ := a["Progress"].(float64)
	desc, _ := a["Description"].(string)
	if progress == -1 || (desc != "" && desc != "created") {
		p.mu.Lock()
		if rec.terminalAt.IsZero() {
			rec.terminalAt = at
		}
		p.mu.Unlock()
	}
	return answer
}

// snapshot copies the records, in creation order.
func (p *hbrProxy) snapshot() (map[string]taskRec, []string, int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]taskRec, len(p.tasks))
	for id, r := range p.tasks {
		c := *r
		c.describes = append([]time.Time(nil), r.describes...)
		out[id] = c
	}
	return out, append([]string(nil), p.order...), p.other
}

// describeCount is the number of DescribeTask calls so far.
func (p *hbrProxy) describeCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.nDesc
}
