package upgrade

import (
	"time"

	"github.com/hbrbot/hbrbot"
	"github.com/hbrbot/hbrbot/policy"
)

// Notice is what the person who typed a command or clicked a button is
// told privately: a kind and its facts. Package bot words it.
type Notice struct {
	Kind NoticeKind
	// Act is what the person did: the wording of a refusal depends on it.
	Act     Act
	Refusal *policy.Refusal // NoticeRefused
	// Request is the request concerned: its decision, its approvals.
	Request hbrbot.Request
	// Count is how many IDs (NoticeNothingToUpgrade, NoticeFleetUpToDate).
	Count  int
	Region string
	// Reason is a short, secret-free reason from HBR (its error code) or
	// Slack (its error string); empty when there is none.
	Reason string
	Status []StatusLine // NoticeStatus
}

// NoticeKind says which Notice it is.
type NoticeKind int

const (
	// NoticeNone: nothing to say (a redelivered envelope, or the card
	// says it all).
	NoticeNone NoticeKind = iota
	// NoticeUnavailable: Redis could not be reached; nothing was done.
	NoticeUnavailable
	// NoticeRefused: the rules refuse it (Refusal says which).
	NoticeRefused
	// NoticeNothingToUpgrade: every client named (Count) already runs
	// the latest version.
	NoticeNothingToUpgrade
	// NoticeListFailed: the region's clients could not be listed.
	NoticeListFailed
	// NoticeFleetUpToDate: every client of Region (Count) runs the latest.
	NoticeFleetUpToDate
	// NoticeCardFailed: the approval card could not be posted.
	NoticeCardFailed
	// NoticeUnknownRequest, NoticeUnknownJob: a click on a card or report
	// hbrbot no longer knows.
	NoticeUnknownRequest
	NoticeUnknownJob
	// NoticeAlreadyDecided: the request was decided (or expired) before.
	NoticeAlreadyDecided
	// NoticeApprovalRecorded: one approval of several is in.
	NoticeApprovalRecorded
	// NoticeAlreadyApproved: the same approver clicked again.
	NoticeAlreadyApproved
	// NoticeNothingToRetry: every ID of the job ended well.
	NoticeNothingToRetry
	// NoticeStatus: what is in flight in the channel.
	NoticeStatus
)

// Act is what the person refused tried to do.
type Act int

const (
	ActCommand Act = iota
	ActApprove
	ActCancel
	ActRetry
)

func (a Act) String() string {
	switch a {
	case ActApprove:
		return "approve"
	case ActCancel:
		return "cancel"
	case ActRetry:
		return "retry"
	}
	return "command"
}

// StatusLine is one request awaiting approval (Batch nil), or one of its
// jobs not yet reported.
type StatusLine struct {
	Request hbrbot.Request
	Batch   *hbrbot.BatchStatus
	IDs     int           // in the job, or the request
	Age     time.Duration // since the request
	Running time.Duration // since the job started
}
