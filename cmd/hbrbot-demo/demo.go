package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/hbrbot/hbrbot/hbrtest"
	"github.com/hbrbot/hbrbot/internal/app"
	"github.com/hbrbot/hbrbot/internal/botproc"
	"github.com/hbrbot/hbrbot/slacktest"
)

// The demo's workspace: a channel, a requester, an approver (the only one
// HBRBOT_APPROVERS names) and an outsider.
const (
	channelID   = "C0OPS"
	channelName = "ops"
	alice       = "U0ALICE"
	bob         = "U0BOB"
	mallory     = "U0MALLORY"
	region      = "cn-hangzhou"
)

// person is someone the page can act as.
type person struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	RealName string `json:"real_name"`
	Role     string `json:"role"`
}

var people = []person{
	{alice, "alice", "Alice Chen", "requester"},
	{bob, "bob", "Bob Martin", "approver (HBRBOT_APPROVERS)"},
	{mallory, "mallory", "Mallory Jones", "not an approver"},
}

// server is one fleet member: an ECS instance and its HBR client.
type server struct {
	ID   string
	Note string // what the demo makes of it
	hbrtest.Instance
}

// fleet is the scripted account: most clients outdated, one at the latest
// version, one on a stopped instance (HBR refuses it), one whose upgrade
// fails.
var fleet = []server{
	{"i-bp1web01", "outdated", hbrtest.Instance{Name: "web-01", Version: "2.4.0"}},
	{"i-bp1web02", "outdated", hbrtest.Instance{Name: "web-02", Version: "2.4.0"}},
	{"i-bp1web03", "outdated", hbrtest.Instance{Name: "web-03", Version: "2.3.2"}},
	{"i-bp1api01", "outdated", hbrtest.Instance{Name: "api-01", Version: "2.4.0"}},
	{"i-bp1api02", "already at the latest version", hbrtest.Instance{Name: "api-02", Version: hbrtest.DefaultMaxVersion}},
	{"i-bp1db01", "outdated", hbrtest.Instance{Name: "db-01", Version: "2.4.0"}},
	{"i-bp1batch01", "instance stopped: HBR refuses it (InstanceNotRunning)", hbrtest.Instance{Name: "batch-01", Version: "2.4.0", Invalid: hbrtest.InstanceNotRunning}},
	{"i-bp1legacy01", "its upgrade fails (UPGRADE_FAILED, stays old)", hbrtest.Instance{Name: "legacy-01", Version: "2.2.0",
		UpgradeStatus: hbrtest.StatusUpgradeFailed, ErrorCode: hbrtest.StatusUpgradeFailed}},
}

// fleetCommand names every client of the fleet.
func fleetCommand() string {
	cmd := "/hbr-upgrade"
	for _, s := range fleet {
		cmd += " " + s.ID
	}
	return cmd
}

// Options configure a demo.
type Options struct {
	// Addr is the page's host:port (default 127.0.0.1:8099; port 0 picks
	// one). Public allows an address that is not loopback.
	Addr   string
	Public bool
	// JobDuration is how long an HBR job runs (default 20s), in steps of
	// PollInterval (default 1s), the bot's HBRBOT_POLL_INTERVAL.
	JobDuration, PollInterval time.Duration
	// Logs receives the bot's log (text) at LogLevel (default warn); nil
	// discards it.
	Logs     io.Writer
	LogLevel string
}

// Demo is a running demo: the bot, the fakes and the page.
type Demo struct {
	Slack *slacktest.Server
	HBR   *hbrtest.Server
	// URL is the page's address, http://host:port/.
	URL string

	page    *http.Server
	stopBot context.CancelFunc
	botDone chan struct{}
	botErr  error
}

