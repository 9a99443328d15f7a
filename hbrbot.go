// Package hbrbot holds the domain of the HBR upgrade bot: what a command asks
// for, the approval request it becomes, the HBR jobs (batches) it is split
// into, and the outcome of every instance or client. It imports none of the
// adapters (Slack, Alibaba Cloud, Redis); they depend on it.
package hbrbot

import (
	"errors"
	"strconv"
	"time"
)

// MaxBatchSize is HBR's limit on InstanceIds plus ClientIds in one
// UpgradeBackupClients call.
const MaxBatchSize = 100

// Targets are the IDs one upgrade names: ECS instance IDs (i-...) and HBR
// client IDs (c-...), each list in the order typed, without duplicates.
type Targets struct {
	InstanceIDs []string `json:"instance_ids,omitempty"`
	ClientIDs   []string `json:"client_ids,omitempty"`
}

// Len is the number of IDs.
func (t Targets) Len() int { return len(t.InstanceIDs) + len(t.ClientIDs) }

// All lists every ID, instances first.
func (t Targets) All() []string {
	all := make([]string, 0, t.Len())
	all = append(all, t.InstanceIDs...)
	return append(all, t.ClientIDs...)
}

// Split cuts the targets into batches of at most size IDs, instances first,
// keeping the typed order.
func (t Targets) Split(size int) []Targets {
	var batches []Targets
	var cur Targets
	add := func(id string, client bool) {
		if cur.Len() == size {
			batches = append(batches, cur)
			cur = Targets{}
		}
		if client {
			cur.ClientIDs = append(cur.ClientIDs, id)
		} else {
			cur.InstanceIDs = append(cur.InstanceIDs, id)
		}
	}
	for _, id := range t.InstanceIDs {
		add(id, false)
	}
	for _, id := range t.ClientIDs {
		add(id, true)
	}
	if cur.Len() > 0 {
		batches = append(batches, cur)
	}
	return batches
}

// CrossAccount names the source account of a cross-account upgrade.
type CrossAccount struct {
	UserID   int64  `json:"user_id"`
	RoleName string `json:"role_name"`
}

// UpgradeSpec is what an upgrade command asks for.
type UpgradeSpec struct {
	Targets
	// DryRun: --dry-run was given.
	DryRun bool `json:"dry_run,omitempty"`
	// Force: --force; clients already at the latest version are upgraded
	// too instead of being left out.
	Force bool `json:"force,omitempty"`
	// Outdated: --outdated; the targets are the region's clients older
	// than the latest version, at most Limit of them.
	Outdated bool `json:"outdated,omitempty"`
	Limit    int  `json:"limit,omitempty"`
	// Region is the region the command named; empty means the default.
	Region       string        `json:"region,omitempty"`
	CrossAccount *CrossAccount `json:"cross_account,omitempty"`
}

// CommandKind says which of the slash command's forms was typed.
type CommandKind int

const (
	CommandHelp CommandKind = iota
	CommandStatus
	CommandUpgrade
)

// Command is a parsed slash command text.
type Command struct {
	Kind    CommandKind
	Upgrade UpgradeSpec // set for CommandUpgrade
}

// RequestState is where an upgrade request stands in its approval.
type RequestState string

const (
	RequestPending   RequestState = "pending"
	RequestApproved  RequestState = "approved"
	RequestCancelled RequestState = "cancelled"
	RequestExpired   RequestState = "expired"
)

// Request is one /hbr-upgrade command awaiting, or past, its decision.
type Request struct {
	ID          string       `json:"id"`
	TeamID      string       `json:"team_id"`
	ChannelID   string       `json:"channel_id"`
	RequesterID string       `json:"requester_id"`
	Spec        UpgradeSpec  `json:"spec"`
	CardTS      string       `json:"card_ts,omitempty"`
	State       RequestState `json:"state"`
	DecidedBy   string       `json:"decided_by,omitempty"`
	CreatedAt   time.Time    `json:"created_at"`
	ExpiresAt   time.Time    `json:"expires_at"`
	DecidedAt   time.Time    `json:"decided_at,omitzero"`
	// RequiredApprovals distinct approvers must approve; Approvals lists
	// those who have, in order.
	RequiredApprovals int      `json:"required_approvals"`
	Approvals         []string `json:"approvals,omitempty"`
	// DryRun runs the whole flow but never calls UpgradeBackupClients.
	DryRun bool `json:"dry_run,omitempty"`
	// Preflight is what DescribeBackupClients said of the IDs before the
	// card was posted; PreflightFailure why it could not say (a Failure
	// reason; the card then shows the IDs as typed). Skipped are IDs left
	// out because they already run the latest version.
	Preflight        []ClientInfo `json:"preflight,omitempty"`
	PreflightFailure string       `json:"preflight_failure,omitempty"`
	Skipped          []string     `json:"skipped,omitempty"`
	// The live progress reply in the card's thread, once posted.
	ProgressTS    string      `json:"-"`
	ProgressState ReportState `json:"-"`
	ProgressAt    time.Time   `json:"-"`
}

