package upgrade

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/hbrbot/hbrbot"
	"github.com/hbrbot/hbrbot/policy"
)

func TestParse(t *testing.T) {
	e := newEnv(t, withRules(func(r *policy.Rules) { r.Regions = []string{region, "cn-shanghai"} }))
	for _, tc := range []struct {
		name, channel, text string
		kind                hbrbot.CommandKind
		region              string
		rule                policy.Rule // a refusal's
		inputError          bool
	}{
		{name: "default region filled", text: "i-bp1abcdefgh12345678", kind: hbrbot.CommandUpgrade, region: region},
		{name: "region given kept", text: "i-bp1abcdefgh12345678 --region cn-shanghai", kind: hbrbot.CommandUpgrade, region: "cn-shanghai"},
		{name: "help", text: "help", kind: hbrbot.CommandHelp},
		{name: "status", text: "status", kind: hbrbot.CommandStatus},
		{name: "channel refused", channel: closedCh, text: "i-bp1abcdefgh12345678", rule: policy.RuleChannels},
		{name: "region refused", text: "i-bp1abcdefgh12345678 --region cn-beijing", rule: policy.RuleRegions},
		{name: "cross account refused", text: "i-bp1abcdefgh12345678 --cross-account-user-id 1234567890123456 --cross-account-role hbrcrossrole",
			rule: policy.RuleCrossAccount},
		{name: "not an ID", text: "x-nonsense", inputError: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inv := e.invocation(requester, tc.text)
			if tc.channel != "" {
				inv.ChannelID = tc.channel
			}
			cmd, err := e.svc.Parse(inv)
			var ref *policy.Refusal
			var inErr *hbrbot.InputError
			switch {
			case tc.rule != "":
				if !errors.As(err, &ref) || ref.Rule != tc.rule {
					t.Fatalf("error %v, want a refusal by %s", err, tc.rule)
				}
			case tc.inputError:
				if !errors.As(err, &inErr) {
					t.Fatalf("error %v, want an input error", err)
				}
			case err != nil:
				t.Fatal(err)
			case cmd.Kind != tc.kind || cmd.Upgrade.Region != tc.region:
				t.Fatalf("command %+v, want kind %d in region %q", cmd, tc.kind, tc.region)
			}
		})
	}
	// Refused records the refusal with its rule.
	inv := e.invocation(requester, "i-bp1abcdefgh12345678 --region cn-beijing")
	_, err := e.svc.Parse(inv)
	e.svc.Refused(e.ctx, inv, err)
	recs := e.audit(hbrbot.AuditCommandRefused)
	if len(recs) != 1 || recs[0].Fields["rule"] != string(policy.RuleRegions) || recs[0].Actor != requester {
		t.Errorf("audit %+v, want one refusal by the regions rule", recs)
	}
}

