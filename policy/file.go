package policy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/hbrbot/hbrbot"
)

// fileRules is an entry of the policy file. Pointers tell unset from zero.
type fileRules struct {
	Regions           *[]string `yaml:"regions"`
	CrossAccount      *bool     `yaml:"cross_account"`
	SourceAccounts    *[]int64  `yaml:"source_accounts"`
	Requesters        *[]string `yaml:"requesters"`
	Approvers         *[]string `yaml:"approvers"`
	RequiredApprovals *int      `yaml:"required_approvals"`
	AllowSelfApproval *bool     `yaml:"allow_self_approval"`
	MaxTargets        *int      `yaml:"max_targets"`
}

type file struct {
	Default  *fileRules           `yaml:"default"`
	Channels map[string]fileRules `yaml:"channels"`
}

// LoadFile reads a policy file over base (the rules from the environment).
// Every problem is reported with its line.
func LoadFile(path string, base Rules, maxTargetsCap int) (Set, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return Set{}, fmt.Errorf("policy file: %w", err)
	}
	return Parse(raw, path, base, maxTargetsCap)
}

// Parse reads a policy document; name labels errors.
func Parse(raw []byte, name string, base Rules, maxTargetsCap int) (Set, error) {
	var f file
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true) // an unknown key is an error, with its line
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return Set{}, fmt.Errorf("%s: %s", name, strings.TrimPrefix(err.Error(), "yaml: "))
	}
	var root yaml.Node
	yaml.Unmarshal(raw, &root) // decoded above: cannot fail
	var problems []string
	add := func(line int, format string, args ...any) {
		problems = append(problems, fmt.Sprintf("%s:%d: %s", name, line, fmt.Sprintf(format, args...)))
	}
	v := validator{root: &root, add: add, maxTargets: maxTargetsCap}

	set := Set{Channels: map[string]Rules{}}
	def := base
	if f.Default != nil {
		def = v.rules("default", *f.Default, base)
		set.Default = &def
	}
	for ch, fr := range f.Channels {
		if !hbrbot.ValidChannelID(ch) {
			add(v.line("channels", ch), "%q is not a Slack channel ID (C..., G..., D...)", ch)
			continue
		}
		set.Channels[ch] = v.rules(ch, fr, def)
	}
	if f.Default == nil && len(f.Channels) == 0 {
		add(1, "no default and no channels: every command would be refused")
	}
	if len(problems) > 0 {
		return Set{}, fmt.Errorf("invalid policy file:\n  %s", strings.Join(problems, "\n  "))
	}
	return set, nil
}

type validator struct {
	root       *yaml.Node
	add        func(line int, format string, args ...any)
	maxTargets int
}

// line finds the line of a key path (default.regions, channels.C1.approvers).
func (v validator) line(path ...string) int {
	n := v.root
	if n.Kind == yaml.DocumentNode && len(n.Content) > 0 {
		n = n.Content[0]
	}
	line := 1
	for _, key := range path {
		if n.Kind != yaml.MappingNode {
			return line
		}
		found := false
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == key {
				line, n, found = n.Content[i].Line, n.Content[i+1], true
				break
			}
		}
		if !found {
			return line
		}
	}
	return line
}

func (v validator) rules(entry string, fr fileRules, inherit Rules) Rules {
	r := inherit
	path := func(key string) []string {
		if entry == "default" {
			return []string{"default", key}
		}
		return []string{"channels", entry, key}
	}
	if fr.Regions != nil {
		r.Regions = *fr.Regions
		for _, reg := range r.Regions {
			if !hbrbot.ValidRegion(reg) {
				v.add(v.line(path("regions")...), "%q is not a region ID (e.g. cn-hangzhou)", reg)
			}
		}
	}
	if fr.CrossAccount != nil {
		r.CrossAccount = *fr.CrossAccount
	}
	if fr.SourceAccounts != nil {
		r.SourceAccounts = *fr.SourceAccounts
		for _, a := range r.SourceAccounts {
			if !hbrbot.ValidAccountID(a) {
				v.add(v.line(path("source_accounts")...), "%d is not an Alibaba Cloud account ID", a)
			}
		}
	}
	ids := func(key string, list *[]string) []string {
		for _, id := range *list {
			if !hbrbot.ValidUserOrGroupID(id) {
				v.add(v.line(path(key)...), "%q is not a Slack user or user-group ID (U..., W..., S...)", id)
			}
		}
		return *list
	}
	if fr.Requesters != nil {
		r.Requesters = ids("requesters", fr.Requesters)
	}
	if fr.Approvers != nil {
		r.Approvers = ids("approvers", fr.Approvers)
	}
	if fr.RequiredApprovals != nil {
		r.RequiredApprovals = *fr.RequiredApprovals
		if !hbrbot.ValidApprovals(r.RequiredApprovals) {
			v.add(v.line(path("required_approvals")...), "required_approvals %d is not between %d and %d", r.RequiredApprovals, hbrbot.MinApprovals, hbrbot.MaxApprovals)
		}
	}
	if fr.AllowSelfApproval != nil {
		r.AllowSelfApproval = *fr.AllowSelfApproval
	}
	if fr.MaxTargets != nil {
		r.MaxTargets = *fr.MaxTargets
		if r.MaxTargets < 1 || r.MaxTargets > v.maxTargets {
			v.add(v.line(path("max_targets")...), "max_targets %d is not between 1 and %s", r.MaxTargets, strconv.Itoa(v.maxTargets))
		}
	}
	if n := len(r.Approvers); n > 0 && !slices.ContainsFunc(r.Approvers, hbrbot.IsUserGroupID) && r.RequiredApprovals > n {
		v.add(v.line(path("required_approvals")...), "required_approvals %d exceeds the %d approvers listed", r.RequiredApprovals, n)
	}
	return r
}
