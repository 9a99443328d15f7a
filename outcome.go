package hbrbot

import (
	"cmp"
	"strings"
)

// OutcomeKind is what became of one instance or client.
type OutcomeKind string

const (
	OutcomeUpgraded   OutcomeKind = "upgraded"
	OutcomeFailed     OutcomeKind = "failed"
	OutcomeInvalid    OutcomeKind = "invalid"     // refused by UpgradeBackupClients' pre-check
	OutcomeExpired    OutcomeKind = "expired"     // the HBR job expired
	OutcomeCancelled  OutcomeKind = "cancelled"   // the HBR job was cancelled
	OutcomeTimedOut   OutcomeKind = "timed_out"   // no end within HBRBOT_TASK_TIMEOUT
	OutcomeNotStarted OutcomeKind = "not_started" // UpgradeBackupClients refused the batch
	OutcomeUnknown    OutcomeKind = "unknown"     // the submission's fate is unknown
	OutcomeDryRun     OutcomeKind = "dry_run"     // would have been upgraded
	// OutcomeStillOld: HBR called the upgrade done, but the client, though
	// ACTIVATED, still runs an older version than the latest.
	OutcomeStillOld OutcomeKind = "still_old"
	// OutcomeNotUpgraded: verified below the latest version after a job
	// that gave no word on it (a submission whose answer was lost).
	OutcomeNotUpgraded OutcomeKind = "not_upgraded"
)

// Outcome is what became of one ID of a batch.
type Outcome struct {
	ID   string
	Kind OutcomeKind
	// Code is HBR's error code or client status behind a failure.
	Code string
	// HBRCode is what HBR's Result said of an ID verified upgraded when
	// it disagreed (an error code or a client status other than ACTIVATED).
	HBRCode string
	// Unverified: the look-up after the job failed, so the outcome is
	// HBR's word (Result and the job's status), not the client's state.
	Unverified bool
	// InResult: the job's Result named the ID (unverified, its word
	// decided; else the job's status did).
	InResult bool
	// AnswerLost: HBR's answer to UpgradeBackupClients was lost; the
	// outcome was verified once the job must have ended.
	AnswerLost bool
	// Before and After are the client's versions, when known; Latest the
	// newest HBR offers.
	Before, After, Latest string
}

// Outcomes gives every ID of an ended batch its outcome, in the batch's
// order. The clients' state after the job (After, from
// DescribeBackupClients) decides: ACTIVATED at MaxClientVersion is
// upgraded, whatever the job's Result says; anything else is not, with
// Result's code when it has one, else the client's status. Without that
// look-up (VerifyFailure), Result and the job's status decide, marked
// unverified. A submission whose answer was lost is verified the same
// way; unverified, its outcome is unknown.
func (b Batch) Outcomes() []Outcome {
	invalid := make(map[string]string, len(b.Invalid))
	for _, iv := range b.Invalid {
		invalid[iv.ID] = iv.ErrorCode
	}
	results := make(map[string]ClientResult, 2*len(b.Results))
	for _, r := range b.Results {
		if r.InstanceID != "" {
			results[r.InstanceID] = r
		}
		if r.ClientID != "" {
			results[r.ClientID] = r
		}
	}
	verified := b.Verified()
	unknown := b.Error != nil && b.Error.Unknown
	var out []Outcome
	for _, id := range b.Targets.All() {
		o := Outcome{ID: id}
		r, hasResult := results[id]
		o.InResult = hasResult
		after, seen := Lookup(b.After, id)
		switch code, bad := invalid[id]; {
		case bad:
			o.Kind, o.Code = OutcomeInvalid, code
		case b.Error != nil && !unknown:
			o.Kind, o.Code = OutcomeNotStarted, b.Error.Code
		case b.Final == JobDryRun:
			o.Kind = OutcomeDryRun
		case verified:
			o.Kind, o.Code, o.HBRCode = verifiedOutcome(b.Final, r, hasResult, after, seen)
			o.AnswerLost = unknown
		case unknown:
			o.Kind = OutcomeUnknown
		default:
			o.Unverified = true
			if hasResult {
				o.Kind, o.Code = resultOutcome(r)
			} else {
				o.Kind = statusOutcome(b.Final)
				if o.Kind == OutcomeFailed {
					o.Code = "JobFailed"
				}
			}
		}
		if c, ok := Lookup(b.Before, id); ok {
			o.Before, o.Latest = c.Version, c.MaxVersion
		}
		if seen {
			o.After, o.Latest = after.Version, after.MaxVersion
		}
		out = append(out, o)
	}
	return out
}

