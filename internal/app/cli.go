package app

import (
	"fmt"
	"io"
	"runtime/debug"
	"strings"
	"text/tabwriter"

	"github.com/hbrbot/hbrbot/config"
)

// subcommands are the words `hbrbot WORD` understands, in the order help
// lists them.
var subcommands = []struct{ name, args, what string }{
	{"", "[-version]", "run the bot: configuration from the environment and ./.env"},
	{"audit", "[-since 24h] [-format jsonl|csv] [-request ID]", "print the audit trail (reads REDIS_URL, REDIS_MODE only)"},
	{"healthcheck", "[-live] [-timeout 3s]", "ask the bot running here: exit 0 if /readyz (with -live /healthz) answers 200, else 1"},
	{"help", "", "this text (also -h, --help)"},
}

// isHelp says whether an argument asks for help.
func isHelp(arg string) bool {
	switch arg {
	case "help", "-h", "-help", "--help":
		return true
	}
	return false
}

// writeHelp prints the subcommands and every environment variable, from
// config.Variables: name, default and meaning.
func writeHelp(w io.Writer) {
	fmt.Fprintf(w, "hbrbot %s: the Slack bot that upgrades Alibaba Cloud Backup (HBR) clients after an approval.\n\nUsage:\n", versionString())
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, c := range subcommands {
		fmt.Fprintf(tw, "  %s\t%s\n", strings.Join(strings.Fields("hbrbot "+c.name+" "+c.args), " "), c.what)
	}
	tw.Flush()
	fmt.Fprintf(w, "\nEnvironment (a .env file in the working directory may supply it; the environment wins):\n")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  VARIABLE\tDEFAULT\tMEANING\n")
	for _, v := range config.Variables() {
		def := v.Default
		switch {
		case v.Required:
			def = "required"
		case def == "":
			def = "-"
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", v.Name, def, v.Meaning)
	}
	tw.Flush()
	fmt.Fprintf(w, "\n%s\n", config.Hint)
}

// versionString is the version set with -ldflags "-X main.version=...",
// else the module version and VCS revision the Go toolchain recorded.
func versionString() string {
	if Version != "dev" {
		return Version
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return Version
	}
	return buildVersion(info)
}

// buildVersion reads a version from build information: the module's
// (v1.2.3 when installed with go install ...@v1.2.3), then the revision,
// its time and whether the tree had changes (go build in a checkout).
func buildVersion(info *debug.BuildInfo) string {
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	v := info.Main.Version
	if v == "" || v == "(devel)" {
		v = "dev"
	}
	var extra []string
	if rev := settings["vcs.revision"]; rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		extra = append(extra, "revision "+rev)
	}
	if t := settings["vcs.time"]; t != "" {
		extra = append(extra, t)
	}
	if settings["vcs.modified"] == "true" {
		extra = append(extra, "modified")
	}
	if len(extra) > 0 {
		v += " (" + strings.Join(extra, ", ") + ")"
	}
	return v
}
