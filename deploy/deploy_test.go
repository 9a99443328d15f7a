package deploy_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/hbrbot/hbrbot/config"
)

// envRefRE finds what looks like one of the bot's environment variables.
// \b keeps it from matching inside a longer name (FOO_REDIS_URL).
var envRefRE = regexp.MustCompile(`\b(?:HBRBOT|SLACK|ALIBABA_CLOUD|REDIS|HBR)_[A-Z0-9_]*[A-Z0-9]\b`)

// knownVars are the variables the bot reads, by name.
func knownVars() map[string]config.Variable {
	vars := map[string]config.Variable{}
	for _, v := range config.Variables() {
		vars[v.Name] = v
	}
	return vars
}

// fromSecret says whether a variable must come from a Secret, never a
// ConfigMap or a literal value: secrets, and the half of a credential that
// is not one (the access key ID), which goes with the other half.
func fromSecret(v config.Variable) bool { return v.Secrecy != config.Public }

// httpPort is the port of HBRBOT_HTTP_ADDR's default, which the probes,
// the container port and the Service must use.
func httpPort(t *testing.T, vars map[string]config.Variable) int {
	t.Helper()
	v := vars["HBRBOT_HTTP_ADDR"]
	if v.Default == "" {
		t.Fatal("HBRBOT_HTTP_ADDR has no default in config.Variables")
	}
	return addrPort(t, "HBRBOT_HTTP_ADDR default", v.Default)
}

func addrPort(t *testing.T, what, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("%s %q is not host:port: %v", what, addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("%s %q: port is not a number", what, addr)
	}
	return n
}

// file is one deployment file, parsed.
type file struct {
	path string // relative to deploy/
	raw  []byte
	docs []map[string]any // YAML documents or the JSON object; nil for text
}

// deployFiles reads every file of deploy/ that may name a variable: YAML
// and JSON (parsed), Markdown and env files (text).
func deployFiles(t *testing.T) []file {
	t.Helper()
	var files []file
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			return nil
		}
		ext := strings.ToLower(filepath.Ext(path))
		isEnv := strings.HasPrefix(d.Name(), ".env") || ext == ".env"
		// A chart's templates are text until helm renders them (see
		// helm_test.go).
		template := strings.Contains(filepath.ToSlash(path), "/templates/")
		if template {
			ext = ".txt"
		}
		if ext != ".yml" && ext != ".yaml" && ext != ".json" && ext != ".md" && ext != ".txt" && ext != ".tpl" && !isEnv {
			return nil
		}
		raw, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		f := file{path: filepath.ToSlash(path), raw: raw}
		switch ext {
		case ".yml", ".yaml":
			if f.docs, err = decodeYAML(raw); err != nil {
				return fmt.Errorf("%s: %w", path, err)
			}
			if len(f.docs) == 0 {
				return fmt.Errorf("%s: no YAML document", path)
			}
		case ".json":
			var doc map[string]any
			if err := json.Unmarshal(raw, &doc); err != nil {
				return fmt.Errorf("%s: invalid JSON: %w", path, err)
			}
			f.docs = []map[string]any{doc}
		}
		files = append(files, f)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// decodeYAML reads every document of a YAML stream.
func decodeYAML(raw []byte) ([]map[string]any, error) {
	var docs []map[string]any
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	for {
		var doc map[string]any
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, fmt.Errorf("invalid YAML: %w", err)
		}
		if doc != nil {
			docs = append(docs, doc)
		}
	}
}

// unknownVars lists, as "file:line: NAME", every variable src names that
// is not in known.
func unknownVars(path string, src []byte, known map[string]config.Variable) []string {
	var bad []string
	sc := bufio.NewScanner(bytes.NewReader(src))
	sc.Buffer(nil, 1<<20)
	for n := 1; sc.Scan(); n++ {
		for _, name := range envRefRE.FindAllString(sc.Text(), -1) {
			if _, ok := known[name]; !ok {
				bad = append(bad, fmt.Sprintf("%s:%d: %s", path, n, name))
			}
		}
	}
	return bad
}

// TestEnvironmentVariablesAreKnown: a variable the bot does not read is a
// setting that silently does nothing (a typo, or one renamed or removed).
func TestEnvironmentVariablesAreKnown(t *testing.T) {
	known := knownVars()
	files := deployFiles(t)
	if len(files) == 0 {
		t.Fatal("no deployment files found")
	}
	mentioned := map[string]bool{}
	for _, f := range files {
		for _, name := range envRefRE.FindAllString(string(f.raw), -1) {
			mentioned[name] = true
		}
		for _, b := range unknownVars(f.path, f.raw, known) {
			t.Errorf("%s is not a variable the config package reads (config.Variables)", b)
		}
	}
	if len(mentioned) == 0 {
		t.Error("no deployment file names any variable: the check would prove nothing")
	}
}

