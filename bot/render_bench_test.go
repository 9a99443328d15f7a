package bot_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/slack-go/slack"

	"github.com/hbrbot/hbrbot"
	"github.com/hbrbot/hbrbot/bot"
)

// benchRequest is a request naming n IDs, two thirds instances and one
// third clients: the card of the largest command HBRBOT_MAX_TARGETS allows
// by default.
func benchRequest(n int, state hbrbot.RequestState) hbrbot.Request {
	var t hbrbot.Targets
	for i := range n {
		if i%3 == 2 {
			t.ClientIDs = append(t.ClientIDs, fmt.Sprintf("c-bp1%016x", i))
		} else {
			t.InstanceIDs = append(t.InstanceIDs, fmt.Sprintf("i-bp1%016x", i))
		}
	}
	now := time.Date(2026, 11, 29, 13, 17, 0, 0, time.UTC)
	r := hbrbot.Request{
		ID: "rbench00001", TeamID: "T0TEST", ChannelID: "C0OPS", RequesterID: "U0ALICE",
		Spec:  hbrbot.UpgradeSpec{Targets: t, Region: "cn-hangzhou"},
		State: state, CreatedAt: now, ExpiresAt: now.Add(time.Hour),
	}
	if state != hbrbot.RequestPending {
		r.DecidedBy, r.DecidedAt, r.CardTS = "U0BOB", now.Add(time.Minute), "1700000000.000100"
	}
	return r
}

// benchBatch is a full batch (100 IDs) that ended with every kind of
// per-ID outcome a completed job can have: refused by the pre-check,
// upgraded, failed with a code, and left to the job's status.
func benchBatch() hbrbot.Batch {
	r := benchRequest(hbrbot.MaxBatchSize, hbrbot.RequestApproved)
	b := hbrbot.Batch{BatchSpec: hbrbot.BatchSpec{Targets: r.Spec.Targets}, BatchStatus: hbrbot.BatchStatus{
		RequestID: r.ID, Index: 2, Of: 5, Region: "cn-hangzhou",
		ChannelID: r.ChannelID, ThreadTS: r.CardTS, State: hbrbot.BatchFinished,
		TaskID: "t-jl293zd3mkzqw1k9uvos", Progress: 100, Final: hbrbot.JobCompleted,
		Started: r.DecidedAt, Deadline: r.DecidedAt.Add(20 * time.Minute),
	}}
	codes := []string{"UPGRADE_FAILED", "CLIENT_NOT_RESPONDING", "UNKNOWN"}
	for i, id := range b.Targets.All() {
		switch {
		case i%10 == 3: // refused by UpgradeBackupClients
			b.Invalid = append(b.Invalid, hbrbot.InvalidTarget{ID: id, ErrorCode: "InstanceNotRunning"})
		case i%10 == 7: // failed, with a code
			b.Results = append(b.Results, result(id, "UPGRADE_FAILED", codes[i%len(codes)]))
		case i%10 == 9: // not in Result: the job's status decides
		default:
			b.Results = append(b.Results, result(id, "ACTIVATED", ""))
		}
	}
	return b
}

func result(id, status, code string) hbrbot.ClientResult {
	r := hbrbot.ClientResult{ClientStatus: status, ErrorCode: code}
	if id[0] == 'c' {
		r.ClientID = id
	} else {
		r.InstanceID = id
	}
	return r
}

// wireSize is the JSON the blocks travel as (chat.postMessage's "blocks").
func wireSize(b *testing.B, blocks []slack.Block) int {
	raw, err := json.Marshal(blocks)
	if err != nil {
		b.Fatal(err)
	}
	return len(raw)
}

// BenchmarkCardBlocks500 renders the approval card of a 500-ID request:
// pending (posted) and approved (chat.update).
func BenchmarkCardBlocks500(b *testing.B) {
	for _, state := range []hbrbot.RequestState{hbrbot.RequestPending, hbrbot.RequestApproved} {
		r := benchRequest(500, state)
		b.Run(string(state), func(b *testing.B) {
			b.ReportAllocs()
			var blocks []slack.Block
			for b.Loop() {
				blocks = bot.CardBlocks(r, nil)
			}
			b.ReportMetric(float64(len(blocks)), "blocks")
			b.ReportMetric(float64(wireSize(b, blocks)), "json-bytes")
		})
		b.Run(string(state)+"+json", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := json.Marshal(bot.CardBlocks(r, nil)); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkFinalReport500 renders the final reports of a 500-ID request:
// one FinalReport per batch of 100 IDs (the unit the bot posts), with mixed
// outcomes. The "x5" case is the whole request's five reports.
func BenchmarkFinalReport500(b *testing.B) {
	batch := benchBatch()
	b.Run("batch100", func(b *testing.B) {
		b.ReportAllocs()
		var blocks []slack.Block
		for b.Loop() {
			_, blocks = bot.FinalReport(batch)
		}
		b.ReportMetric(float64(len(blocks)), "blocks")
		b.ReportMetric(float64(wireSize(b, blocks)), "json-bytes")
	})
	b.Run("batch100+json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_, blocks := bot.FinalReport(batch)
			if _, err := json.Marshal(blocks); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("x5", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for range 5 {
				bot.FinalReport(batch)
			}
		}
	})
}

// TestBenchFixtures checks the fixtures cover what the benchmarks claim, so
// a change in the domain cannot quietly make them measure less.
func TestBenchFixtures(t *testing.T) {
	r := benchRequest(500, hbrbot.RequestPending)
	if n := r.Spec.Len(); n != 500 {
		t.Fatalf("request has %d IDs, want 500", n)
	}
	if n := len(r.BatchTargets()); n != 5 {
		t.Errorf("request splits into %d batches, want 5", n)
	}
	b := benchBatch()
	tally := hbrbot.Tally(b.Outcomes())
	for _, k := range []hbrbot.OutcomeKind{hbrbot.OutcomeUpgraded, hbrbot.OutcomeFailed, hbrbot.OutcomeInvalid} {
		if tally[k] == 0 {
			t.Errorf("the batch has no %s outcome: %v", k, tally)
		}
	}
	text, blocks := bot.FinalReport(b)
	if len(blocks) == 0 || text == "" {
		t.Fatal("empty final report")
	}
	raw, err := json.Marshal(blocks)
	if err != nil {
		t.Fatal(err)
	}
	// A 100-ID report keeps its failures in the message; every ID is in
	// its CSV table.
	table := string(bot.ReportCSV(b))
	for _, o := range b.Outcomes() {
		if !strings.Contains(table, o.ID+","+string(o.Kind)) {
			t.Fatalf("the CSV table lacks %s", o.ID)
		}
		if o.Kind != hbrbot.OutcomeUpgraded && !strings.Contains(string(raw), o.ID) {
			t.Fatalf("the final report does not name the failed %s", o.ID)
		}
	}
}
