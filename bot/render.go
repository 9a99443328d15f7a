package bot

import (
	"bytes"
	"cmp"
	"encoding/csv"
	"fmt"
	"strings"
	"time"

	"github.com/slack-go/slack"

	"github.com/hbrbot/hbrbot"
)

// Button action IDs, fixed by the contract.
const (
	ActionApprove = "hbr_upgrade_approve"
	ActionCancel  = "hbr_upgrade_cancel"
	// ActionRetry, on a report with failures, opens a new request for them
	// (an addition to the contract's two).
	ActionRetry = "hbr_upgrade_retry"
)

// Slack's limits: a section's text holds 3,000 characters, a message 50
// blocks. Sections are cut below the limit to leave room for markup.
const (
	sectionLimit = 2900
	blockLimit   = 50
)

// reportEventType tags the bot's thread replies (message metadata) so a
// replica can tell whether a reply already went out.
const reportEventType = "hbrbot_report"

func mrkdwn(text string) *slack.TextBlockObject {
	return slack.NewTextBlockObject(slack.MarkdownType, text, false, false)
}

func section(text string) slack.Block { return slack.NewSectionBlock(mrkdwn(text), nil, nil) }

func contextLine(text string) slack.Block {
	return slack.NewContextBlock("", mrkdwn(text))
}

// sections lays out lines in as few sections as fit, using at most max
// blocks; what does not fit is summarised in the last one.
func sections(lines []string, max int) []slack.Block {
	var blocks []slack.Block
	var cur strings.Builder
	for i, l := range lines {
		if cur.Len() > 0 && cur.Len()+1+len(l) > sectionLimit {
			if len(blocks) == max-1 {
				cur.WriteString(fmt.Sprintf("\n… and %d more", len(lines)-i))
				break
			}
			blocks = append(blocks, section(cur.String()))
			cur.Reset()
		}
		if cur.Len() > 0 {
			cur.WriteByte('\n')
		}
		cur.WriteString(l)
	}
	if cur.Len() > 0 {
		blocks = append(blocks, section(cur.String()))
	}
	return blocks
}

// idList renders IDs as code spans, several to a line.
func idList(ids []string) []string {
	const perLine = 5
	var lines []string
	for i := 0; i < len(ids); i += perLine {
		chunk := ids[i:min(i+perLine, len(ids))]
		spans := make([]string, len(chunk))
		for j, id := range chunk {
			spans[j] = code(id)
		}
		lines = append(lines, strings.Join(spans, "  "))
	}
	return lines
}

func account(spec hbrbot.UpgradeSpec) string {
	if spec.CrossAccount == nil {
		return "this account (the bot's credentials)"
	}
	return fmt.Sprintf("cross-account: source account `%d`, role %s", spec.CrossAccount.UserID, code(spec.CrossAccount.RoleName))
}

func plural(n int, word string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, word)
	}
	return fmt.Sprintf("%d %ss", n, word)
}

func stamp(t time.Time) string {
	return fmt.Sprintf("<!date^%d^{date_short_pretty} {time}|%s>", t.Unix(), t.UTC().Format("2006-01-02 15:04 UTC"))
}

// cardHeader is the card's summary, the same before and after a decision.
func cardHeader(r hbrbot.Request) []slack.Block {
	jobs := len(r.BatchTargets())
	var lines []string
	if r.DryRun {
		lines = append(lines, dryRunLine)
	}
	lines = append(lines,
		"*HBR client upgrade* requested by "+mention(r.RequesterID),
		fmt.Sprintf("*Region:* %s   *Account:* %s", code(r.Spec.Region), account(r.Spec)),
		fmt.Sprintf("*Targets:* %s, %s (%s)", plural(len(r.Spec.InstanceIDs), "ECS instance"),
			plural(len(r.Spec.ClientIDs), "HBR client"), plural(jobs, "HBR job")),
	)
	if r.RequiredApprovals > 1 {
		lines = append(lines, approvalsLine(r))
	}
	blocks := []slack.Block{section(strings.Join(lines, "\n"))}
	// Keep room for the header, the context line and the actions.
	blocks = append(blocks, sections(preflightLines(r), blockLimit-4)...)
	return blocks
}

// tableRows is the most rows a final report lists in the message; a
// larger job's full table goes up as a CSV file, and the message keeps the
// summary and the failures.
const tableRows = 40

