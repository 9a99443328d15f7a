// Command hbrbot is the Slack bot that upgrades Alibaba Cloud Backup (HBR)
// clients after an explicit approval. The program is internal/app.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/hbrbot/hbrbot/internal/app"
)

// version is set at build time: -ldflags "-X main.version=...".
var version = "dev"

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	app.Version = version
	if err := run(ctx, os.Args, os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "hbrbot:", err)
		os.Exit(1)
	}
}

// run is the whole program, app.Run.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	return app.Run(ctx, args, getenv, stdout, stderr)
}