func TestRequest(t *testing.T) {
	ids := []string{"i-aaa1", "i-aaa2", "c-bbb1"}
	refusedBy := func(rule policy.Rule, lookupFailed bool) func(t *testing.T, e *env, n Notice) {
		return func(t *testing.T, e *env, n Notice) {
			wantRefusal(t, n, rule, lookupFailed)
			if len(e.chat.calls("PostCard")) != 0 || len(e.hbr.calls("")) != 0 {
				t.Error("a refused command looked clients up or posted a card")
			}
			if recs := e.audit(hbrbot.AuditCommandRefused); len(recs) != 1 || recs[0].Fields["rule"] != string(rule) {
				t.Errorf("audit %+v, want a refusal by %s", recs, rule)
			}
		}
	}
	noCard := func(t *testing.T, e *env) {
		t.Helper()
		if n := len(e.chat.calls("PostCard")); n != 0 {
			t.Errorf("%d cards posted, want none", n)
		}
	}
	fleet := []hbrbot.ClientInfo{
		{ClientID: "c-mid", Version: "1.5.0", MaxVersion: "2.0.0"},
		{ClientID: "c-oldest", Version: "1.0.0", MaxVersion: "2.0.0"},
		{ClientID: "c-latest", Version: "2.0.0", MaxVersion: "2.0.0"},
		{ClientID: "c-old", Version: "1.2.0", MaxVersion: "2.0.0"},
		{InstanceID: "i-noclient", Version: "0.1.0", MaxVersion: "2.0.0"},
	}
	for _, tc := range []struct {
		name   string
		tweaks []tweak
		setup  func(e *env)
		spec   hbrbot.UpgradeSpec
		want   NoticeKind
		check  func(t *testing.T, e *env, n Notice)
	}{
		{
			name: "accepted", want: NoticeNone,
			check: func(t *testing.T, e *env, _ Notice) {
				r := e.lastCardRequest()
				now := e.clock.Now()
				if r.State != hbrbot.RequestPending || r.RequesterID != requester || r.ChannelID != channel || r.TeamID != "T1" ||
					r.RequiredApprovals != 1 || r.DryRun || !r.CreatedAt.Equal(now) || !r.ExpiresAt.Equal(now.Add(time.Hour)) ||
					r.CardTS != "1700000000.000001" || r.Spec.Region != region {
					t.Errorf("request %+v", r)
				}
				if !slices.Equal(r.Spec.All(), ids) || len(r.Preflight) != 3 || r.PreflightFailure != "" || r.Skipped != nil {
					t.Errorf("request names %v, preflight %v (%q), skipped %v", r.Spec.All(), r.Preflight, r.PreflightFailure, r.Skipped)
				}
				if calls := e.hbr.calls("DescribeBackupClients"); len(calls) != 1 || !slices.Equal(calls[0].Targets.All(), ids) {
					t.Errorf("look-ups %+v, want one of the IDs", calls)
				}
				e.wantDue(hbrbot.Work{Kind: hbrbot.WorkExpiry, ID: r.ID}, r.ExpiresAt)
				if len(e.audit(hbrbot.AuditCommandAccepted)) != 1 || len(e.audit(hbrbot.AuditRequestPosted)) != 1 {
					t.Error("accepted and posted not both audited")
				}
			},
		},
		{
			name: "the channel's rules set approvals and dry run", want: NoticeNone,
			tweaks: []tweak{withRules(func(r *policy.Rules) { r.RequiredApprovals = 2 }), func(s *Settings, _ *Options) { s.DryRun = true }},
			check: func(t *testing.T, e *env, _ Notice) {
				if r := e.lastCardRequest(); r.RequiredApprovals != 2 || !r.DryRun {
					t.Errorf("request needs %d approvals, dry run %v; want 2, true", r.RequiredApprovals, r.DryRun)
				}
			},
		},
		{
			name: "cross-account, where the rules allow it", want: NoticeNone,
			tweaks: []tweak{withRules(func(r *policy.Rules) { r.CrossAccount, r.SourceAccounts = true, []int64{1234567890123456} })},
			spec:   hbrbot.UpgradeSpec{CrossAccount: &hbrbot.CrossAccount{UserID: 1234567890123456, RoleName: "hbrcrossrole"}},
			check: func(t *testing.T, e *env, _ Notice) {
				if calls := e.hbr.calls("DescribeBackupClients"); len(calls) != 1 || calls[0].Cross == nil || calls[0].Cross.RoleName != "hbrcrossrole" {
					t.Errorf("look-ups %+v, want one in the source account", calls)
				}
				if recs := e.audit(hbrbot.AuditCommandAccepted); len(recs) != 1 || recs[0].Fields["cross_account"] != "1234567890123456/hbrcrossrole" {
					t.Errorf("audit %+v", recs)
				}
			},
		},
		{
			name: "requester refused", want: NoticeRefused,
			tweaks: []tweak{withRules(func(r *policy.Rules) { r.Requesters = []string{approverA} })},
			check:  refusedBy(policy.RuleRequesters, false),
		},
		{
			name: "requester group look-up failed", want: NoticeRefused,
			tweaks: []tweak{withRules(func(r *policy.Rules) { r.Requesters = []string{"SREQ"} })},
			setup:  func(e *env) { e.chat.groupErr = errors.New("usergroups.users.list: ratelimited") },
			check:  refusedBy(policy.RuleRequesters, true),
		},
		{
			name: "requester in a group", want: NoticeNone,
			tweaks: []tweak{withRules(func(r *policy.Rules) { r.Requesters = []string{"SREQ"} })},
			setup:  func(e *env) { e.chat.members["SREQ"] = []string{requester} },
		},
		{
			name: "the channel closed since Parse", want: NoticeRefused,
			setup: func(e *env) { e.svc.SetRules(policy.Set{}) },
			check: refusedBy(policy.RuleChannels, false),
		},
		{
			name: "preflight failed: stored with the failure, card posted", want: NoticeNone,
			setup: func(e *env) {
				e.hbr.setClients(func(hbrbot.Targets) ([]hbrbot.ClientInfo, error) {
					return nil, &hbrbot.HBRError{Action: "DescribeBackupClients", Code: "Throttling.User"}
				})
			},
			check: func(t *testing.T, e *env, _ Notice) {
				r := e.lastCardRequest()
				if r.PreflightFailure != "Throttling.User" || r.Preflight != nil || !slices.Equal(r.Spec.All(), ids) {
					t.Errorf("request: failure %q, preflight %v, IDs %v", r.PreflightFailure, r.Preflight, r.Spec.All())
				}
			},
		},
		{
			name: "nothing to upgrade", want: NoticeNothingToUpgrade,
			setup: func(e *env) {
				e.hbr.setClients(func(t hbrbot.Targets) ([]hbrbot.ClientInfo, error) {
					return clientsAt("2.0.0", "2.0.0", t.All()...), nil
				})
			},
			check: func(t *testing.T, e *env, n Notice) {
				if n.Count != 3 {
					t.Errorf("count %d, want 3", n.Count)
				}
				noCard(t, e)
				if reqs, _ := e.store.ChannelRequests(e.ctx, channel, 10); len(reqs) != 0 {
					t.Errorf("%d requests stored, want none", len(reqs))
				}
			},
		},
		{
			name: "clients at the latest left out", want: NoticeNone,
			setup: func(e *env) {
				e.hbr.setClients(func(hbrbot.Targets) ([]hbrbot.ClientInfo, error) {
					return append(clientsAt("2.0.0", "2.0.0", "i-aaa2"), clientsAt("1.0.0", "2.0.0", "i-aaa1", "c-bbb1")...), nil
				})
			},
			check: func(t *testing.T, e *env, _ Notice) {
				if r := e.lastCardRequest(); !slices.Equal(r.Spec.All(), []string{"i-aaa1", "c-bbb1"}) || !slices.Equal(r.Skipped, []string{"i-aaa2"}) {
					t.Errorf("request names %v, skipped %v", r.Spec.All(), r.Skipped)
				}
			},
		},
		{
			name: "force keeps clients at the latest", want: NoticeNone, spec: hbrbot.UpgradeSpec{Force: true},
			setup: func(e *env) {
				e.hbr.setClients(func(t hbrbot.Targets) ([]hbrbot.ClientInfo, error) {
					return clientsAt("2.0.0", "2.0.0", t.All()...), nil
				})
			},
			check: func(t *testing.T, e *env, _ Notice) {
				if r := e.lastCardRequest(); !slices.Equal(r.Spec.All(), ids) || r.Skipped != nil {
					t.Errorf("request names %v, skipped %v", r.Spec.All(), r.Skipped)
				}
			},
		},
		{
			name: "outdated: oldest first, at most the limit", want: NoticeNone, spec: hbrbot.UpgradeSpec{Outdated: true, Limit: 2},
			setup: func(e *env) { e.hbr.fleet = fleet },
			check: func(t *testing.T, e *env, _ Notice) {
				r := e.lastCardRequest()
				if !slices.Equal(r.Spec.ClientIDs, []string{"c-oldest", "c-old"}) || r.Spec.InstanceIDs != nil {
					t.Errorf("request names %v", r.Spec.All())
				}
				if len(r.Preflight) != 2 || r.Preflight[0].ClientID != "c-oldest" || r.Preflight[1].ClientID != "c-old" {
					t.Errorf("preflight %+v", r.Preflight)
				}
				if calls := e.hbr.calls("DescribeBackupClients"); len(calls) != 1 || calls[0].Targets.Len() != 0 || calls[0].Region != region {
					t.Errorf("look-ups %+v, want one listing of the region", calls)
				}
			},
		},
		{
			name: "outdated without a limit: all of them", want: NoticeNone, spec: hbrbot.UpgradeSpec{Outdated: true},
			setup: func(e *env) { e.hbr.fleet = fleet },
			check: func(t *testing.T, e *env, _ Notice) {
				if r := e.lastCardRequest(); !slices.Equal(r.Spec.ClientIDs, []string{"c-oldest", "c-old", "c-mid"}) {
					t.Errorf("request names %v", r.Spec.All())
				}
			},
		},
		{
			name: "outdated: listing failed", want: NoticeListFailed, spec: hbrbot.UpgradeSpec{Outdated: true},
			setup: func(e *env) {
				e.hbr.setClients(func(hbrbot.Targets) ([]hbrbot.ClientInfo, error) {
					return nil, &hbrbot.HBRError{Code: "Forbidden.RAM"}
				})
			},
			check: func(t *testing.T, e *env, n Notice) {
				if n.Region != region || n.Reason != "Forbidden.RAM" {
					t.Errorf("notice %+v", n)
				}
				noCard(t, e)
			},
		},
		{
			name: "outdated: fleet up to date", want: NoticeFleetUpToDate, spec: hbrbot.UpgradeSpec{Outdated: true},
			setup: func(e *env) { e.hbr.fleet = fleet[2:3] },
			check: func(t *testing.T, e *env, n Notice) {
				if n.Region != region || n.Count != 1 {
					t.Errorf("notice %+v", n)
				}
				noCard(t, e)
			},
		},
		{
			name: "card post failed: the request is closed", want: NoticeCardFailed,
			setup: func(e *env) { e.chat.failOn("PostCard", errors.New("slack: chat.postMessage: channel_not_found")) },
			check: func(t *testing.T, e *env, n Notice) {
				if n.Reason != "channel_not_found" {
					t.Errorf("reason %q", n.Reason)
				}
				reqs, err := e.store.ChannelRequests(e.ctx, channel, 10)
				if err != nil || len(reqs) != 1 {
					t.Fatalf("requests %v, %v; want one", reqs, err)
				}
				if r := reqs[0]; r.State != hbrbot.RequestCancelled || r.DecidedBy != "" || r.DecidedAt.IsZero() {
					t.Errorf("request %s by %q at %v, want cancelled by nobody", r.State, r.DecidedBy, r.DecidedAt)
				}
				e.wantUnscheduled(hbrbot.Work{Kind: hbrbot.WorkExpiry, ID: reqs[0].ID})
			},
		},
		{
			name: "store down", want: NoticeUnavailable,
			setup: func(e *env) { e.mini.Close() },
			check: func(t *testing.T, e *env, _ Notice) { noCard(t, e) },
		},
		{
			name: "request not stored", want: NoticeUnavailable,
			setup: func(e *env) { e.store.failOn("CreateRequest", errors.New("redis: connection reset")) },
			check: func(t *testing.T, e *env, _ Notice) { noCard(t, e) },
		},
		{
			name: "card ts not recorded: the click records it", want: NoticeNone,
			setup: func(e *env) { e.store.failOn("SetCardTS", errors.New("redis: connection reset")) },
			check: func(t *testing.T, e *env, _ Notice) {
				r := e.lastCardRequest()
				if r.CardTS != "" {
					t.Fatalf("card ts %q recorded", r.CardTS)
				}
				wantNotice(t, e.click(approverA, ActApprove, r.ID), NoticeNone)
				r = e.read(r.ID)
				if r.CardTS != "1700000000.999999" || e.batch(hbrbot.BatchKey(r.ID, 0)).ThreadTS != r.CardTS {
					t.Errorf("card ts %q, batch thread %q; want the clicked card", r.CardTS, e.batch(hbrbot.BatchKey(r.ID, 0)).ThreadTS)
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.tweaks...)
			if tc.setup != nil {
				tc.setup(e)
			}
			spec := tc.spec
			if !spec.Outdated {
				spec.Targets = targetsOf(ids...)
			}
			n := e.ask(spec)
			wantNotice(t, n, tc.want)
			if tc.check != nil {
				tc.check(t, e, n)
			}
		})
	}
}