// NeedsTable reports whether b's final report comes with a CSV table.
func NeedsTable(b hbrbot.Batch) bool { return b.Targets.Len() > tableRows }

// ReportCSV is the full table of an ended batch: one row per ID.
func ReportCSV(b hbrbot.Batch) []byte {
	var buf bytes.Buffer
	w := csv.NewWriter(&buf)
	w.Write([]string{"id", "outcome", "code", "version_before", "version_after", "latest_version", "task_id", "job", "verified", "hbr_code"})
	for _, o := range b.Outcomes() {
		row := []string{o.ID, string(o.Kind), o.Code, o.Before, o.After, o.Latest, b.TaskID, fmt.Sprintf("%d/%d", b.Index+1, b.Of),
			verifiedCell(o), o.HBRCode}
		for i := range row {
			row[i] = csvCell(row[i])
		}
		w.Write(row)
	}
	w.Flush()
	return buf.Bytes()
}

// verifiedCell says how an outcome is known: from the client's state
// ("yes", "yes, answer lost" for a submission whose answer was lost), or
// only from HBR's word ("no").
func verifiedCell(o hbrbot.Outcome) string {
	switch {
	case o.Unverified, o.Kind == hbrbot.OutcomeUnknown:
		return "no"
	case o.AnswerLost:
		return "yes, answer lost"
	case o.Kind == hbrbot.OutcomeInvalid, o.Kind == hbrbot.OutcomeNotStarted, o.Kind == hbrbot.OutcomeDryRun:
		return ""
	}
	return "yes"
}

// groupLimit is how many clients a card group details, one a line, before
// it lists them compactly.
const groupLimit = 15

// preflightLines shows, per ID, what will change: the client's name, its
// version and the latest, grouped by what the upgrade will do. A large
// group lists its IDs compactly, so every ID stays on the card. Without a
// look-up it lists the IDs as typed.
func preflightLines(r hbrbot.Request) []string {
	if r.Preflight == nil && r.PreflightFailure == "" {
		return idList(r.Spec.All())
	}
	if r.PreflightFailure == hbrbot.FailurePending {
		return append([]string{":hourglass_flowing_sand: Looking the clients up in HBR… (this card is redrawn when the look-up lands); the IDs as typed:"},
			idList(r.Spec.All())...)
	}
	if r.PreflightFailure != "" {
		return append([]string{":warning: Could not look the clients up in HBR (the look-up failed" + lookupText(r.PreflightFailure, true) + "); the IDs as typed:"},
			idList(r.Spec.All())...)
	}
	type group struct {
		title   string
		ids     []string
		details []string
	}
	upgrade := &group{title: ":arrow_up: Will upgrade"}
	inactive := &group{title: ":warning: Not ACTIVATED: HBR may refuse or fail these"}
	missing := &group{title: ":question: Not found in HBR: no backup client known for these"}
	skipped := &group{title: ":white_check_mark: Already at the latest version, left out (`--force` to include)", ids: r.Skipped}
	for _, id := range r.Spec.All() {
		c, ok := hbrbot.Lookup(r.Preflight, id)
		switch {
		case !ok:
			missing.ids = append(missing.ids, id)
		case c.Status != "" && c.Status != "ACTIVATED":
			inactive.ids = append(inactive.ids, id)
			inactive.details = append(inactive.details, fmt.Sprintf("• %s %s· %s · %s", code(id), name(c), esc(c.Version), code(c.Status)))
		default:
			upgrade.ids = append(upgrade.ids, id)
			upgrade.details = append(upgrade.details, fmt.Sprintf("• %s %s· %s → %s", code(id), name(c), esc(c.Version), esc(c.MaxVersion)))
		}
	}
	var lines []string
	for _, g := range []*group{upgrade, inactive, missing, skipped} {
		if len(g.ids) == 0 {
			continue
		}
		lines = append(lines, fmt.Sprintf("*%s (%d)*", g.title, len(g.ids)))
		if len(g.details) > 0 && len(g.details) <= groupLimit {
			lines = append(lines, g.details...)
		} else {
			lines = append(lines, idList(g.ids)...)
		}
	}
	return lines
}

func name(c hbrbot.ClientInfo) string {
	if c.InstanceName == "" {
		return ""
	}
	return esc(c.InstanceName) + " "
}

