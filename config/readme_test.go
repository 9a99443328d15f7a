package config

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// readmeVars reads the README's configuration table: each variable's
// default column, by name (a row may name several variables).
func readmeVars(t *testing.T) map[string]string {
	t.Helper()
	raw, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, found := strings.Cut(string(raw), "\n| variable | default | meaning |\n|---|---|---|\n")
	if !found {
		t.Fatal("README.md has no configuration table (| variable | default | meaning |)")
	}
	name := regexp.MustCompile("`([A-Z][A-Z0-9_]*)`")
	defaults := map[string]string{}
	for _, row := range strings.Split(table, "\n") {
		cells := strings.Split(row, " | ")
		if !strings.HasPrefix(row, "| ") || len(cells) < 3 {
			break
		}
		for _, m := range name.FindAllStringSubmatch(strings.TrimPrefix(cells[0], "| "), -1) {
			if _, dup := defaults[m[1]]; dup {
				t.Errorf("README.md lists %s twice", m[1])
			}
			defaults[m[1]] = cells[1]
		}
	}
	return defaults
}

// TestReadmeTable: the README lists exactly the variables Load reads, each
// with its default ("required" for the required ones; for those without a
// literal default, a word on what unset means).
func TestReadmeTable(t *testing.T) {
	readme := readmeVars(t)
	var names []string
	for _, v := range Variables() {
		names = append(names, v.Name)
		got, ok := readme[v.Name]
		var want string
		switch {
		case !ok:
			t.Errorf("README.md does not list %s", v.Name)
			continue
		case v.Required:
			want = "required"
		case v.Default != "":
			want = "`" + v.Default + "`"
		default:
			if got == "" || got == "required" {
				t.Errorf("README.md: %s has default %q, want what unset means", v.Name, got)
			}
			continue
		}
		if got != want {
			t.Errorf("README.md: %s has default %q, want %q", v.Name, got, want)
		}
	}
	for name := range readme {
		if !slices.Contains(names, name) {
			t.Errorf("README.md lists %s, which Load does not read", name)
		}
	}
}