func TestRequestDuplicateEnvelope(t *testing.T) {
	e := newEnv(t)
	inv := e.invocation(requester, "i-aaa1")
	spec := hbrbot.UpgradeSpec{Targets: targetsOf("i-aaa1"), Region: region}
	wantNotice(t, e.svc.Request(e.ctx, inv, spec), NoticeNone)
	wantNotice(t, e.svc.Request(e.ctx, inv, spec), NoticeNone)
	if n := len(e.chat.calls("PostCard")); n != 1 {
		t.Errorf("%d cards for one envelope, want 1", n)
	}
	// A click and a status redelivered are ignored too.
	c := Click{EnvelopeID: inv.EnvelopeID, UserID: approverA, Action: ActApprove, RequestID: e.lastCardRequest().ID}
	wantNotice(t, e.svc.Click(e.ctx, c), NoticeNone)
	wantNotice(t, e.svc.Status(e.ctx, inv), NoticeNone)
	if r := e.lastCardRequest(); r.State != hbrbot.RequestPending {
		t.Errorf("a redelivered click decided the request: %s", r.State)
	}
}

func TestLookupFailure(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{&hbrbot.HBRError{Code: "Throttling"}, "Throttling"},
		{fmt.Errorf("describe: %w", context.DeadlineExceeded), hbrbot.FailureTimeout},
		{errors.New("connection refused"), hbrbot.FailureError},
	} {
		if got := lookupFailure(tc.err); got != tc.want {
			t.Errorf("lookupFailure(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

func TestSlackReason(t *testing.T) {
	long := errors.New("post: " + string(make([]byte, 100)))
	for _, tc := range []struct {
		err  error
		want int
	}{{errors.New("a: b: not_in_channel"), len("not_in_channel")}, {errors.New("plain"), len("plain")}, {long, 80}} {
		if got := slackReason(tc.err); len(got) != tc.want {
			t.Errorf("slackReason(%q) = %q, want %d bytes", tc.err, got, tc.want)
		}
	}
}

func TestClickRefused(t *testing.T) {
	for _, tc := range []struct {
		name         string
		tweaks       []tweak
		setup        func(e *env)
		user         string
		act          Act
		rule         policy.Rule
		lookupFailed bool
	}{
		{name: "self-approval", user: requester, act: ActApprove, rule: policy.RuleSelfApproval,
			tweaks: []tweak{withRules(func(r *policy.Rules) { r.Approvers = append(r.Approvers, requester) })}},
		{name: "not an approver", user: stranger, act: ActApprove, rule: policy.RuleApprovers},
		{name: "cancel by a stranger", user: stranger, act: ActCancel, rule: policy.RuleCancel},
		{name: "approver group look-up failed", user: approverA, act: ActApprove, rule: policy.RuleApprovers, lookupFailed: true,
			tweaks: []tweak{withRules(func(r *policy.Rules) { r.Approvers = []string{"SAPP"} })},
			setup:  func(e *env) { e.chat.groupErr = errors.New("usergroups.users.list: ratelimited") }},
		{name: "the channel closed", user: approverA, act: ActApprove, rule: policy.RuleChannels,
			setup: func(e *env) { e.svc.SetRules(policy.Set{}) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, tc.tweaks...)
			r := e.newRequest("i-aaa1")
			if tc.setup != nil {
				tc.setup(e)
			}
			n := e.click(tc.user, tc.act, r.ID)
			wantRefusal(t, n, tc.rule, tc.lookupFailed)
			if n.Act != tc.act {
				t.Errorf("act %v, want %v", n.Act, tc.act)
			}
			if got := e.read(r.ID); got.State != hbrbot.RequestPending || got.Approvals != nil {
				t.Errorf("refused click changed the request: %s %v", got.State, got.Approvals)
			}
			if recs := e.audit(hbrbot.AuditClickRefused); len(recs) != 1 || recs[0].Fields["rule"] != string(tc.rule) {
				t.Errorf("audit %+v", recs)
			}
			if e.obs.lastClick() != "refused" {
				t.Errorf("observed %q", e.obs.lastClick())
			}
		})
	}
}

func TestClickApprove(t *testing.T) {
	e := newEnv(t)
	r := e.newRequest("i-aaa1", "c-bbb1")
	wantNotice(t, e.click(approverA, ActApprove, r.ID), NoticeNone)
	got := e.read(r.ID)
	now := e.clock.Now()
	if got.State != hbrbot.RequestApproved || got.DecidedBy != approverA || !got.DecidedAt.Equal(now) ||
		!slices.Equal(got.Approvals, []string{approverA}) {
		t.Errorf("request %s by %q at %v, approvals %v", got.State, got.DecidedBy, got.DecidedAt, got.Approvals)
	}
	batches, err := e.store.Batches(e.ctx, r.ID)
	if err != nil || len(batches) != 1 {
		t.Fatalf("batches %v, %v; want one", batches, err)
	}
	if b := batches[0]; b.ThreadTS != r.CardTS || b.State != hbrbot.BatchPending || !slices.Equal(b.Targets.All(), r.Spec.All()) || len(b.Before) != 2 {
		t.Errorf("batch %+v", b)
	}
	updates := e.chat.calls("UpdateCard")
	if len(updates) != 1 || updates[0].Request.State != hbrbot.RequestApproved {
		t.Errorf("card updates %+v, want one showing the approval", updates)
	}
	e.wantDue(batchWork(batches[0].Key()), now)
	e.wantDue(hbrbot.Work{Kind: hbrbot.WorkCardSync, ID: r.ID}, now)
	e.wantUnscheduled(hbrbot.Work{Kind: hbrbot.WorkExpiry, ID: r.ID})
	if recs := e.audit(hbrbot.AuditDecided); len(recs) != 1 || recs[0].Fields["state"] != "approved" {
		t.Errorf("audit %+v", recs)
	}
	if e.obs.lastClick() != "approved" {
		t.Errorf("observed %q", e.obs.lastClick())
	}
	select {
	case <-e.svc.Scheduler.kick:
	default:
		t.Error("the scheduler was not kicked")
	}
}

func TestClickTwoOfThree(t *testing.T) {
	e := newEnv(t, withRules(func(r *policy.Rules) { r.RequiredApprovals = 2 }))
	r := e.newRequest("i-aaa1")
	n := e.click(approverA, ActApprove, r.ID)
	wantNotice(t, n, NoticeApprovalRecorded)
	if !slices.Equal(n.Request.Approvals, []string{approverA}) || n.Request.State != hbrbot.RequestPending {
		t.Errorf("notice request %s %v", n.Request.State, n.Request.Approvals)
	}
	if batches, _ := e.store.Batches(e.ctx, r.ID); len(batches) != 0 {
		t.Errorf("%d batches after one approval of two", len(batches))
	}
	e.wantDue(hbrbot.Work{Kind: hbrbot.WorkCardSync, ID: r.ID}, e.clock.Now())
	if recs := e.audit(hbrbot.AuditApprovalAdded); len(recs) != 1 || recs[0].Fields["approvals"] != "1/2" {
		t.Errorf("audit %+v", recs)
	}

	wantNotice(t, e.click(approverA, ActApprove, r.ID), NoticeAlreadyApproved)
	if got := e.read(r.ID); !slices.Equal(got.Approvals, []string{approverA}) {
		t.Errorf("a duplicate approval changed the approvals: %v", got.Approvals)
	}

	e.clock.Advance(time.Minute)
	wantNotice(t, e.click(approverB, ActApprove, r.ID), NoticeNone)
	got := e.read(r.ID)
	if got.State != hbrbot.RequestApproved || !slices.Equal(got.Approvals, []string{approverA, approverB}) || got.DecidedBy != approverB {
		t.Errorf("request %s by %q, approvals %v", got.State, got.DecidedBy, got.Approvals)
	}
	if batches, _ := e.store.Batches(e.ctx, r.ID); len(batches) != 1 {
		t.Errorf("%d batches, want 1", len(batches))
	}
	n = e.click(approverC, ActApprove, r.ID)
	wantNotice(t, n, NoticeAlreadyDecided)
	if n.Request.State != hbrbot.RequestApproved {
		t.Errorf("notice request %s", n.Request.State)
	}
}

func TestClickCancel(t *testing.T) {
	for _, who := range []string{requester, approverB} {
		t.Run(who, func(t *testing.T) {
			e := newEnv(t)
			r := e.newRequest("i-aaa1")
			wantNotice(t, e.click(who, ActCancel, r.ID), NoticeNone)
			got := e.read(r.ID)
			if got.State != hbrbot.RequestCancelled || got.DecidedBy != who {
				t.Errorf("request %s by %q", got.State, got.DecidedBy)
			}
			if batches, _ := e.store.Batches(e.ctx, r.ID); len(batches) != 0 {
				t.Errorf("a cancel made %d batches", len(batches))
			}
			e.wantUnscheduled(hbrbot.Work{Kind: hbrbot.WorkExpiry, ID: r.ID})
		})
	}
}

func TestClickOnDecidedRequest(t *testing.T) {
	e := newEnv(t)
	r := e.newRequest("i-aaa1")
	wantNotice(t, e.click(requester, ActCancel, r.ID), NoticeNone)
	e.settle() // the cancel's card sync
	sync := hbrbot.Work{Kind: hbrbot.WorkCardSync, ID: r.ID}
	e.wantUnscheduled(sync)
	e.clock.Advance(time.Minute)
	n := e.click(approverA, ActApprove, r.ID)
	wantNotice(t, n, NoticeAlreadyDecided)
	if n.Request.State != hbrbot.RequestCancelled {
		t.Errorf("notice request %s", n.Request.State)
	}
	e.wantDue(sync, e.clock.Now())
}

func TestClickAfterExpiry(t *testing.T) {
	e := newEnv(t)
	r := e.newRequest("i-aaa1")
	e.clock.Advance(time.Hour)
	n := e.click(approverA, ActApprove, r.ID)
	wantNotice(t, n, NoticeAlreadyDecided)
	if n.Request.State != hbrbot.RequestExpired {
		t.Errorf("notice request %s", n.Request.State)
	}
	if got := e.read(r.ID); got.State != hbrbot.RequestExpired || got.DecidedBy != "" {
		t.Errorf("request %s by %q, want expired by nobody", got.State, got.DecidedBy)
	}
	if batches, _ := e.store.Batches(e.ctx, r.ID); len(batches) != 0 {
		t.Errorf("an expired request has %d batches", len(batches))
	}
}

// Approvals landing together: the one that finds the request changed works
// its change out again from the request as it now stands.
func TestClickConflict(t *testing.T) {
	e := newEnv(t, withRules(func(r *policy.Rules) { r.RequiredApprovals = 2 }))
	r := e.newRequest("i-aaa1")
	var other Notice
	e.store.beforeChange = func() { other = e.click(approverB, ActApprove, r.ID) }
	wantNotice(t, e.click(approverA, ActApprove, r.ID), NoticeNone)
	wantNotice(t, other, NoticeApprovalRecorded)
	got := e.read(r.ID)
	if got.State != hbrbot.RequestApproved || !slices.Equal(got.Approvals, []string{approverB, approverA}) || got.DecidedBy != approverA {
		t.Errorf("request %s by %q, approvals %v", got.State, got.DecidedBy, got.Approvals)
	}
	if batches, _ := e.store.Batches(e.ctx, r.ID); len(batches) != 1 {
		t.Errorf("%d batches, want 1", len(batches))
	}

	// A request that keeps changing under the click: given up on.
	r = e.newRequest("i-aaa2")
	e.store.failOn("ChangeRequest", fmt.Errorf("change: %w", hbrbot.ErrConflict))
	wantNotice(t, e.click(approverA, ActApprove, r.ID), NoticeUnavailable)
}

func TestActString(t *testing.T) {
	for act, want := range map[Act]string{ActCommand: "command", ActApprove: "approve", ActCancel: "cancel", ActRetry: "retry"} {
		if got := act.String(); got != want {
			t.Errorf("%d: %q, want %q", act, got, want)
		}
	}
}

func TestClickFailures(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(e *env, r *hbrbot.Request)
		want  NoticeKind
		state hbrbot.RequestState
	}{
		{"unknown request", func(_ *env, r *hbrbot.Request) { r.ID = "rnothere" }, NoticeUnknownRequest, hbrbot.RequestPending},
		{"store down", func(e *env, _ *hbrbot.Request) { e.mini.Close() }, NoticeUnavailable, ""},
		{"request unreadable", func(e *env, _ *hbrbot.Request) { e.store.failOn("Request", errors.New("i/o timeout")) }, NoticeUnavailable, hbrbot.RequestPending},
		{"change not stored", func(e *env, _ *hbrbot.Request) { e.store.failOn("ChangeRequest", errors.New("i/o timeout")) }, NoticeUnavailable, hbrbot.RequestPending},
		{"card update failed: the sync redraws it", func(e *env, _ *hbrbot.Request) { e.chat.failOn("UpdateCard", errors.New("ratelimited")) },
			NoticeNone, hbrbot.RequestApproved},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			r := e.newRequest("i-aaa1")
			id := r.ID
			tc.setup(e, &r)
			wantNotice(t, e.click(approverA, ActApprove, r.ID), tc.want)
			if tc.state != "" {
				if got := e.read(id); got.State != tc.state {
					t.Errorf("request %s, want %s", got.State, tc.state)
				}
			}
		})
	}
}

