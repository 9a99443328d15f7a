package bot

import (
	"cmp"
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/hbrbot/hbrbot"
	"github.com/hbrbot/hbrbot/policy"
	"github.com/hbrbot/hbrbot/upgrade"
)

// Accepted acknowledges a valid upgrade command.
const Accepted = ":hourglass_flowing_sand: Looking the clients up; the approval card follows in this channel. (No card within a minute? Run the command again: nothing was done.)"

// Unavailable is what a caller hears when Redis cannot be reached.
const Unavailable = ":warning: hbrbot is temporarily unavailable (its state store is unreachable). Nothing was done; please try again in a minute."

// linker links to a message in Slack.
type linker interface {
	Permalink(ctx context.Context, channel, ts string) (string, error)
}

// NoticeText words what the workflow tells the person who acted; "" when
// there is nothing to say.
func NoticeText(ctx context.Context, n upgrade.Notice, links linker) string {
	r := n.Request
	switch n.Kind {
	case upgrade.NoticeUnavailable:
		return Unavailable
	case upgrade.NoticeRefused:
		return refusalText(n.Refusal, n.Act)
	case upgrade.NoticeNothingToUpgrade:
		return fmt.Sprintf("Nothing to upgrade: every client named (%d) already runs the latest version. Nothing was done; add `--force` to upgrade anyway.", n.Count)
	case upgrade.NoticeListFailed:
		return fmt.Sprintf("Could not list the backup clients of %s (%s). Nothing was done.", esc(n.Region), esc(cmp.Or(n.Reason, "the look-up failed")))
	case upgrade.NoticeFleetUpToDate:
		return fmt.Sprintf("Every ECS backup client in %s (%d) runs the latest version: nothing to upgrade.", esc(n.Region), n.Count)
	case upgrade.NoticeCardFailed:
		return fmt.Sprintf(":x: Could not post the approval card in this channel (%s). Nothing was done. Is the bot a member of the channel?", esc(n.Reason))
	case upgrade.NoticeUnknownRequest:
		return "This request is unknown to hbrbot (too old, or its data was lost). Nothing was done; run /hbr-upgrade again if needed."
	case upgrade.NoticeUnknownJob:
		return "That job is unknown to hbrbot (too old?). Nothing was done."
	case upgrade.NoticeAlreadyDecided:
		return alreadyDecided(r)
	case upgrade.NoticeApprovalRecorded:
		return fmt.Sprintf("Your approval is recorded (%d of %d). Waiting for %s.", len(r.Approvals), r.RequiredApprovals,
			plural(r.RequiredApprovals-len(r.Approvals), "more approval"))
	case upgrade.NoticeAlreadyApproved:
		return fmt.Sprintf("You have already approved this request; it still needs %s from other approvers.",
			plural(r.RequiredApprovals-len(r.Approvals), "approval"))
	case upgrade.NoticeNothingToRetry:
		return "Every ID of that job ended well: nothing to retry."
	case upgrade.NoticeStatus:
		return statusText(ctx, n.Status, links)
	}
	return ""
}

// CommandRefusalText words why a command was refused as it was parsed:
// the rules' refusal, or what is wrong with the input.
func CommandRefusalText(err error) string {
	if r, ok := err.(*policy.Refusal); ok {
		if text, ok := trustText(r); ok {
			return text
		}
		if r.Rule == policy.RuleChannels {
			return "/hbr-upgrade is not enabled in this channel (HBRBOT_ALLOWED_CHANNELS / the policy file). Use an allowed channel."
		}
		return policyText(r)
	}
	return InputErrorText(err)
}

// refusalText words a refusal of act.
func refusalText(r *policy.Refusal, act upgrade.Act) string {
	if text, ok := trustText(r); ok {
		return text
	}
	switch {
	case r.Rule == policy.RuleChannels && act == upgrade.ActCommand:
		return "/hbr-upgrade is not enabled in this channel. Nothing was done."
	case r.Rule == policy.RuleChannels && act == upgrade.ActRetry:
		return "/hbr-upgrade is no longer enabled in this channel. Nothing was done."
	case r.Rule == policy.RuleChannels:
		return "/hbr-upgrade is no longer enabled in this channel, so its requests cannot be decided here. Nothing was done."
	case r.Rule == policy.RuleRequesters && r.LookupFailed:
		return "Could not check whether you may request upgrades (Slack user-group lookup failed). Nothing was done; try again shortly."
	case r.Rule == policy.RuleRequesters:
		return "You are not allowed to request HBR upgrades in this channel (requesters). Nothing was done."
	case r.Rule == policy.RuleApprovers && r.LookupFailed:
		return "Could not check whether you may approve (Slack user-group lookup failed). Nothing was done; try again shortly."
	case r.Rule == policy.RuleApprovers:
		return "You are not an allowed approver for HBR upgrades in this channel. Nothing was done."
	case r.Rule == policy.RuleSelfApproval:
		return "You cannot approve your own request: another approver must (two-person rule). Nothing was done."
	case r.Rule == policy.RuleCancel:
		return "Only the requester or an approver can cancel this request. Nothing was done."
	case r.Rule == policy.RuleCard && act == upgrade.ActRetry:
		return "That Retry button is not on the job's report in its thread. Nothing was done."
	case r.Rule == policy.RuleCard:
		return "That button is not on this request's approval card. Nothing was done."
	case r.Rule == policy.RuleRetry:
		return "That job has not ended and been reported yet: retry it once its report is in the thread. Nothing was done."
	}
	return policyText(r) + " Nothing was done."
}

