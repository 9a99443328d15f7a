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

// TestReleaseConfig: goreleaser builds the bot for linux and darwin on
// amd64 and arm64, trimmed and with its version, into archives with
// checksums and an image like the Dockerfile's (`goreleaser check`, in CI,
// checks the rest).
func TestReleaseConfig(t *testing.T) {
	raw, err := os.ReadFile("../.goreleaser.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Builds []struct {
			Main    string
			Goos    []string
			Goarch  []string
			Flags   []string
			Ldflags []string
		}
		Archives  []map[string]any
		Checksum  map[string]any
		DockersV2 []struct{ Dockerfile string } `yaml:"dockers_v2"`
	}
	if err := yaml.Unmarshal(raw, &cfg); err != nil {
		t.Fatal(err)
	}
	if len(cfg.Builds) != 1 {
		t.Fatalf("%d builds, want 1", len(cfg.Builds))
	}
	b := cfg.Builds[0]
	if b.Main != "./cmd/hbrbot" {
		t.Errorf("build main %q", b.Main)
	}
	sort.Strings(b.Goos)
	sort.Strings(b.Goarch)
	if !slices.Equal(b.Goos, []string{"darwin", "linux"}) || !slices.Equal(b.Goarch, []string{"amd64", "arm64"}) {
		t.Errorf("builds for %v × %v, want darwin, linux × amd64, arm64", b.Goos, b.Goarch)
	}
	if !slices.Contains(b.Flags, "-trimpath") {
		t.Error("the build is not -trimpath")
	}
	if !strings.Contains(strings.Join(b.Ldflags, " "), "-X main.version=") {
		t.Error("the build does not set main.version")
	}
	if len(cfg.Archives) == 0 || cfg.Checksum == nil || len(cfg.DockersV2) == 0 {
		t.Fatal("no archives, checksum or image")
	}
	image, err := os.ReadFile("../" + cfg.DockersV2[0].Dockerfile)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range []string{"FROM gcr.io/distroless/static-debian12:nonroot", "USER nonroot:nonroot",
		`HEALTHCHECK --interval=15s --timeout=5s --start-period=30s --retries=3 CMD ["/hbrbot", "healthcheck"]`} {
		if !strings.Contains(string(image), line+"\n") {
			t.Errorf("%s lacks %q", cfg.DockersV2[0].Dockerfile, line)
		}
	}
}