// finishedBatch makes a seeded batch one that ended: completed, with
// results for some IDs.
func finishedBatch(final hbrbot.FinalStatus, results ...hbrbot.ClientResult) func(*hbrbot.Batch) {
	return func(b *hbrbot.Batch) {
		b.State, b.Final, b.TaskID, b.Results = hbrbot.BatchFinished, final, "t-1", results
		b.Reported = map[hbrbot.ReportKind]hbrbot.ReportState{hbrbot.ReportStarted: hbrbot.ReportPosted, hbrbot.ReportFinal: hbrbot.ReportPosted}
	}
}

// retry presses Retry on the batch's report, in its thread.
func (e *env) retry(user, batchKey string) Notice {
	var thread string
	if b, err := e.store.Store.BatchStatus(e.ctx, batchKey); err == nil {
		thread = b.ThreadTS
	}
	return e.svc.Click(e.ctx, Click{EnvelopeID: e.envelope(), ChannelID: channel, ThreadTS: thread, UserID: user, Action: ActRetry, BatchKey: batchKey})
}

func TestRetry(t *testing.T) {
	t.Run("unknown job", func(t *testing.T) {
		e := newEnv(t)
		wantNotice(t, e.retry(approverB, "rnothere.0"), NoticeUnknownJob)
	})
	t.Run("nothing to retry", func(t *testing.T) {
		e := newEnv(t)
		_, batches := e.seed([]string{"i-aaa1", "i-aaa2"}, finishedBatch(hbrbot.JobCompleted,
			hbrbot.ClientResult{InstanceID: "i-aaa1", ClientStatus: "ACTIVATED"}))
		wantNotice(t, e.retry(approverB, batches[0].Key()), NoticeNothingToRetry)
		if n := len(e.chat.calls("PostCard")); n != 0 {
			t.Errorf("%d cards posted", n)
		}
	})
	t.Run("the failures become a new request", func(t *testing.T) {
		e := newEnv(t)
		ids := []string{"i-invalid", "i-upgraded", "i-failed", "i-stillold", "c-notstarted"}
		old, batches := e.seed(ids, finishedBatch(hbrbot.JobCompleted,
			hbrbot.ClientResult{InstanceID: "i-upgraded", ClientStatus: "ACTIVATED"},
			hbrbot.ClientResult{InstanceID: "i-failed", ErrorCode: "UpgradeFailed"},
			hbrbot.ClientResult{ClientID: "c-notstarted", ClientStatus: "UNKNOWN"}),
			func(b *hbrbot.Batch) {
				b.Invalid = []hbrbot.InvalidTarget{{ID: "i-invalid", ErrorCode: "NotFound"}}
				b.After = append(clientsAt("2.0.0", "2.0.0", "i-upgraded"), clientsAt("1.0.0", "2.0.0", "i-stillold")...)
			})
		wantNotice(t, e.retry(approverB, batches[0].Key()), NoticeNone)
		r := e.lastCardRequest()
		if r.ID == old.ID || r.RequesterID != approverB || r.ChannelID != channel || r.State != hbrbot.RequestPending || r.Spec.Region != region {
			t.Errorf("retry request %+v", r)
		}
		if want := []string{"i-invalid", "i-failed", "i-stillold", "c-notstarted"}; !slices.Equal(r.Spec.All(), want) {
			t.Errorf("retry names %v, want %v", r.Spec.All(), want)
		}
	})
	t.Run("clicked before its report is marked posted", func(t *testing.T) {
		e := newEnv(t)
		_, batches := e.seed([]string{"i-aaa1"}, finishedBatch(hbrbot.JobFailed), func(b *hbrbot.Batch) {
			b.Reported[hbrbot.ReportFinal] = hbrbot.ReportAttempted
		})
		wantNotice(t, e.retry(approverB, batches[0].Key()), NoticeNone)
		if n := len(e.chat.calls("PostCard")); n != 1 {
			t.Errorf("%d cards posted, want the retry's", n)
		}
	})
	t.Run("ended but its report not yet posted", func(t *testing.T) {
		e := newEnv(t)
		_, batches := e.seed([]string{"i-aaa1"}, finishedBatch(hbrbot.JobFailed), func(b *hbrbot.Batch) {
			delete(b.Reported, hbrbot.ReportFinal)
		})
		wantRefusal(t, e.retry(approverB, batches[0].Key()), policy.RuleRetry, false)
	})
	t.Run("the rules refuse the retry", func(t *testing.T) {
		e := newEnv(t)
		_, batches := e.seed([]string{"i-aaa1"}, finishedBatch(hbrbot.JobFailed))
		e.svc.SetRules(policy.Set{Channels: map[string]policy.Rules{channel: {Regions: []string{"cn-beijing"}}}})
		n := e.retry(approverB, batches[0].Key())
		wantRefusal(t, n, policy.RuleRegions, false)
		if n.Act != ActRetry {
			t.Errorf("act %v", n.Act)
		}
	})
}

