package hbrbot

import (
	"testing"
	"time"
)

// TestOutcomesVerified: the clients' state after the job decides; Result
// refines the reason and never overrides the version.
func TestOutcomesVerified(t *testing.T) {
	const id = "i-aaa"
	at := func(version, status string) []ClientInfo {
		return []ClientInfo{{InstanceID: id, ClientID: "c-aaa", Version: version, MaxVersion: "2.10.0", Status: status}}
	}
	res := func(status, code string) []ClientResult {
		return []ClientResult{{InstanceID: id, ClientStatus: status, ErrorCode: code}}
	}
	for _, tc := range []struct {
		name       string
		final      FinalStatus
		results    []ClientResult
		after      []ClientInfo
		verifyFail string
		err        *SubmissionError
		kind       OutcomeKind
		code, hbr  string
		unverified bool
		lost       bool
	}{
		{name: "agree", final: JobCompleted, results: res("ACTIVATED", ""), after: at("2.10.0", "ACTIVATED"), kind: OutcomeUpgraded},
		{name: "numeric compare", final: JobCompleted, results: res("ACTIVATED", ""), after: at("2.9.0", "ACTIVATED"), kind: OutcomeStillOld, code: "StillOld"},
		{name: "result done, client down and old", final: JobCompleted, results: res("ACTIVATED", ""), after: at("2.4.0", "UNKNOWN"), kind: OutcomeFailed, code: "UNKNOWN"},
		{name: "result done, client not listed", final: JobCompleted, results: res("ACTIVATED", ""), after: []ClientInfo{}, kind: OutcomeFailed, code: "NotFound"},
		{name: "no result, job done, client old", final: JobCompleted, after: at("2.4.0", "ACTIVATED"), kind: OutcomeStillOld, code: "StillOld"},
		{name: "result failed, client upgraded", final: JobCompleted, results: res("UPGRADE_FAILED", "UPGRADE_FAILED"), after: at("2.10.0", "ACTIVATED"), kind: OutcomeUpgraded, hbr: "UPGRADE_FAILED"},
		{name: "result not final, client upgraded", final: JobCompleted, results: res("UPGRADING", ""), after: at("2.10.0", "ACTIVATED"), kind: OutcomeUpgraded, hbr: "UPGRADING"},
		{name: "result not final, client old", final: JobCompleted, results: res("UPGRADING", ""), after: at("2.4.0", "UPGRADING"), kind: OutcomeFailed, code: "UPGRADING"},
		{name: "result error code wins over status", final: JobFailed, results: res("UPGRADE_FAILED", "DiskFull"), after: at("2.4.0", "ACTIVATED"), kind: OutcomeFailed, code: "DiskFull"},
		{name: "no result, client status", final: JobFailed, after: at("2.4.0", "UNKNOWN"), kind: OutcomeFailed, code: "UNKNOWN"},
		{name: "expired but upgraded", final: JobExpired, after: at("2.10.0", "ACTIVATED"), kind: OutcomeUpgraded},
		{name: "expired, old", final: JobExpired, after: at("2.4.0", "ACTIVATED"), kind: OutcomeExpired, code: "ACTIVATED"},
		{name: "upgraded but not activated", final: JobCompleted, after: at("2.10.0", "UNKNOWN"), kind: OutcomeFailed, code: "UNKNOWN"},
		{name: "client not listed", final: JobCompleted, after: []ClientInfo{}, kind: OutcomeFailed, code: "NotFound"},
		{name: "unverified: result decides", final: JobCompleted, results: res("UPGRADE_FAILED", "UPGRADE_FAILED"), verifyFail: FailureTimeout, kind: OutcomeFailed, code: "UPGRADE_FAILED", unverified: true},
		{name: "unverified: job status decides", final: JobCompleted, verifyFail: FailureError, kind: OutcomeUpgraded, unverified: true},
		{name: "answer lost, upgraded", final: JobNotStarted, err: &SubmissionError{Unknown: true}, after: at("2.10.0", "ACTIVATED"), kind: OutcomeUpgraded, lost: true},
		{name: "answer lost, old", final: JobNotStarted, err: &SubmissionError{Unknown: true}, after: at("2.4.0", "ACTIVATED"), kind: OutcomeNotUpgraded, code: "ACTIVATED", lost: true},
		{name: "answer lost, unverified", final: JobNotStarted, err: &SubmissionError{Unknown: true}, verifyFail: FailureError, kind: OutcomeUnknown},
		{name: "refused", final: JobNotStarted, err: &SubmissionError{Code: "Forbidden"}, kind: OutcomeNotStarted, code: "Forbidden"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := Batch{BatchSpec: BatchSpec{Targets: Targets{InstanceIDs: []string{id}}},
				BatchStatus: BatchStatus{State: BatchFinished, Final: tc.final, Results: tc.results, After: tc.after,
					VerifyFailure: tc.verifyFail, Error: tc.err}}
			if tc.verifyFail == "" && tc.after != nil {
				b.VerifiedAt = time.Unix(1, 0)
			}
			o := b.Outcomes()[0]
			if o.InResult != (tc.results != nil) {
				t.Errorf("InResult %v with results %v", o.InResult, tc.results)
			}
			if o.Kind != tc.kind || o.Code != tc.code || o.HBRCode != tc.hbr || o.Unverified != tc.unverified || o.AnswerLost != tc.lost {
				t.Errorf("got %+v, want kind %s code %q hbr %q unverified %v lost %v", o, tc.kind, tc.code, tc.hbr, tc.unverified, tc.lost)
			}
		})
	}
}
