package config

import "strings"

// Problem is one bad variable and what is wrong with it. Reason never
// contains a secret value.
type Problem struct {
	// Var is the environment variable's name, or the .env file's name when
	// that file cannot be read or parsed.
	Var string
	// Reason is short and lower-case, e.g. "required".
	Reason string
}

func (p Problem) String() string { return p.Var + ": " + p.Reason }

// Error is Load's error: every problem found, in the order the contract
// lists the variables.
type Error struct {
	Problems []Problem
}

// Error reads
//
//	invalid configuration:
//	  SLACK_APP_TOKEN: required
//	  HBRBOT_POLL_INTERVAL: "10" is not a duration (e.g. 10s)
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("invalid configuration:")
	for _, p := range e.Problems {
		b.WriteString("\n  ")
		b.WriteString(p.String())
	}
	return b.String()
}

// Vars lists the bad variables, in the order of Problems, each once.
func (e *Error) Vars() []string {
	var vars []string
	for _, p := range e.Problems {
		if len(vars) == 0 || vars[len(vars)-1] != p.Var {
			vars = append(vars, p.Var)
		}
	}
	return vars
}

// Hint is what hbrbot adds below a refused configuration: where the
// variables and the Slack tokens are explained.
const Hint = `Copy .env.example to .env and fill it in. Every variable: "hbrbot help" and README "Configuration"; the Slack tokens: README "Slack app".`
