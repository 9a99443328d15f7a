// Command hbrbot-demo runs the real bot, in-process, against the repo's
// fakes of Slack (slacktest) and HBR (hbrtest) and an embedded Redis, with
// a scripted fleet, and serves a local page that shows the channel as
// Slack would. Try it without a Slack workspace or an Alibaba Cloud
// account:
//
//	go run ./cmd/hbrbot-demo                 # then open the URL it prints
//	go run ./cmd/hbrbot-demo -addr 127.0.0.1:9000 -job 40s
//
// On the page, type the suggested /hbr-upgrade command as Alice, switch to
// Bob and click Approve, and watch the thread: a live progress reply, then
// the report. Mallory is not an approver: her clicks are refused, as
// anyone's would be in Slack.
//
// Nothing on the page stands in for the bot: the page only plays Slack's
// client (slash commands and button clicks go to the bot as Socket Mode
// envelopes) and shows what the bot posted through the Web API.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := run(ctx, os.Args, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "hbrbot-demo:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o Options
	fs.StringVar(&o.Addr, "addr", "127.0.0.1:8099", "the page's address (loopback only, unless -public)")
	fs.BoolVar(&o.Public, "public", false, "allow an -addr that is not loopback: whoever reaches it can act as any demo user")
	fs.DurationVar(&o.JobDuration, "job", 20*time.Second, "how long an HBR upgrade job takes")
	fs.DurationVar(&o.PollInterval, "poll", time.Second, "how often the bot polls a job (HBRBOT_POLL_INTERVAL)")
	verbose := fs.Bool("v", false, "print the bot's info logs (default: warnings and errors)")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if _, err := os.Stat(".env"); err == nil {
		fmt.Fprintln(stderr, "hbrbot-demo: warning: ./.env supplies the bot's settings the demo leaves unset (REDIS_URL among them); run the demo elsewhere to keep them out")
	}
	o.Logs = stderr
	if *verbose {
		o.LogLevel = "info"
	}
	d, err := Start(ctx, o)
	if err != nil {
		return err
	}
	defer d.Close()
	fmt.Fprintf(stdout, "hbrbot demo: the real bot against a fake Slack and a fake HBR (%d clients in %s)\n", len(fleet), region)
	fmt.Fprintf(stdout, "open %s\n", d.URL)
	fmt.Fprintln(stdout, "as Alice, send the suggested /hbr-upgrade command; as Bob, click Approve. Ctrl-C stops.")
	select {
	case <-ctx.Done():
		return nil
	case <-d.Done():
		return fmt.Errorf("the bot stopped: %v", d.Err())
	}
}