// statusLine is a StatusLine in short: batch -1 is the request's line.
type statusLine struct {
	request      string
	batch        int
	ids          int
	age, running time.Duration
}

func statusLines(n Notice) []statusLine {
	var got []statusLine
	for _, l := range n.Status {
		g := statusLine{request: l.Request.ID, batch: -1, ids: l.IDs, age: l.Age, running: l.Running}
		if l.Batch != nil {
			g.batch = l.Batch.Index
		}
		got = append(got, g)
	}
	return got
}

// statusEnv has three requests in the channel: one pending past its
// expiry, one pending (created 11s ago) and one approved 10s ago of 250
// IDs, whose three batches are changed by batch.
func statusEnv(t *testing.T, batch func(b *hbrbot.Batch, now time.Time)) (e *env, pending, approved hbrbot.Request) {
	e = newEnv(t)
	e.newRequest("i-stale")
	e.clock.Advance(2 * time.Hour) // pending past its expiry: not listed
	pending = e.newRequest("i-aaa1", "i-aaa2")
	e.clock.Advance(time.Second)
	now := e.clock.Now()
	approved, _ = e.seed(instanceIDs("run", 250), func(b *hbrbot.Batch) { batch(b, now) })
	e.clock.Advance(10 * time.Second)
	return e, pending, approved
}