// outcomeHeadline sums up a request's ended jobs for the card's top line.
func outcomeHeadline(tally map[hbrbot.OutcomeKind]int) string {
	good := tally[hbrbot.OutcomeUpgraded] + tally[hbrbot.OutcomeDryRun]
	total := 0
	for _, n := range tally {
		total += n
	}
	counts := summaryCounts(tally)
	switch {
	case good == total:
		return ":white_check_mark: *Done*: " + counts
	case good == 0:
		return ":x: *Failed*: " + counts
	}
	return ":warning: *Partly failed*: " + counts
}

// summaryCounts reads "97 upgraded · 2 failed · 1 refused".
func summaryCounts(tally map[hbrbot.OutcomeKind]int) string {
	counts := []string{fmt.Sprintf("%d upgraded", tally[hbrbot.OutcomeUpgraded])}
	for _, g := range outcomeGroups {
		if n := tally[g.kind]; n > 0 && g.kind != hbrbot.OutcomeUpgraded {
			counts = append(counts, fmt.Sprintf("%d %s", n, g.word))
		}
	}
	return strings.Join(counts, " · ")
}

// dryRunLine starts every card and report of a dry run.
const dryRunLine = ":test_tube: *DRY RUN*: nothing will be submitted to HBR."

func approvalsLine(r hbrbot.Request) string {
	who := "none yet"
	if len(r.Approvals) > 0 {
		var mentions []string
		for _, a := range r.Approvals {
			mentions = append(mentions, mention(a))
		}
		who = strings.Join(mentions, ", ")
	}
	line := fmt.Sprintf("*Approvals:* %d of %d (%s)", len(r.Approvals), r.RequiredApprovals, who)
	if left := r.RequiredApprovals - len(r.Approvals); r.State == hbrbot.RequestPending && left > 0 {
		line += fmt.Sprintf(": %s needed", plural(left, "more approval"))
	}
	return line
}

// cardFallback is the card's notification text.
func cardFallback(r hbrbot.Request) string {
	prefix := ""
	if r.DryRun {
		prefix = "DRY RUN: "
	}
	return prefix + fmt.Sprintf("HBR client upgrade of %s in %s requested by %s: %s", plural(r.Spec.Len(), "ID"),
		esc(r.Spec.Region), mention(r.RequesterID), cardStateText(r))
}

func cardStateText(r hbrbot.Request) string {
	switch r.State {
	case hbrbot.RequestApproved:
		return fmt.Sprintf(":white_check_mark: Approved by %s %s. Progress and results follow in this thread.", mention(r.DecidedBy), stamp(r.DecidedAt))
	case hbrbot.RequestCancelled:
		if r.DecidedBy == "" {
			return ":no_entry_sign: Closed: nothing was done."
		}
		return fmt.Sprintf(":no_entry_sign: Cancelled by %s %s. Nothing was done.", mention(r.DecidedBy), stamp(r.DecidedAt))
	case hbrbot.RequestExpired:
		return fmt.Sprintf(":hourglass: Expired unapproved %s. Nothing was done.", stamp(r.ExpiresAt))
	}
	return "Awaiting approval until " + stamp(r.ExpiresAt)
}

// CardBlocks is the approval card: with buttons while pending, with the
// decision instead once decided, and led by the outcome once every job of
// the request has ended.
func CardBlocks(r hbrbot.Request, batches []hbrbot.Batch) []slack.Block {
	blocks := cardHeader(r)
	if tally, done := hbrbot.Overall(batches); done {
		blocks = append([]slack.Block{section(outcomeHeadline(tally))}, blocks...)
	}
	blocks = append(blocks, contextLine(fmt.Sprintf("%s · request %s", cardStateText(r), code(r.ID))))
	if r.State == hbrbot.RequestPending {
		approve := slack.NewButtonBlockElement(ActionApprove, r.ID, slack.NewTextBlockObject(slack.PlainTextType, "Approve", false, false)).WithStyle(slack.StylePrimary)
		cancel := slack.NewButtonBlockElement(ActionCancel, r.ID, slack.NewTextBlockObject(slack.PlainTextType, "Cancel", false, false)).WithStyle(slack.StyleDanger)
		blocks = append(blocks, slack.NewActionBlock("hbr_upgrade_decision", approve, cancel))
	}
	return blocks
}

func jobName(b hbrbot.BatchStatus) string {
	if b.Of == 1 {
		return "Job"
	}
	return fmt.Sprintf("Job %d/%d", b.Index+1, b.Of)
}