// BatchTargets splits the request's targets into its HBR jobs, one per batch.
func (r Request) BatchTargets() []Targets { return r.Spec.Split(MaxBatchSize) }

// BatchState is where one HBR job of a request stands.
type BatchState string

const (
	// BatchPending: approved, UpgradeBackupClients not yet called.
	BatchPending BatchState = "pending"
	// BatchSubmitting: UpgradeBackupClients is being called. Found so after
	// the caller's lease ran out, its outcome is unknown: never resubmitted.
	BatchSubmitting BatchState = "submitting"
	// BatchRunning: HBR accepted the job; DescribeTask is polled.
	BatchRunning BatchState = "running"
	// BatchFinished: the job ended (or could not start); the final report
	// is due or posted.
	BatchFinished BatchState = "finished"
)

// BatchStatus is where one HBR job of a request stands: everything a poll
// reads and writes. What the job names (BatchSpec) is stored apart, written
// once at the approval: at 100 IDs a job it is most of the bytes, and a
// poll needs none of it.
type BatchStatus struct {
	RequestID    string        `json:"request_id"`
	Index        int           `json:"index"` // 0-based
	Of           int           `json:"of"`    // batches in the request
	Region       string        `json:"region"`
	CrossAccount *CrossAccount `json:"cross_account,omitempty"`
	DryRun       bool          `json:"dry_run,omitempty"`
	// Thread: where the batch reports, and whom it tells.
	RequesterID string `json:"requester_id,omitempty"`
	ChannelID   string `json:"channel_id"`
	ThreadTS    string `json:"thread_ts"`

	State    BatchState      `json:"state"`
	TaskID   string          `json:"task_id,omitempty"`
	Invalid  []InvalidTarget `json:"invalid,omitempty"`
	Started  time.Time       `json:"started,omitzero"`  // job creation
	Deadline time.Time       `json:"deadline,omitzero"` // report as timed out after
	Ended    time.Time       `json:"ended,omitzero"`    // the poll that saw the job end
	Progress int             `json:"progress"`
	// ProgressAt is when Progress was seen (the last poll that answered).
	ProgressAt time.Time      `json:"progress_at,omitzero"`
	Polls      int            `json:"polls,omitempty"` // DescribeTask calls so far
	Final      FinalStatus    `json:"final,omitempty"`
	Results    []ClientResult `json:"results,omitempty"`
	// After is the clients as DescribeBackupClients saw them after the
	// job; VerifyFailure says why it is missing (a Failure reason).
	After         []ClientInfo `json:"after,omitempty"`
	VerifyFailure string       `json:"verify_failure,omitempty"`
	// VerifiedAt is when that look-up answered (After may be empty: no
	// client listed).
	VerifiedAt time.Time `json:"verified_at,omitzero"`
	// VerifyDue: the job ended and its clients are still to be looked
	// up; the finished step does it before the report. Kept in the batch
	// so that a look-up waiting for HBR's budget never polls the job again.
	VerifyDue bool `json:"verify_due,omitempty"`
	// SubmitAt is when the submission began (the batch marked
	// submitting): a submission whose answer was lost is verified once
	// HBRBOT_TASK_TIMEOUT has passed since.
	SubmitAt time.Time                  `json:"submit_at,omitzero"`
	Reported map[ReportKind]ReportState `json:"reported,omitempty"`
	Error    *SubmissionError           `json:"error,omitempty"`
}

// BatchSpec is what one HBR job names: its IDs, and how the look-up before
// the card saw them. It never changes once the batch exists.
type BatchSpec struct {
	Targets Targets      `json:"targets"`
	Before  []ClientInfo `json:"before,omitempty"`
}

// Batch is one UpgradeBackupClients call of a request and the HBR job it
// started: its status and its spec together, as a report needs them.
type Batch struct {
	BatchStatus
	BatchSpec
}

// Key names the batch uniquely across requests.
func (b BatchStatus) Key() string { return BatchKey(b.RequestID, b.Index) }