// TestUnknownVariableIsCaught keeps the check above honest.
func TestUnknownVariableIsCaught(t *testing.T) {
	known := knownVars()
	src := []byte("data:\n  HBRBOT_POLL_INTERVAL: 10s\n  HBRBOT_POLL_INTERVALL: 10s\n  OTHER_HBRBOT_X: 1\n")
	got := unknownVars("x.yaml", src, known)
	want := []string{"x.yaml:3: HBRBOT_POLL_INTERVALL"}
	if !slices.Equal(got, want) {
		t.Errorf("unknownVars = %q, want %q", got, want)
	}
}

// find returns the documents of the given kind across files.
func find(files []file, kind string) []map[string]any {
	var out []map[string]any
	for _, f := range files {
		for _, d := range f.docs {
			if d["kind"] == kind {
				out = append(out, d)
			}
		}
	}
	return out
}

// get walks a path of map keys and list indexes.
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func list(v any) []any {
	l, _ := v.([]any)
	return l
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

func num(v any) (int, bool) {
	switch n := v.(type) {
	case int:
		return n, true
	case float64:
		return int(n), true
	case string:
		i, err := strconv.Atoi(n)
		return i, err == nil
	}
	return 0, false
}

func TestKubernetes(t *testing.T) {
	var k8s []file
	for _, f := range deployFiles(t) {
		if strings.HasPrefix(f.path, "k8s/") {
			k8s = append(k8s, f)
		}
	}
	checkKubernetes(t, k8s)
}

// checkKubernetes checks a set of Kubernetes manifests: deploy/k8s, or
// the Helm chart as rendered.
func checkKubernetes(t *testing.T, files []file) {
	t.Helper()
	known := knownVars()
	port := httpPort(t, known)

	deps := find(files, "Deployment")
	if len(deps) != 1 {
		t.Fatalf("want one Deployment, found %d", len(deps))
	}
	dep := deps[0]
	if n, _ := num(get(dep, "spec", "replicas")); n != 2 {
		t.Errorf("Deployment replicas = %v, want 2", get(dep, "spec", "replicas"))
	}
	podLabels, _ := get(dep, "spec", "template", "metadata", "labels").(map[string]any)
	if !matches(get(dep, "spec", "selector", "matchLabels"), podLabels) {
		t.Errorf("Deployment selector does not match its pod labels %v", podLabels)
	}
	if v, ok := get(dep, "spec", "template", "spec", "securityContext", "runAsNonRoot").(bool); !ok || !v {
		t.Error("pod securityContext.runAsNonRoot is not true")
	}

	containers := list(get(dep, "spec", "template", "spec", "containers"))
	if len(containers) != 1 {
		t.Fatalf("want one container, found %d", len(containers))
	}
	c := containers[0]

	// Ports: the named ports resolve, and the bot's port is exposed.
	ports := map[string]int{}
	exposed := false
	for _, p := range list(get(c, "ports")) {
		n, _ := num(get(p, "containerPort"))
		if name := str(get(p, "name")); name != "" {
			ports[name] = n
		}
		exposed = exposed || n == port
	}
	if !exposed {
		t.Errorf("no containerPort %d (HBRBOT_HTTP_ADDR's default)", port)
	}
	resolve := func(v any) int {
		if n, ok := v.(int); ok {
			return n
		}
		if n, ok := ports[str(v)]; ok {
			return n
		}
		n, _ := num(v)
		return n
	}
	for probe, path := range map[string]string{"livenessProbe": "/healthz", "readinessProbe": "/readyz"} {
		hg := get(c, probe, "httpGet")
		if hg == nil {
			t.Errorf("%s: no httpGet", probe)
			continue
		}
		if got := str(get(hg, "path")); got != path {
			t.Errorf("%s path = %q, want %q", probe, got, path)
		}
		if got := resolve(get(hg, "port")); got != port {
			t.Errorf("%s port = %v (%d), want %d", probe, get(hg, "port"), got, port)
		}
	}
	if sp := get(c, "startupProbe", "httpGet"); sp != nil {
		if got := resolve(get(sp, "port")); got != port {
			t.Errorf("startupProbe port %d, want %d", got, port)
		}
	}

	// Environment: secrets from secretKeyRef; the rest from the ConfigMap.
	provided := map[string]bool{}
	for _, e := range list(get(c, "env")) {
		name := str(get(e, "name"))
		provided[name] = true
		if fromSecret(known[name]) {
			if get(e, "value") != nil || get(e, "valueFrom", "secretKeyRef") == nil {
				t.Errorf("env %s must come from a Secret (valueFrom.secretKeyRef)", name)
			}
		}
	}
	configMaps := map[string]map[string]any{}
	for _, cm := range find(files, "ConfigMap") {
		data, _ := cm["data"].(map[string]any)
		configMaps[str(get(cm, "metadata", "name"))] = data
	}
	for _, ef := range list(get(c, "envFrom")) {
		if get(ef, "secretRef") != nil {
			continue
		}
		name := str(get(ef, "configMapRef", "name"))
		data, ok := configMaps[name]
		if !ok {
			t.Errorf("envFrom names ConfigMap %q, which is not among the manifests", name)
			continue
		}
		for k, v := range data {
			provided[k] = true
			if fromSecret(known[k]) {
				t.Errorf("ConfigMap %s holds %s, a secret: move it to the Secret", name, k)
			}
			if k == "HBRBOT_HTTP_ADDR" {
				if got := addrPort(t, "ConfigMap HBRBOT_HTTP_ADDR", str(v)); got != port {
					t.Errorf("ConfigMap HBRBOT_HTTP_ADDR port %d, but the probes and Service use %d", got, port)
				}
			}
		}
	}
	var required []string
	for name, v := range known {
		if v.Required {
			required = append(required, name)
		}
	}
	sort.Strings(required)
	for _, name := range required {
		if !provided[name] {
			t.Errorf("the Deployment does not set %s, which the bot requires", name)
		}
	}

	// Hardening and sizing.
	if v, ok := get(c, "securityContext", "readOnlyRootFilesystem").(bool); !ok || !v {
		t.Error("container securityContext.readOnlyRootFilesystem is not true")
	}
	if v, ok := get(c, "securityContext", "allowPrivilegeEscalation").(bool); !ok || v {
		t.Error("container securityContext.allowPrivilegeEscalation is not false")
	}
	for _, r := range []string{"cpu", "memory"} {
		if get(c, "resources", "requests", r) == nil {
			t.Errorf("no resources.requests.%s", r)
		}
	}
	if get(c, "resources", "limits", "memory") == nil {
		t.Error("no resources.limits.memory")
	}

	pdbs := find(files, "PodDisruptionBudget")
	if len(pdbs) != 1 {
		t.Fatalf("want one PodDisruptionBudget, found %d", len(pdbs))
	}
	if n, ok := num(get(pdbs[0], "spec", "minAvailable")); !ok || n != 1 {
		t.Errorf("PodDisruptionBudget minAvailable = %v, want 1", get(pdbs[0], "spec", "minAvailable"))
	}
	if !matches(get(pdbs[0], "spec", "selector", "matchLabels"), podLabels) {
		t.Error("the PodDisruptionBudget selects no hbrbot pod")
	}

	for _, svc := range find(files, "Service") {
		if !matches(get(svc, "spec", "selector"), podLabels) {
			t.Errorf("Service %s selects no hbrbot pod", str(get(svc, "metadata", "name")))
		}
		for _, p := range list(get(svc, "spec", "ports")) {
			if got := resolve(get(p, "targetPort")); got != port {
				t.Errorf("Service targetPort %v (%d), want %d", get(p, "targetPort"), got, port)
			}
		}
	}
}

// matches reports whether every label of sel is in labels.
func matches(sel any, labels map[string]any) bool {
	m, ok := sel.(map[string]any)
	if !ok || len(m) == 0 {
		return false
	}
	for k, v := range m {
		if labels[k] != v {
			return false
		}
	}
	return true
}

func TestCompose(t *testing.T) {
	known := knownVars()
	port := httpPort(t, known)
	var compose map[string]any
	for _, f := range deployFiles(t) {
		if f.path == "docker-compose.yml" {
			compose = f.docs[0]
		}
	}
	if compose == nil {
		t.Fatal("deploy/docker-compose.yml not found")
	}
	bot := get(compose, "services", "hbrbot")
	if bot == nil {
		t.Fatal("no hbrbot service")
	}
	if n, _ := num(get(bot, "deploy", "replicas")); n != 2 {
		t.Errorf("hbrbot deploy.replicas = %v, want 2", get(bot, "deploy", "replicas"))
	}
	if get(bot, "env_file") == nil {
		t.Error("hbrbot has no env_file: where do the secrets come from?")
	}
	env := map[string]string{}
	switch e := get(bot, "environment").(type) {
	case map[string]any:
		for k, v := range e {
			env[k] = fmt.Sprint(v)
		}
	case []any:
		for _, kv := range e {
			k, v, _ := strings.Cut(str(kv), "=")
			env[k] = v
		}
	}
	for k, v := range env {
		if k == "REDIS_URL" {
			if strings.Contains(v, "@") {
				t.Error("compose sets REDIS_URL with a password in it: put it in the env_file")
			}
			continue
		}
		if fromSecret(known[k]) {
			t.Errorf("compose sets the secret %s in the file: put it in the env_file", k)
		}
	}
	if addr, ok := env["HBRBOT_HTTP_ADDR"]; ok {
		if got := addrPort(t, "compose HBRBOT_HTTP_ADDR", addr); got != port {
			t.Errorf("compose HBRBOT_HTTP_ADDR port %d, want %d", got, port)
		}
	}
	for _, key := range []string{"expose", "ports"} {
		for _, p := range list(get(bot, key)) {
			// "8080", "9000:8080", "127.0.0.1:9000:8080/tcp": the container
			// port is last.
			s, _, _ := strings.Cut(fmt.Sprint(p), "/")
			s = s[strings.LastIndex(s, ":")+1:]
			if n, _ := strconv.Atoi(s); n != port {
				t.Errorf("compose %s %v: container port is not %d", key, p, port)
			}
		}
	}
	redis := get(compose, "services", "redis")
	if !strings.HasPrefix(str(get(redis, "image")), "redis:7") {
		t.Errorf("redis image %q, want redis:7*", get(redis, "image"))
	}
	cmd := fmt.Sprint(get(redis, "command"))
	if !strings.Contains(cmd, "appendonly") || !strings.Contains(cmd, "yes") {
		t.Errorf("redis command %s does not turn AOF on", cmd)
	}
	named := false
	volumes, _ := get(compose, "volumes").(map[string]any)
	for _, v := range list(get(redis, "volumes")) {
		src, dst, _ := strings.Cut(str(v), ":")
		if _, ok := volumes[src]; ok && dst == "/data" {
			named = true // a top-level volume (its value may be empty)
		}
	}
	if !named {
		t.Error("redis /data is not on a named volume")
	}
}

// The bot's RAM identity needs exactly the HBR actions it calls.
func TestRAMPolicy(t *testing.T) {
	want := []string{"hbr:DescribeBackupClients", "hbr:DescribeTask", "hbr:UpgradeBackupClients"}
	raw, err := os.ReadFile("ram-policy.json")
	if err != nil {
		t.Fatal(err)
	}
	var pol struct {
		Version   string
		Statement []struct {
			Effect   string
			Action   any
			Resource any
		}
	}
	if err := json.Unmarshal(raw, &pol); err != nil {
		t.Fatalf("ram-policy.json: %v", err)
	}
	var got []string
	for _, st := range pol.Statement {
		if st.Effect != "Allow" {
			t.Errorf("statement with Effect %q: want only Allow statements", st.Effect)
		}
		switch a := st.Action.(type) {
		case string:
			got = append(got, a)
		case []any:
			for _, x := range a {
				got = append(got, str(x))
			}
		}
	}
	sort.Strings(got)
	if !slices.Equal(got, want) {
		t.Errorf("ram-policy.json allows %q, want exactly %q", got, want)
	}

	// The README quotes the policy.
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	claimed := map[string]bool{}
	for _, m := range regexp.MustCompile(`"(hbr:[A-Za-z*]+)"`).FindAllStringSubmatch(string(readme), -1) {
		claimed[m[1]] = true
	}
	var claimedList []string
	for a := range claimed {
		claimedList = append(claimedList, a)
	}
	sort.Strings(claimedList)
	if !slices.Equal(claimedList, want) {
		t.Errorf("README.md quotes the RAM actions %q, want %q", claimedList, want)
	}

	// The HBR client calls nothing else. Its actions are the
	// `const action = "..."` of hbr/client.go; if that file changes shape,
	// this part says so and is skipped rather than failing on style.
	src, err := os.ReadFile("../hbr/client.go")
	if err != nil {
		t.Logf("hbr/client.go unreadable (%v): not cross-checking the actions it calls", err)
		return
	}
	called := regexp.MustCompile(`const action = "([A-Za-z]+)"`).FindAllStringSubmatch(string(src), -1)
	if len(called) == 0 {
		t.Log("no `const action = \"...\"` in hbr/client.go: not cross-checking the actions it calls")
		return
	}
	for _, m := range called {
		if !slices.Contains(got, "hbr:"+m[1]) {
			t.Errorf("hbr/client.go calls %s, which ram-policy.json does not allow", m[1])
		}
	}
}

// The image's EXPOSE matches the port everything else uses.
func TestDockerfileExposesHTTPPort(t *testing.T) {
	port := httpPort(t, knownVars())
	src, err := os.ReadFile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^EXPOSE\s+(\d+)`).FindStringSubmatch(string(src))
	if m == nil {
		t.Fatal("the Dockerfile has no EXPOSE")
	}
	if n, _ := strconv.Atoi(m[1]); n != port {
		t.Errorf("Dockerfile EXPOSE %d, want %d", n, port)
	}
}