func TestStatus(t *testing.T) {
	e, pending, approved := statusEnv(t, func(b *hbrbot.Batch, now time.Time) {
		switch b.Index {
		case 0: // ended, final report not yet posted
			b.State, b.Final = hbrbot.BatchFinished, hbrbot.JobCompleted
		case 1: // ended and reported: not listed
			finishedBatch(hbrbot.JobCompleted)(b)
		case 2:
			b.State, b.TaskID, b.Started = hbrbot.BatchRunning, "t-1", now.Add(-30*time.Second)
		}
	})
	n := e.svc.Status(e.ctx, e.invocation(requester, "status"))
	wantNotice(t, n, NoticeStatus)
	want := []statusLine{
		{request: approved.ID, batch: 0, ids: 100, age: 10 * time.Second},
		{request: approved.ID, batch: 2, ids: 50, age: 10 * time.Second, running: 40 * time.Second},
		{request: pending.ID, batch: -1, ids: 2, age: 11 * time.Second},
	}
	if got := statusLines(n); !slices.Equal(got, want) {
		t.Errorf("status lines\n got %+v\nwant %+v", got, want)
	}

	e.store.failOn("BatchStatuses", errors.New("i/o timeout"))
	wantNotice(t, e.svc.Status(e.ctx, e.invocation(requester, "status")), NoticeUnavailable)
	e.mini.Close()
	wantNotice(t, e.svc.Status(e.ctx, e.invocation(requester, "status")), NoticeUnavailable)
}