// StartedReport is the reply naming a batch's TaskId and invalid IDs.
func StartedReport(b hbrbot.Batch) (string, []slack.Block) {
	text := fmt.Sprintf(":arrows_counterclockwise: %s started: HBR task %s for %s.", jobName(b.BatchStatus), code(b.TaskID), plural(b.Targets.Len(), "ID"))
	lines := []string{text}
	if len(b.Invalid) > 0 {
		lines = append(lines, fmt.Sprintf(":warning: HBR refused %s:", plural(len(b.Invalid), "ID")))
		for _, iv := range b.Invalid {
			lines = append(lines, fmt.Sprintf("• %s %s", code(iv.ID), codeText(iv.ErrorCode)))
		}
	}
	return text, sections(lines, blockLimit)
}

func codeText(c string) string {
	if c == "" {
		return "(no code)"
	}
	return code(c)
}

// outcomeGroups orders a report's groups, failures first; word is the
// group's name in the summary line.
var outcomeGroups = []struct {
	kind  hbrbot.OutcomeKind
	label string
	word  string
}{
	{hbrbot.OutcomeFailed, ":x: Failed", "failed"},
	{hbrbot.OutcomeStillOld, ":warning: Reported done, but still on an old version", "still old"},
	{hbrbot.OutcomeNotUpgraded, ":x: Not upgraded (verified on an old version)", "not upgraded"},
	{hbrbot.OutcomeInvalid, ":warning: Refused by HBR", "refused"},
	{hbrbot.OutcomeNotStarted, ":x: Not started", "not started"},
	{hbrbot.OutcomeUnknown, ":grey_question: Outcome unknown", "unknown"},
	{hbrbot.OutcomeTimedOut, ":hourglass: Timed out", "timed out"},
	{hbrbot.OutcomeExpired, ":hourglass: Expired", "expired"},
	{hbrbot.OutcomeCancelled, ":no_entry_sign: Cancelled", "cancelled"},
	{hbrbot.OutcomeDryRun, ":test_tube: Would be upgraded (dry run)", "would be upgraded"},
	{hbrbot.OutcomeUpgraded, ":white_check_mark: Upgraded", "upgraded"},
}

// FinalReport is the one reply listing every ID of an ended batch with its
// outcome: a summary line, then the groups, failures first.
func FinalReport(b hbrbot.Batch) (string, []slack.Block) {
	outcomes := b.Outcomes()
	tally := hbrbot.Tally(outcomes)
	task := ""
	if b.TaskID != "" {
		task = fmt.Sprintf(" (task %s)", code(b.TaskID))
	}
	summary := fmt.Sprintf("*%s%s %s:* %s", jobName(b.BatchStatus), task, finalText(b.BatchStatus), summaryCounts(tally))
	var lines []string
	if b.DryRun {
		summary = "DRY RUN " + summary
		lines = append(lines, dryRunLine)
	}
	if b.RequesterID != "" {
		summary += " · " + mention(b.RequesterID)
	}
	lines = append(lines, summary)
	if b.Error != nil {
		switch {
		case b.Error.Unknown && b.Verified():
			lines = append(lines, answerLostLine(b))
		case b.Error.Unknown:
			lines = append(lines, "HBR may or may not have started this job, so it was not resubmitted. Check the clients in the HBR console before trying again. ("+unknownReason(b.Error)+")")
		default:
			lines = append(lines, submissionErrorText(b.Error))
		}
	}
	if b.VerifyFailure != "" {
		lines = append(lines, unverifiedLine(b))
	}
	codes := map[string]bool{}
	hinted := false
	for _, g := range outcomeGroups {
		if !hinted && (g.kind == hbrbot.OutcomeDryRun || g.kind == hbrbot.OutcomeUpgraded) {
			// What went wrong, and what to do about it, before what went well.
			if h := hints(codes); len(h) > 0 {
				lines = append(lines, "*What to do*")
				lines = append(lines, h...)
			}
			hinted = true
		}
		var ids, coded []string
		for _, o := range outcomes {
			switch {
			case o.Kind != g.kind:
			case o.Unverified:
				coded = append(coded, unverifiedText(o))
				codes[o.Code] = o.Code != ""
			case o.HBRCode != "":
				coded = append(coded, fmt.Sprintf("• %s %s, though HBR's Result said %s", code(o.ID), esc(o.After), code(o.HBRCode)))
			case o.Kind == hbrbot.OutcomeStillOld:
				coded = append(coded, fmt.Sprintf("• %s %s → %s, latest %s", code(o.ID), esc(o.Before), esc(o.After), esc(o.Latest)))
				codes[o.Code] = true
			case o.Code != "" && g.kind != hbrbot.OutcomeNotStarted:
				coded = append(coded, fmt.Sprintf("• %s %s%s", code(o.ID), codeText(o.Code), versionNote(o)))
				codes[o.Code] = true
			default:
				ids = append(ids, o.ID)
			}
			if o.Kind == g.kind && g.kind == hbrbot.OutcomeTimedOut {
				codes["timeout"] = true
			}
		}
		if len(ids)+len(coded) == 0 {
			continue
		}
		lines = append(lines, fmt.Sprintf("*%s (%d)*%s", g.label, len(ids)+len(coded), transition(outcomes, g.kind)))
		lines = append(lines, coded...)
		if NeedsTable(b) && (g.kind == hbrbot.OutcomeUpgraded || g.kind == hbrbot.OutcomeDryRun) {
			lines = append(lines, "_Every ID, with its versions, is in the CSV file below._")
			continue
		}
		lines = append(lines, idList(ids)...)
	}
	blocks := sections(lines, blockLimit-1)
	if retry := hbrbot.RetryTargetsOf(outcomes); retry.Len() > 0 && !b.DryRun {
		btn := slack.NewButtonBlockElement(ActionRetry, b.Key(),
			slack.NewTextBlockObject(slack.PlainTextType, fmt.Sprintf("Retry the %d not upgraded", retry.Len()), false, false))
		blocks = append(blocks, slack.NewActionBlock("hbr_upgrade_retry", btn))
	}
	return strings.ReplaceAll(summary, "*", ""), blocks
}