// BatchKey names batch index of request id.
func BatchKey(requestID string, index int) string {
	return requestID + "." + strconv.Itoa(index)
}

// InvalidTarget is an ID that UpgradeBackupClients marked invalid.
type InvalidTarget struct {
	ID        string `json:"id"`
	ErrorCode string `json:"error_code"`
}

// SubmissionError says why a batch never became a running job.
type SubmissionError struct {
	// Unknown: the call may or may not have reached HBR (timeout, lost
	// connection, a crash mid-call). Never resubmitted.
	Unknown bool `json:"unknown,omitempty"`
	// Interrupted: the unknown outcome of a replica that stopped mid-call.
	Interrupted bool   `json:"interrupted,omitempty"`
	Code        string `json:"code,omitempty"`
	Message     string `json:"message,omitempty"`
}

// CodeNotDurable marks a batch not submitted because its submitting mark
// could not be made durable first.
const CodeNotDurable = "NotDurable"

// Reasons a look-up failed, besides HBR's own error codes.
const (
	FailureTimeout = "timeout"
	FailureError   = "error"
	// FailurePending: the look-up has not landed yet (HBR's budget was
	// short); the card is redrawn when it does.
	FailurePending = "pending"
)

// Task is what DescribeTask says of a job.
type Task struct {
	ID          string
	RequestID   string // HBR's RequestId of the DescribeTask call
	Description string // created, completed, expired, cancelled
	Progress    int    // 0..100, -1 when failed
	Result      string // JSON string; may be "", "{}" or an array of ClientResult
}

// FinalStatus is how a job ended.
type FinalStatus string

const (
	JobCompleted FinalStatus = "completed"
	JobExpired   FinalStatus = "expired"
	JobCancelled FinalStatus = "cancelled"
	JobFailed    FinalStatus = "failed"    // Progress -1
	JobTimedOut  FinalStatus = "timed_out" // HBRBOT_TASK_TIMEOUT passed
	// JobNotStarted: UpgradeBackupClients refused, or its outcome is unknown.
	JobNotStarted FinalStatus = "not_started"
	// JobDryRun: a dry run; nothing was submitted.
	JobDryRun FinalStatus = "dry_run"
)

// Final says whether the task has ended and how. A task that has not ended
// returns ok false.
func (t Task) Final() (FinalStatus, bool) {
	switch {
	case t.Progress == -1:
		return JobFailed, true
	case t.Description == "completed":
		return JobCompleted, true
	case t.Description == "expired":
		return JobExpired, true
	case t.Description == "cancelled":
		return JobCancelled, true
	}
	return "", false
}

var (
	// ErrNotFound: no such request or batch (never made, or past retention).
	ErrNotFound = errors.New("not found")
	// ErrLeaseLost: another replica holds the work item now.
	ErrLeaseLost = errors.New("lease lost")
	// ErrNotDurable: a write could not be made durable (a replica or the
	// disk did not acknowledge it in time).
	ErrNotDurable = errors.New("not durable")
	// ErrConflict: the request changed since it was read; nothing was
	// written.
	ErrConflict = errors.New("request changed meanwhile")
)

// RequestVersion is what a change to a request expects to find: a change
// made from a request that has moved on since it was read is refused
// (ErrConflict), and worked out again from the request as it now stands.
type RequestVersion struct {
	State     RequestState
	Approvals []string
}

// RequestChange is one step of a pending request towards its decision (an
// approval, a cancellation, its expiry), stored whole or not at all: the
// request's new state, the batches an approval creates and the work the
// step schedules.
type RequestChange struct {
	Expect    RequestVersion
	State     RequestState
	Approvals []string
	DecidedBy string // set with a decision
	DecidedAt time.Time
	// CardTS records the card clicked when the request lacks it.
	CardTS string
	// Batches are created with the approval, each due at once.
	Batches []Batch
	// Schedule is work due with the change; Unschedule, work it ends.
	Schedule   []Due
	Unschedule []Work
}

// Due is a work item and when it is due.
type Due struct {
	Work Work
	At   time.Time
}

// Work is a unit of scheduled work, run by whichever replica claims it.
type Work struct {
	Kind WorkKind
	ID   string // batch key or request ID
}

// WorkKind says what a Work item does when due.
type WorkKind string