// A job not yet started shows no running time, whatever the job before it
// in the request shows.
func TestStatusRunningIsPerJob(t *testing.T) {
	e, _, approved := statusEnv(t, func(b *hbrbot.Batch, now time.Time) {
		if b.Index == 0 {
			b.State, b.TaskID, b.Started = hbrbot.BatchRunning, "t-1", now.Add(-30*time.Second)
		}
	})
	got := statusLines(e.svc.Status(e.ctx, e.invocation(requester, "status")))
	want := []statusLine{
		{request: approved.ID, batch: 0, ids: 100, age: 10 * time.Second, running: 40 * time.Second},
		{request: approved.ID, batch: 1, ids: 100, age: 10 * time.Second},
		{request: approved.ID, batch: 2, ids: 50, age: 10 * time.Second},
	}
	if len(got) < 3 || !slices.Equal(got[:3], want) {
		t.Errorf("status lines\n got %+v\nwant %+v", got, want)
	}
}

func TestExpire(t *testing.T) {
	t.Run("a pending request expires", func(t *testing.T) {
		e := newEnv(t)
		r := e.newRequest("i-aaa1")
		e.clock.Advance(time.Hour)
		if err := e.handle(hbrbot.Work{Kind: hbrbot.WorkExpiry, ID: r.ID}); err != nil {
			t.Fatal(err)
		}
		if got := e.read(r.ID); got.State != hbrbot.RequestExpired || got.DecidedBy != "" || !got.DecidedAt.Equal(e.clock.Now()) {
			t.Errorf("request %s by %q at %v", got.State, got.DecidedBy, got.DecidedAt)
		}
		e.wantUnscheduled(hbrbot.Work{Kind: hbrbot.WorkExpiry, ID: r.ID})
		e.wantDue(hbrbot.Work{Kind: hbrbot.WorkCardSync, ID: r.ID}, e.clock.Now())
	})
	for _, tc := range []struct {
		name  string
		setup func(e *env) string
	}{
		{"a decided request stays decided", func(e *env) string {
			r := e.approved("i-aaa1")
			return r.ID
		}},
		{"an unknown request", func(*env) string { return "rnothere" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			id := tc.setup(e)
			w := hbrbot.Work{Kind: hbrbot.WorkExpiry, ID: id}
			if err := e.runNow(w); err != nil {
				t.Fatal(err)
			}
			e.wantUnscheduled(w)
			if id != "rnothere" {
				if got := e.read(id); got.State != hbrbot.RequestApproved {
					t.Errorf("request %s, want still approved", got.State)
				}
			}
		})
	}
	t.Run("store failure is returned", func(t *testing.T) {
		e := newEnv(t)
		r := e.newRequest("i-aaa1")
		e.clock.Advance(time.Hour)
		e.store.failOn("Request", errors.New("i/o timeout"))
		if err := e.handle(hbrbot.Work{Kind: hbrbot.WorkExpiry, ID: r.ID}); err == nil {
			t.Error("no error")
		}
	})
}

