package upgrade

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/hbrbot/hbrbot"
)

// statusLimit bounds how many of a channel's recent requests status reads.
const statusLimit = 50

// Status tells the caller what is in flight in their channel: requests
// awaiting approval and jobs not yet reported.
func (s *Service) Status(ctx context.Context, inv Invocation) {
	sctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	if !s.firstDelivery(sctx, inv.EnvelopeID, inv.recipient()) {
		return
	}
	text, err := s.statusText(sctx, inv.ChannelID)
	if err != nil {
		s.log.ErrorContext(ctx, "status", "channel", inv.ChannelID, "err", err)
		s.tell(ctx, inv.recipient(), Unavailable)
		return
	}
	s.tell(ctx, inv.recipient(), text)
}

func (s *Service) statusText(ctx context.Context, channel string) (string, error) {
	reqs, err := s.store.ChannelRequests(ctx, channel, statusLimit)
	if err != nil {
		return "", err
	}
	now := s.now()
	var lines []string
	for _, r := range reqs {
		age := now.Sub(r.CreatedAt).Truncate(time.Second)
		link := s.link(ctx, r)
		switch r.State {
		case hbrbot.RequestPending:
			if now.After(r.ExpiresAt) {
				continue
			}
			lines = append(lines, fmt.Sprintf("• %s awaiting approval (%d of %d): %d IDs in %s, requested by <@%s> %s ago%s",
				link, len(r.Approvals), r.RequiredApprovals, r.Spec.Len(), r.Spec.Region, r.RequesterID, age, dry(r.DryRun)))
		case hbrbot.RequestApproved:
			batches, err := s.store.Batches(ctx, r)
			if err != nil {
				return "", err
			}
			for _, b := range batches {
				if b.State == hbrbot.BatchFinished && b.Reported[hbrbot.ReportFinal] == hbrbot.ReportPosted {
					continue
				}
				lines = append(lines, fmt.Sprintf("• %s job %d/%d (%d IDs): %s, approved by <@%s> %s ago%s",
					link, b.Index+1, b.Of, b.Targets.Len(), batchState(b, now), r.DecidedBy, age, dry(r.DryRun)))
			}
		}
	}
	if len(lines) == 0 {
		return "Nothing in flight in this channel.", nil
	}
	return "*In flight in this channel:*\n" + strings.Join(lines, "\n"), nil
}

func batchState(b hbrbot.Batch, now time.Time) string {
	switch b.State {
	case hbrbot.BatchPending:
		return "waiting to be submitted"
	case hbrbot.BatchSubmitting:
		return "being submitted"
	case hbrbot.BatchRunning:
		return fmt.Sprintf("running as `%s`, %d%% after %s", b.TaskID, max(b.Progress, 0), now.Sub(b.Started).Truncate(time.Second))
	}
	return "ended, report being posted"
}

func dry(on bool) string {
	if on {
		return " (dry run)"
	}
	return ""
}

// link is the request's ID, linked to its card when Slack gives a
// permalink.
func (s *Service) link(ctx context.Context, r hbrbot.Request) string {
	if r.CardTS == "" {
		return "`" + r.ID + "`"
	}
	url, err := s.chat.Permalink(ctx, r.ChannelID, r.CardTS)
	if err != nil {
		s.log.WarnContext(ctx, "permalink", "request", r.ID, "err", err)
		return "`" + r.ID + "`"
	}
	return "<" + url + "|" + r.ID + ">"
}