const (
	// WorkBatch advances a batch: submit, poll, report.
	WorkBatch WorkKind = "bat"
	// WorkExpiry expires a request still pending at its deadline.
	WorkExpiry WorkKind = "exp"
	// WorkCardSync brings a decided request's card up to date.
	WorkCardSync WorkKind = "card"
	// WorkProgress posts or updates a request's live progress reply.
	WorkProgress WorkKind = "prog"
	// WorkCommand runs an upgrade command stored before its ack (ID: the
	// envelope); WorkClick, a button click likewise.
	WorkCommand WorkKind = "cmd"
	WorkClick   WorkKind = "click"
	// WorkLookup makes a request's pre-flight look-up that could not run
	// in its budget before the card, and redraws the card with it.
	WorkLookup WorkKind = "look"
)

// Lease is one replica's claim on a Work item until Until. Token fences
// the holder's writes: once the lease is lost, they are refused.
type Lease struct {
	Work  Work
	Until time.Time
	Token string
}

// Next says what becomes of a leased work item when its holder writes:
// the holder keeps it (Hold), keeps it longer (HoldUntil), lets it go due
// again at a time (DueAt), or ends it (End).
type Next struct {
	Kind NextKind
	At   time.Time // HoldUntil's end of the lease, DueAt's due time
}

// NextKind is one of Next's four cases.
type NextKind int

const (
	// The zero Next is none of them: a step that forgot to say is an
	// error, not a lease kept by accident.
	NextHold NextKind = iota + 1
	NextHoldUntil
	NextDue
	NextEnd
)

// Hold keeps the lease as it is.
func Hold() Next { return Next{Kind: NextHold} }

// HoldUntil extends the lease to t: for a step that must not lose it
// midway (a submission).
func HoldUntil(t time.Time) Next { return Next{Kind: NextHoldUntil, At: t} }

// DueAt hands the item back, due at t.
func DueAt(t time.Time) Next { return Next{Kind: NextDue, At: t} }

// End removes the item from the schedule: its work is done.
func End() Next { return Next{Kind: NextEnd} }

// ErrOutcomeUnknown marks an UpgradeBackupClients call that may or may not
// have started a job: it must be reported, never retried.
var ErrOutcomeUnknown = errors.New("outcome unknown")

// Submission is what UpgradeBackupClients answered.
type Submission struct {
	TaskID    string
	RequestID string
	Invalid   []InvalidTarget
}

// HBRError is an error HBR answered with: a non-2xx status, or a 200 whose
// body says "Success": false.
type HBRError struct {
	Action     string
	Code       string
	Message    string
	RequestID  string
	HTTPStatus int
}

func (e *HBRError) Error() string {
	return e.Action + ": " + e.Code + ": " + Excerpt(e.Message, 200) + " (request " + e.RequestID + ")"
}

// Excerpt is s cut to at most n runes, marked "…" when cut.
func Excerpt(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "…"
}

// ErrorCode is HBR's error code in err, or "" when err is not an HBR answer.
func ErrorCode(err error) string {
	var e *HBRError
	if errors.As(err, &e) {
		return e.Code
	}
	return ""
}

// ReportKind names one of a batch's thread replies.
type ReportKind string

const (
	// ReportStarted names the TaskId and the invalid IDs.
	ReportStarted ReportKind = "started"
	// ReportFinal lists every ID with its outcome.
	ReportFinal ReportKind = "final"
	// ReportProgress is the request's one live progress reply, updated in
	// place; its key is the request ID.
	ReportProgress ReportKind = "progress"
	// ReportTable is the full table of a large final report, as a CSV file
	// in the thread.
	ReportTable ReportKind = "table"
)

// ReportState tracks one thread reply through its posting.
type ReportState string

const (
	// ReportAttempted: a post was about to be sent; whether Slack has it
	// must be checked before posting again.
	ReportAttempted ReportState = "attempted"
	ReportPosted    ReportState = "posted"
)

// ClientInfo is what DescribeBackupClients says of one ECS backup client.
type ClientInfo struct {
	ClientID     string `json:"client_id"`
	InstanceID   string `json:"instance_id"`
	InstanceName string `json:"instance_name,omitempty"`
	Version      string `json:"version,omitempty"`     // ClientVersion
	MaxVersion   string `json:"max_version,omitempty"` // MaxClientVersion: the latest available
	Status       string `json:"status,omitempty"`      // ACTIVATED, UPGRADING, UNKNOWN (disconnected), ...
}

// Lookup finds the client an ID names (an instance ID or a client ID).
func Lookup(clients []ClientInfo, id string) (ClientInfo, bool) {
	for _, c := range clients {
		if c.InstanceID == id || c.ClientID == id {
			return c, true
		}
	}
	return ClientInfo{}, false
}
