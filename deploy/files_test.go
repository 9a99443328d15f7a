package deploy_test

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// ramActions are the actions deploy/ram-policy.json allows.
func ramActions(t *testing.T) []string {
	t.Helper()
	raw, err := os.ReadFile("ram-policy.json")
	if err != nil {
		t.Fatal(err)
	}
	var pol struct{ Statement []struct{ Action []string } }
	if err := json.Unmarshal(raw, &pol); err != nil {
		t.Fatalf("ram-policy.json: %v", err)
	}
	var out []string
	for _, st := range pol.Statement {
		out = append(out, st.Action...)
	}
	sort.Strings(out)
	return out
}

// TestDeployReadmeRAMActions: deploy/README.md names exactly the actions
// the policy grants.
func TestDeployReadmeRAMActions(t *testing.T) {
	raw, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	var named []string
	for _, m := range regexp.MustCompile("`(hbr:[A-Za-z*]+)`").FindAllStringSubmatch(string(raw), -1) {
		if !slices.Contains(named, m[1]) {
			named = append(named, m[1])
		}
	}
	sort.Strings(named)
	if want := ramActions(t); !slices.Equal(named, want) {
		t.Errorf("deploy/README.md names the RAM actions %q, ram-policy.json grants %q", named, want)
	}
}

// TestDockerfile: the image is distroless and non-root, checks itself with
// `hbrbot healthcheck`, carries the OCI labels, and builds with cache
// mounts.
func TestDockerfile(t *testing.T) {
	raw, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	src := string(raw)
	for _, tt := range []struct{ what, re string }{
		{"a distroless nonroot runtime image", `(?m)^FROM gcr\.io/distroless/static[^ ]*:nonroot\s*$`},
		{"USER nonroot", `(?m)^USER nonroot`},
		{"a HEALTHCHECK running hbrbot healthcheck", `(?m)^HEALTHCHECK .*CMD \["/hbrbot", "healthcheck"\]`},
		{"a module cache mount", `--mount=type=cache,target=/go/pkg/mod`},
		{"a build cache mount", `--mount=type=cache,target=/root/.cache/go-build`},
		{"a -trimpath build with the version", `-trimpath -ldflags "[^"]*-X main\.version=`},
	} {
		if !regexp.MustCompile(tt.re).MatchString(src) {
			t.Errorf("the Dockerfile has no %s (%s)", tt.what, tt.re)
		}
	}
	for _, label := range []string{"source", "version", "revision", "licenses", "title", "description"} {
		if !strings.Contains(src, "org.opencontainers.image."+label+"=") {
			t.Errorf("the Dockerfile has no org.opencontainers.image.%s label", label)
		}
	}
}

// TestComposeBothVersions: nothing Compose 1.29 refuses, and the bot's
// health check is the binary's own.
func TestComposeBothVersions(t *testing.T) {
	raw, err := os.ReadFile("docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var compose map[string]any
	if err := yaml.Unmarshal(raw, &compose); err != nil {
		t.Fatal(err)
	}
	for key := range compose {
		if !slices.Contains([]string{"services", "volumes", "networks", "configs", "secrets"}, key) && !strings.HasPrefix(key, "x-") {
			t.Errorf("top-level %q: docker-compose 1.29 refuses it", key)
		}
	}
	var test []string
	for _, x := range list(get(compose, "services", "hbrbot", "healthcheck", "test")) {
		test = append(test, str(x))
	}
	if want := []string{"CMD", "/hbrbot", "healthcheck"}; !slices.Equal(test, want) {
		t.Errorf("hbrbot healthcheck test = %q, want %q", test, want)
	}
}
