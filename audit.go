package hbrbot

import "time"

// AuditRecord is one step of a request's story: a command (accepted or
// refused, and why), a decision, an HBR call, an outcome. RequestID ties
// the records of one request together.
type AuditRecord struct {
	Time      time.Time         `json:"time"`
	Event     string            `json:"event"`
	RequestID string            `json:"request_id,omitempty"`
	Actor     string            `json:"actor,omitempty"` // Slack user ID, or "hbrbot"
	Channel   string            `json:"channel,omitempty"`
	Fields    map[string]string `json:"fields,omitempty"`
}

// Audit events.
const (
	AuditCommandAccepted = "command_accepted"
	AuditCommandRefused  = "command_refused"
	AuditRequestPosted   = "request_posted"
	AuditApprovalAdded   = "approval_recorded"
	AuditClickRefused    = "click_refused"
	AuditDecided         = "request_decided"
	AuditHBRCall         = "hbr_call"
	AuditJobFinished     = "job_finished"
	AuditReportPosted    = "report_posted"
	// AuditUnknownResolved: a submission whose answer was lost was
	// verified once its job must have ended.
	AuditUnknownResolved = "unknown_resolved"
	// AuditStateLost: a request or batch scheduled for work is missing
	// from Redis (evicted or deleted).
	AuditStateLost = "state_lost"
)
