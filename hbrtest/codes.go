package hbrtest

// Error codes the fake returns. Gateway (POP) codes come from Alibaba's common
// error tables and observed responses; the HBR-specific ones not documented
// anywhere are marked "fake's choice".
const (
	// Gateway: request shape and authentication.
	CodeMissingParameter           = "MissingParameter"                           // 400
	CodeInvalidParameter           = "InvalidParameter"                           // 400
	CodeInvalidVersion             = "InvalidVersion"                             // 400
	CodeInvalidActionNotFound      = "InvalidAction.NotFound"                     // 404
	CodeUnsupportedHTTPMethod      = "UnsupportedHTTPMethod"                      // 400
	CodeInvalidSignatureMethod     = "InvalidSignatureMethod"                     // 400
	CodeInvalidSignatureVersion    = "InvalidSignatureVersion"                    // 400
	CodeInvalidTimeStampFormat     = "InvalidTimeStamp.Format"                    // 400
	CodeInvalidTimeStampExpired    = "InvalidTimeStamp.Expired"                   // 400
	CodeInvalidAccessKeyIDNotFound = "InvalidAccessKeyId.NotFound"                // 404
	CodeMissingSecurityToken       = "MissingSecurityToken"                       // 400
	CodeInvalidSecurityToken       = "InvalidSecurityToken.MismatchWithAccessKey" // 400
	CodeSignatureDoesNotMatch      = "SignatureDoesNotMatch"                      // 400
	CodeSignatureNonceUsed         = "SignatureNonceUsed"                         // 400

	// Gateway: transient, for FailNext.
	CodeThrottling         = "Throttling"         // 400
	CodeThrottlingUser     = "Throttling.User"    // 400
	CodeServiceUnavailable = "ServiceUnavailable" // 503
	CodeInternalError      = "InternalError"      // 500

	// HBR.
	CodeInvalidTaskIDNotFound = "InvalidTaskId.NotFound"      // 400, fake's choice (undocumented)
	CodeTooManyIDs            = "InvalidParameter.TooManyIds" // 400, fake's choice (undocumented): >100 InstanceIds+ClientIds

	// Per-instance pre-check results of UpgradeBackupClients (documented
	// InstanceStatuses[].ErrorCode values), usable as Instance.Invalid.
	InstanceNotExists               = "InstanceNotExists"
	InstanceNotRunning              = "InstanceNotRunning"
	CloudAssistNotRunningOnInstance = "CloudAssistNotRunningOnInstance"
)

// Client statuses (DescribeBackupClients Status, DescribeTask Result clientStatus).
const (
	StatusActivated     = "ACTIVATED"
	StatusUpgradeFailed = "UPGRADE_FAILED"
	StatusUpgrading     = "UPGRADING" // the job is still at it
	StatusUnknown       = "UNKNOWN"
)

// Task descriptions (DescribeTask Description).
const (
	TaskCreated   = "created"
	TaskCompleted = "completed"
	TaskExpired   = "expired"
	TaskCancelled = "cancelled"
)

// defaultMessage gives Alibaba-like messages for codes a test injects with
// FailNext / SuccessFalseNext without caring about the text.
func defaultMessage(code string) string {
	switch code {
	case CodeThrottling:
		return "Request was denied due to request throttling."
	case CodeThrottlingUser:
		return "Request was denied due to user flow control."
	case "Throttling.Api":
		return "Request was denied due to api flow control."
	case CodeServiceUnavailable:
		return "The request has failed due to a temporary failure of the server."
	case CodeInternalError:
		return "The request processing has failed due to some unknown error, exception or failure."
	case InstanceNotExists:
		return "The specified instance does not exist."
	case InstanceNotRunning:
		return "The specified instance is not running."
	case CloudAssistNotRunningOnInstance:
		return "Cloud Assistant is not running on the specified instance."
	}
	return "The request has failed: " + code + "."
}