// trustText words the refusals of who may act at all, whatever they did.
func trustText(r *policy.Refusal) (string, bool) {
	switch {
	case r.Rule == policy.RuleOrganisation && r.LookupFailed:
		return "Could not check with Slack that you belong to this organisation. Nothing was done; try again shortly.", true
	case r.Rule == policy.RuleOrganisation:
		return fmt.Sprintf("hbrbot acts only for members of its own organisation; your workspace %s is not one it serves (HBRBOT_ALLOWED_TEAMS). Nothing was done.", code(r.Team)), true
	case r.Rule == policy.RuleSharedChannel && r.LookupFailed:
		return "Could not check with Slack whether this channel is shared with another organisation. Nothing was done; try again shortly.", true
	case r.Rule == policy.RuleSharedChannel:
		return "This channel is shared with another organisation: /hbr-upgrade works here only if the channel is listed by ID (HBRBOT_ALLOWED_CHANNELS or the policy file). Nothing was done.", true
	case r.Rule == policy.RuleGuests:
		return "Guests may request or approve HBR upgrades only when listed by ID (HBRBOT_REQUESTERS / HBRBOT_APPROVERS or the policy file). Nothing was done.", true
	case r.Rule == policy.RuleUserCommands:
		return fmt.Sprintf("You have given %d upgrade commands in the last minute, the most allowed (HBRBOT_USER_COMMANDS). Try again in %s. Nothing was done.", r.Limit, r.RetryAfter.Round(time.Second)), true
	case r.Rule == policy.RuleChannelCommands:
		return fmt.Sprintf("This channel has taken %d upgrade commands in the last minute, the most allowed (HBRBOT_CHANNEL_COMMANDS). Try again in %s. Nothing was done.", r.Limit, r.RetryAfter.Round(time.Second)), true
	case r.Rule == policy.RulePending:
		return fmt.Sprintf("You already have %d requests awaiting approval, the most allowed (HBRBOT_USER_PENDING): cancel one, or wait for a decision. Nothing was done.", r.Limit), true
	}
	return "", false
}

// policyText words a refusal of what a command asks for.
func policyText(r *policy.Refusal) string {
	switch r.Rule {
	case policy.RuleRegions:
		return fmt.Sprintf("Region %s is not allowed in this channel (allowed: %s).", code(r.Region), esc(strings.Join(r.Allowed, ", ")))
	case policy.RuleCrossAccount:
		return "Cross-account upgrades are not allowed in this channel."
	case policy.RuleSourceAccounts:
		return fmt.Sprintf("Source account `%d` is not allowed in this channel.", r.Account)
	}
	return "The channel's rules do not allow this (" + string(r.Rule) + ")."
}

func alreadyDecided(r hbrbot.Request) string {
	switch r.State {
	case hbrbot.RequestApproved:
		return fmt.Sprintf("This request was already approved by %s; nothing more to do.", mention(r.DecidedBy))
	case hbrbot.RequestCancelled:
		if r.DecidedBy == "" {
			return "This request was closed because its card could not be posted; nothing was done."
		}
		return fmt.Sprintf("This request was cancelled by %s; nothing was done.", mention(r.DecidedBy))
	case hbrbot.RequestExpired:
		return fmt.Sprintf("This request expired at %s without approval; nothing was done. Run /hbr-upgrade again.", r.ExpiresAt.UTC().Format("2006-01-02 15:04 MST"))
	}
	return "This request is still pending."
}

// statusText lists what is in flight in a channel, each request linked to
// its card when Slack gives a permalink.
func statusText(ctx context.Context, lines []upgrade.StatusLine, links linker) string {
	if len(lines) == 0 {
		return "Nothing in flight in this channel."
	}
	out := make([]string, 0, len(lines))
	for _, l := range lines {
		r := l.Request
		link := requestLink(ctx, r, links)
		age := l.Age.Truncate(time.Second)
		if l.Batch == nil {
			out = append(out, fmt.Sprintf("• %s awaiting approval (%d of %d): %d IDs in %s, requested by %s %s ago%s",
				link, len(r.Approvals), r.RequiredApprovals, l.IDs, esc(r.Spec.Region), mention(r.RequesterID), age, dry(r.DryRun)))
			continue
		}
		b := l.Batch
		out = append(out, fmt.Sprintf("• %s job %d/%d (%d IDs): %s, approved by %s %s ago%s",
			link, b.Index+1, b.Of, l.IDs, batchState(*b, l.Running), mention(r.DecidedBy), age, dry(r.DryRun)))
	}
	return "*In flight in this channel:*\n" + strings.Join(out, "\n")
}

func batchState(b hbrbot.BatchStatus, running time.Duration) string {
	switch b.State {
	case hbrbot.BatchPending:
		return "waiting to be submitted"
	case hbrbot.BatchSubmitting:
		return "being submitted"
	case hbrbot.BatchRunning:
		return fmt.Sprintf("running as %s, %d%% after %s", code(b.TaskID), max(b.Progress, 0), running.Truncate(time.Second))
	}
	return "ended, report being posted"
}

func dry(on bool) string {
	if on {
		return " (dry run)"
	}
	return ""
}

// requestLink is the request's ID, linked to its card when Slack gives a
// permalink.
func requestLink(ctx context.Context, r hbrbot.Request, links linker) string {
	if r.CardTS == "" {
		return code(r.ID)
	}
	url, err := links.Permalink(ctx, r.ChannelID, r.CardTS)
	if err != nil || strings.ContainsAny(url, "<>|") {
		return code(r.ID)
	}
	return "<" + url + "|" + esc(r.ID) + ">"
}

// lookupText words why a look-up failed, after "the look-up failed".
func lookupText(failure string, withTimeout bool) string {
	switch failure {
	case hbrbot.FailureError, "":
		return ""
	case hbrbot.FailureTimeout:
		if withTimeout {
			return " (timed out)"
		}
		return ""
	}
	return " (" + esc(failure) + ")"
}