func TestSyncCard(t *testing.T) {
	for _, tc := range []struct {
		name    string
		setup   func(e *env) string
		updates int
		batches int
		err     bool
	}{
		{"pending: the approvals so far", func(e *env) string { return e.newRequest("i-aaa1").ID }, 1, 0, false},
		{"approved: with its batches", func(e *env) string {
			r := e.approved(instanceIDs("s", 150)...)
			e.chat.reset() // the click's own update
			return r.ID
		}, 1, 2, false},
		{"no card: nothing to draw", func(e *env) string {
			e.store.failOn("SetCardTS", errors.New("i/o timeout"))
			return e.newRequest("i-aaa1").ID
		}, 0, 0, false},
		{"an unknown request", func(*env) string { return "rnothere" }, 0, 0, false},
		{"the update failed", func(e *env) string {
			e.chat.failOn("UpdateCard", errors.New("ratelimited"))
			return e.newRequest("i-aaa1").ID
		}, 1, 0, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			id := tc.setup(e)
			w := hbrbot.Work{Kind: hbrbot.WorkCardSync, ID: id}
			err := e.runNow(w)
			if (err != nil) != tc.err {
				t.Fatalf("error %v, want one: %v", err, tc.err)
			}
			updates := e.chat.calls("UpdateCard")
			if len(updates) != tc.updates {
				t.Fatalf("%d card updates, want %d", len(updates), tc.updates)
			}
			if tc.updates > 0 && len(updates[0].Batches) != tc.batches {
				t.Errorf("card drawn with %d batches, want %d", len(updates[0].Batches), tc.batches)
			}
			if _, scheduled := e.due(w); scheduled != tc.err {
				t.Errorf("still scheduled: %v, want %v", scheduled, tc.err)
			}
		})
	}
}