// Verified reports whether the clients were looked up after the job, so
// their state decides the outcomes.
func (b BatchStatus) Verified() bool {
	return b.VerifyFailure == "" && (!b.VerifiedAt.IsZero() || b.After != nil)
}

// verifiedOutcome is one ID's outcome from its client's state after the
// job (c, when DescribeBackupClients listed it), refined by its Result
// (r, when the job's Result named it) and the job's status.
func verifiedOutcome(final FinalStatus, r ClientResult, hasResult bool, c ClientInfo, seen bool) (kind OutcomeKind, code, hbrCode string) {
	resultCode := ""
	if hasResult {
		resultCode = cmp.Or(r.ErrorCode, r.ClientStatus)
		if resultCode == "ACTIVATED" && r.ErrorCode == "" {
			resultCode = ""
		}
		if resultCode == "" && r.ClientStatus == "" {
			resultCode = "UNKNOWN"
		}
	}
	if seen && c.Status == "ACTIVATED" && c.Version != "" && c.MaxVersion != "" && CompareVersions(c.Version, c.MaxVersion) >= 0 {
		return OutcomeUpgraded, "", resultCode
	}
	status := "NotFound" // the look-up did not list the client
	if seen {
		status = cmp.Or(c.Status, "UNKNOWN")
	}
	switch {
	case hasResult && resultCode == "" && seen && c.Status == "ACTIVATED":
		// HBR called it done; the client runs, on an older version.
		return OutcomeStillOld, "StillOld", ""
	case hasResult && resultCode == "":
		// HBR called it done; the client is not ACTIVATED (or not
		// listed): its status says why, as when Result is silent.
		return OutcomeFailed, status, ""
	case hasResult:
		return OutcomeFailed, resultCode, ""
	}
	switch kind = statusOutcome(final); kind {
	case OutcomeFailed:
		if final == JobNotStarted { // a submission whose answer was lost
			return OutcomeNotUpgraded, status, ""
		}
		return OutcomeFailed, status, ""
	case OutcomeUpgraded:
		if seen && c.Status == "ACTIVATED" {
			return OutcomeStillOld, "StillOld", ""
		}
		return OutcomeFailed, status, ""
	}
	return kind, status, ""
}

func resultOutcome(r ClientResult) (OutcomeKind, string) {
	if r.ClientStatus == "ACTIVATED" && r.ErrorCode == "" {
		return OutcomeUpgraded, ""
	}
	if r.ErrorCode != "" {
		return OutcomeFailed, r.ErrorCode
	}
	if r.ClientStatus == "" {
		return OutcomeFailed, "UNKNOWN"
	}
	return OutcomeFailed, r.ClientStatus
}

func statusOutcome(f FinalStatus) OutcomeKind {
	switch f {
	case JobCompleted:
		return OutcomeUpgraded
	case JobExpired:
		return OutcomeExpired
	case JobCancelled:
		return OutcomeCancelled
	case JobTimedOut:
		return OutcomeTimedOut
	case JobDryRun:
		return OutcomeDryRun
	}
	return OutcomeFailed
}

// Tally counts outcomes by kind.
func Tally(outcomes []Outcome) map[OutcomeKind]int {
	t := make(map[OutcomeKind]int)
	for _, o := range outcomes {
		t[o.Kind]++
	}
	return t
}

// Overall tallies the outcomes of a request's batches; done is false while
// any batch has not ended.
func Overall(batches []Batch) (tally map[OutcomeKind]int, done bool) {
	tally = make(map[OutcomeKind]int)
	done = len(batches) > 0
	for _, b := range batches {
		if b.State != BatchFinished {
			done = false
			continue
		}
		for k, n := range Tally(b.Outcomes()) {
			tally[k] += n
		}
	}
	if len(batches) > 0 && len(batches) < batches[0].Of {
		done = false
	}
	return tally, done
}

// RetryTargets are the IDs of an ended batch worth another try: every one
// that did not end upgraded, except those whose submission's fate is
// unknown (they may be upgrading still).
func RetryTargets(b Batch) Targets { return RetryTargetsOf(b.Outcomes()) }

// RetryTargetsOf is RetryTargets of outcomes already worked out.
func RetryTargetsOf(outcomes []Outcome) Targets {
	var t Targets
	for _, o := range outcomes {
		switch o.Kind {
		case OutcomeUpgraded, OutcomeDryRun, OutcomeUnknown:
			continue
		}
		if strings.HasPrefix(o.ID, "c-") {
			t.ClientIDs = append(t.ClientIDs, o.ID)
		} else {
			t.InstanceIDs = append(t.InstanceIDs, o.ID)
		}
	}
	return t
}