// unverifiedText is the line of an ID whose outcome is HBR's word: its
// code (if any), whose word it is, and its version before the job (the
// one known), so it does not read as the client's state.
func unverifiedText(o hbrbot.Outcome) string {
	line := "• " + code(o.ID)
	if o.Code != "" {
		line += " " + code(o.Code)
	}
	line += " · _unverified_: "
	if o.InResult {
		line += "as HBR's Result says"
	} else {
		line += "not in HBR's Result, as the job's status says"
	}
	if o.Before != "" {
		line += "; " + esc(o.Before) + " before the job"
	}
	return line
}

// versionNote is a failed client's version, when known.
func versionNote(o hbrbot.Outcome) string {
	if v := cmp.Or(o.After, o.Before); v != "" {
		return " (" + esc(v) + ")"
	}
	return ""
}

// transition sums up the versions of a group's clients: ": 2.4.0 → 2.5.1
// (latest)" when they all moved alike, or how many run the latest.
func transition(outcomes []hbrbot.Outcome, kind hbrbot.OutcomeKind) string {
	if kind != hbrbot.OutcomeUpgraded {
		return ""
	}
	seen := map[string]int{}
	latest, known := 0, 0
	for _, o := range outcomes {
		if o.Kind != kind || o.After == "" {
			continue
		}
		known++
		seen[esc(cmp.Or(o.Before, "?"))+" → "+esc(o.After)]++
		if hbrbot.CompareVersions(o.After, o.Latest) >= 0 {
			latest++
		}
	}
	switch {
	case known == 0:
		return ""
	case len(seen) == 1 && latest == known:
		for t := range seen {
			return ": " + t + " (latest)"
		}
	}
	return fmt.Sprintf(": %d of %d verified on the latest version", latest, known)
}

// codeHints says what an operator can do about each documented failure.
var codeHints = []struct{ code, hint string }{
	{"InstanceNotRunning", "start the instance, then retry it."},
	{"InstanceNotExists", "check the instance ID and the region (`--region`); it may have been released."},
	{"CloudAssistNotRunningOnInstance", "start or reinstall the Cloud Assistant agent on the instance (ECS console → Cloud Assistant), then retry."},
	{"UPGRADE_FAILED", "the upgrade ran and failed: check the HBR client's logs on the instance, then retry."},
	{"UNKNOWN", "the client is disconnected from HBR: check the instance's network and the HBR client service."},
	{"JobFailed", "HBR reported the job failed without details: check the job in the HBR console, then retry."},
	{"StillOld", "HBR reported success but the client did not move to the latest version: check the client on the instance and retry it."},
	{"timeout", "HBR did not finish within HBRBOT_TASK_TIMEOUT: the client may still be upgrading; check it in the HBR console before retrying."},
}

