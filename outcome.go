package hbrbot

import "strings"

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
	// OutcomeStillOld: HBR called the upgrade done, but the client still
	// runs an older version than the latest.
	OutcomeStillOld OutcomeKind = "still_old"
)

// Outcome is what became of one ID of a batch.
type Outcome struct {
	ID   string
	Kind OutcomeKind
	// Code is HBR's error code or client status behind a failure.
	Code string
	// Before and After are the client's versions, when known; Latest the
	// newest HBR offers.
	Before, After, Latest string
}

// Outcomes gives every ID of an ended batch its outcome, in the batch's
// order. Per-ID results from the job win; IDs they do not mention take the
// job's status.
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
	var out []Outcome
	for _, id := range b.Targets.All() {
		o := Outcome{ID: id}
		switch code, bad := invalid[id]; {
		case bad:
			o.Kind, o.Code = OutcomeInvalid, code
		case b.Error != nil && b.Error.Unknown:
			o.Kind = OutcomeUnknown
		case b.Error != nil:
			o.Kind, o.Code = OutcomeNotStarted, b.Error.Code
		default:
			if r, ok := results[id]; ok {
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
		if c, ok := Lookup(b.After, id); ok {
			o.After, o.Latest = c.Version, c.MaxVersion
			if o.Kind == OutcomeUpgraded && c.Outdated() {
				o.Kind, o.Code = OutcomeStillOld, "StillOld"
			}
		}
		out = append(out, o)
	}
	return out
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
