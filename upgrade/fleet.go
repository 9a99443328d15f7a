package upgrade

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"slices"
	"time"

	"github.com/hbrbot/hbrbot"
	"github.com/hbrbot/hbrbot/hbr"
)

// clientLookup finds backup clients in HBR.
type clientLookup interface {
	DescribeBackupClients(ctx context.Context, region string, t hbrbot.Targets, cross *hbrbot.CrossAccount) ([]hbrbot.ClientInfo, error)
}

// fleet is the read-only look-ups a command makes before its card.
type fleet struct {
	hbr clientLookup
	log *slog.Logger
}

// preflightTimeout bounds the look-up before the card: the caller waits,
// and the whole command must fit the bot's handler budget.
const preflightTimeout = 3 * time.Second

// preflight looks the IDs up with DescribeBackupClients. On failure it
// says why instead (HBR's error code, "timeout" or "error"), and the card
// shows the IDs as typed.
func (f fleet) preflight(ctx context.Context, spec hbrbot.UpgradeSpec) ([]hbrbot.ClientInfo, string) {
	ctx, cancel := context.WithTimeout(ctx, preflightTimeout)
	defer cancel()
	clients, err := f.hbr.DescribeBackupClients(withPriority(ctx, hbr.Priority{Class: hbr.Informs}), spec.Region, spec.Targets, spec.CrossAccount)
	if err != nil {
		f.log.WarnContext(ctx, "preflight look-up failed", "err", err)
		return nil, lookupFailure(err)
	}
	return clients, ""
}

// lookupFailure is a short reason for a failed look-up.
func lookupFailure(err error) string {
	switch {
	case hbrbot.ErrorCode(err) != "":
		return hbrbot.ErrorCode(err)
	case errors.Is(err, context.DeadlineExceeded):
		return hbrbot.FailureTimeout
	}
	return hbrbot.FailureError
}

// outdated fills spec with the region's clients older than the latest
// version (at most spec.Limit, oldest first), or says why there is nothing
// to approve.
func (f fleet) outdated(ctx context.Context, spec hbrbot.UpgradeSpec) (hbrbot.UpgradeSpec, []hbrbot.ClientInfo, Notice) {
	lctx, cancel := context.WithTimeout(ctx, 3*preflightTimeout) // a whole region, page by page
	defer cancel()
	all, err := f.hbr.DescribeBackupClients(withPriority(lctx, hbr.Priority{Class: hbr.Informs}), spec.Region, hbrbot.Targets{}, spec.CrossAccount)
	if err != nil {
		f.log.WarnContext(ctx, "list clients", "region", spec.Region, "err", err)
		return spec, nil, Notice{Kind: NoticeListFailed, Region: spec.Region, Reason: hbrbot.ErrorCode(err)}
	}
	var outdated []hbrbot.ClientInfo
	for _, c := range all {
		if c.Outdated() && c.ClientID != "" {
			outdated = append(outdated, c)
		}
	}
	if len(outdated) == 0 {
		return spec, nil, Notice{Kind: NoticeFleetUpToDate, Region: spec.Region, Count: len(all)}
	}
	slices.SortStableFunc(outdated, func(a, b hbrbot.ClientInfo) int { return hbrbot.CompareVersions(a.Version, b.Version) })
	outdated = outdated[:min(len(outdated), cmp.Or(spec.Limit, len(outdated)))]
	spec.Targets = hbrbot.Targets{}
	for _, c := range outdated {
		spec.ClientIDs = append(spec.ClientIDs, c.ClientID)
	}
	return spec, outdated, Notice{}
}