func hints(codes map[string]bool) []string {
	var out []string
	for _, h := range codeHints {
		if codes[h.code] {
			name := "`" + h.code + "`"
			if h.code == "timeout" {
				name = "Timed out"
			}
			out = append(out, fmt.Sprintf("• %s: %s", name, h.hint))
		}
	}
	return out
}

func finalText(b hbrbot.BatchStatus) string {
	switch b.Final {
	case hbrbot.JobCompleted:
		return "completed"
	case hbrbot.JobFailed:
		return "failed"
	case hbrbot.JobExpired:
		return "expired"
	case hbrbot.JobCancelled:
		return "was cancelled"
	case hbrbot.JobDryRun:
		return "dry run ended"
	case hbrbot.JobTimedOut:
		return fmt.Sprintf("timed out (no end %s after it started)", b.Deadline.Sub(b.Started).Round(time.Second))
	}
	if b.Error != nil && b.Error.Unknown && b.Verified() {
		return "answer lost, verified"
	}
	if b.Error != nil && b.Error.Unknown {
		return "outcome unknown"
	}
	return "not started"
}

// answerLostLine says that HBR's answer to a submission was lost, and
// how the outcomes were found instead.
func answerLostLine(b hbrbot.Batch) string {
	return "HBR's answer to UpgradeBackupClients was lost (" + unknownReason(b.Error) +
		"), so the job was never resubmitted. Every ID below was verified with DescribeBackupClients once the job must have ended."
}

// unverifiedLine says that the look-up after the job failed, and that the
// IDs marked unverified are HBR's word.
func unverifiedLine(b hbrbot.Batch) string {
	return ":grey_question: *Not verified*: the clients could not be looked up after the job" + lookupText(b.VerifyFailure, false) +
		", even after retries. IDs marked _unverified_ are as HBR's Result and the job's status say: check them in the HBR console."
}

// submissionErrorText says why a batch never became a job.
func submissionErrorText(e *hbrbot.SubmissionError) string {
	if e.Code == hbrbot.CodeNotDurable {
		return "Not submitted: Redis could not make the submission's record durable first (HBRBOT_REDIS_DURABILITY), so a crash could have led to a second submission. Nothing was sent to HBR; retry once Redis has its replica or append-only file back."
	}
	return fmt.Sprintf("UpgradeBackupClients refused the batch: %s %s", code(e.Code), esc(hbrbot.Excerpt(e.Message, 200)))
}

// unknownReason says why a submission's fate is unknown.
func unknownReason(e *hbrbot.SubmissionError) string {
	if e.Interrupted {
		return "hbrbot stopped while UpgradeBackupClients was in flight"
	}
	return esc(hbrbot.Excerpt(e.Message, 200))
}

// ProgressReport is a request's live progress: one line per job with a
// bar, its percent and how long it has run.
func ProgressReport(r hbrbot.Request, batches []hbrbot.BatchStatus, now time.Time) (string, []slack.Block) {
	var lines []string
	if r.DryRun {
		lines = append(lines, dryRunLine)
	}
	running, ended := 0, 0
	for _, b := range batches {
		switch b.State {
		case hbrbot.BatchFinished:
			ended++
		case hbrbot.BatchRunning:
			running++
		}
	}
	head := fmt.Sprintf("*Progress*: %d of %d jobs ended", ended, len(r.BatchTargets()))
	if running > 0 {
		head += fmt.Sprintf(", %d running", running)
	}
	lines = append(lines, head)
	for _, b := range batches {
		var line string
		switch b.State {
		case hbrbot.BatchPending, hbrbot.BatchSubmitting:
			line = "waiting to start"
		case hbrbot.BatchRunning:
			line = fmt.Sprintf("%s %3d%% · %s", bar(b.Progress), max(b.Progress, 0), now.Sub(b.Started).Truncate(time.Second))
		default:
			line = fmt.Sprintf("%s ended: %s", bar(100), finalText(b))
		}
		lines = append(lines, fmt.Sprintf("%s %s %s", jobName(b), code(b.TaskID), line))
	}
	return strings.ReplaceAll(head, "*", ""), sections(lines, blockLimit)
}

// bar draws percent as ten cells.
func bar(percent int) string {
	n := min(max(percent, 0), 100) / 10
	return strings.Repeat("▓", n) + strings.Repeat("░", 10-n)
}
