package app

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/hbrbot/hbrbot"
	"github.com/hbrbot/hbrbot/config"
	"github.com/hbrbot/hbrbot/redisstore"
)

// runAudit prints the audit trail: `hbrbot audit [-since 24h] [-format jsonl|csv] [-request ID]`.
func runAudit(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("hbrbot audit", flag.ContinueOnError)
	fs.SetOutput(stderr)
	since := fs.Duration("since", 24*time.Hour, "print the records of this long ago until now")
	format := fs.String("format", "jsonl", "jsonl or csv")
	request := fs.String("request", "", "print only this request's records")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *format != "jsonl" && *format != "csv" {
		return fmt.Errorf("-format %q: want jsonl or csv", *format)
	}
	url, mode, err := config.LoadRedis(getenv, ".env")
	if err != nil {
		return err
	}
	if url == "" {
		return fmt.Errorf("REDIS_URL is unset: the audit trail lives in the Redis the bot uses")
	}
	rdb, _, closeRedis, err := redisstore.Connect(url, mode)
	if err != nil {
		return err
	}
	defer closeRedis()

	var write func(hbrbot.AuditRecord) error
	var flush func() error
	switch *format {
	case "jsonl":
		enc := json.NewEncoder(stdout)
		write, flush = func(r hbrbot.AuditRecord) error { return enc.Encode(r) }, func() error { return nil }
	case "csv":
		w := csv.NewWriter(stdout)
		w.Write([]string{"time", "event", "request_id", "actor", "channel", "fields"})
		write = func(r hbrbot.AuditRecord) error {
			var kv []string
			for _, k := range slices.Sorted(maps.Keys(r.Fields)) {
				if r.Fields[k] != "" {
					kv = append(kv, k+"="+r.Fields[k])
				}
			}
			return w.Write([]string{r.Time.UTC().Format(time.RFC3339Nano), r.Event, r.RequestID, r.Actor, r.Channel, strings.Join(kv, " ")})
		}
		flush = func() error { w.Flush(); return w.Error() }
	}
	err = redisstore.New(rdb).Audit(ctx, time.Now().Add(-*since), func(r hbrbot.AuditRecord) error {
		if *request != "" && r.RequestID != *request {
			return nil
		}
		return write(r)
	})
	if err != nil {
		return err
	}
	return flush()
}