// Start starts the fakes, the real bot against them and the page, and
// returns once the bot is connected and ready.
func Start(ctx context.Context, o Options) (*Demo, error) {
	o.Addr = cmpOr(o.Addr, "127.0.0.1:8099")
	if o.JobDuration <= 0 {
		o.JobDuration = 20 * time.Second
	}
	if o.PollInterval <= 0 {
		o.PollInterval = time.Second
	}
	if o.Logs == nil {
		o.Logs = io.Discard
	}
	if err := checkAddr(o.Addr, o.Public); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", o.Addr)
	if err != nil {
		return nil, fmt.Errorf("the page's address: %w", err)
	}

	d := &Demo{Slack: slacktest.NewServer(), HBR: hbrtest.NewServer(), botDone: make(chan struct{})}
	for _, p := range people {
		d.Slack.SetUser(slacktest.User{ID: p.ID, Name: p.Name, RealName: p.RealName})
	}
	d.Slack.SetUser(slacktest.User{ID: slacktest.BotUserID, Name: "hbrbot", RealName: "hbrbot", IsBot: true})
	for _, s := range fleet {
		d.HBR.SetInstance(s.ID, s.Instance)
	}
	d.HBR.SetDefaultScript(jobScript(o.JobDuration, o.PollInterval)...)

	healthAddr, err := botproc.FreeAddr()
	if err != nil {
		ln.Close()
		d.closeFakes()
		return nil, err
	}
	env := map[string]string{
		"SLACK_APP_TOKEN":                 "xapp-test",
		"SLACK_BOT_TOKEN":                 "xoxb-test",
		"SLACK_API_URL":                   d.Slack.APIURL(),
		"ALIBABA_CLOUD_ACCESS_KEY_ID":     hbrtest.DefaultAccessKeyID,
		"ALIBABA_CLOUD_ACCESS_KEY_SECRET": hbrtest.DefaultSecret,
		"ALIBABA_CLOUD_REGION_ID":         region,
		"HBR_ENDPOINT":                    d.HBR.URL(),
		"HBRBOT_APPROVERS":                bob,
		"HBRBOT_ALLOWED_CHANNELS":         channelID,
		"HBRBOT_POLL_INTERVAL":            o.PollInterval.String(),
		"HBRBOT_POLL_POLICY":              "fixed",
		"HBRBOT_HTTP_ADDR":                healthAddr,
		"HBRBOT_LOG_FORMAT":               "text",
		"HBRBOT_LOG_LEVEL":                cmpOr(o.LogLevel, "warn"),
	}
	botCtx, stopBot := context.WithCancel(context.WithoutCancel(ctx))
	d.stopBot = stopBot
	go func() {
		defer close(d.botDone)
		d.botErr = app.Run(botCtx, []string{"hbrbot"}, func(k string) string { return env[k] }, io.Discard, o.Logs)
	}()
	ready, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := d.Slack.WaitConnections(ready, 1); err != nil {
		ln.Close()
		d.Close()
		return nil, errors.Join(fmt.Errorf("the bot did not connect to the fake Slack: %w", err), d.botErr)
	}
	if err := botproc.AwaitReadyz(ready, healthAddr, http.StatusOK, d.botDone); err != nil {
		ln.Close()
		d.Close()
		return nil, errors.Join(err, d.botErr)
	}

	d.URL = "http://" + ln.Addr().String() + "/"
	d.page = &http.Server{Handler: newPage(d, ln.Addr().String(), o.Public), ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = d.page.Serve(ln) }()
	return d, nil
}

// jobScript makes a job last about duration when polled every poll: its
// progress climbs evenly, one step a poll, to "completed".
func jobScript(duration, poll time.Duration) []hbrtest.Step {
	n := max(int(duration/poll), 2)
	steps := make([]hbrtest.Step, 0, n)
	for i := range n - 1 {
		steps = append(steps, hbrtest.Step{Progress: 100 * i / (n - 1), Description: hbrtest.TaskCreated})
	}
	return append(steps, hbrtest.Step{Progress: 100, Description: hbrtest.TaskCompleted})
}

// checkAddr refuses an address that is not loopback unless public.
func checkAddr(addr string, public bool) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("-addr %q: %w", addr, err)
	}
	if public || isLoopback(host) {
		return nil
	}
	return fmt.Errorf("-addr %q is not a loopback address: anyone who reaches it can act as any demo user; add -public to serve it anyway", addr)
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Done is closed when the bot has stopped; Err then says why.
func (d *Demo) Done() <-chan struct{} { return d.botDone }

// Err is what the bot's run returned, once Done is closed.
func (d *Demo) Err() error { return d.botErr }

// Close stops the page, the bot and the fakes.
func (d *Demo) Close() {
	if d.page != nil {
		_ = d.page.Close()
	}
	d.stopBot()
	<-d.botDone
	d.closeFakes()
}

func (d *Demo) closeFakes() {
	d.Slack.Close()
	d.HBR.Close()
}
