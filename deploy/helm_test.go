package deploy_test

import (
	"bytes"
	"os"
	"os/exec"
	"reflect"
	"slices"
	"sort"
	"testing"

	"go.yaml.in/yaml/v3"
)

const chart = "helm/hbrbot"

// secretAndPublic splits config.Variables: the names a Secret must supply
// and those the ConfigMap holds.
func secretAndPublic() (secret, public []string) {
	for name, v := range knownVars() {
		if fromSecret(v) {
			secret = append(secret, name)
		} else {
			public = append(public, name)
		}
	}
	sort.Strings(secret)
	sort.Strings(public)
	return secret, public
}

func keys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestChartValuesNameTheVariables: the chart's values name exactly the
// variables the bot reads: the non-secret ones under config, the secret
// ones under secretKeys.
func TestChartValuesNameTheVariables(t *testing.T) {
	raw, err := os.ReadFile(chart + "/values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var values struct {
		ReplicaCount int                       `yaml:"replicaCount"`
		Config       map[string]any            `yaml:"config"`
		SecretKeys   map[string]map[string]any `yaml:"secretKeys"`
	}
	if err := yaml.Unmarshal(raw, &values); err != nil {
		t.Fatalf("values.yaml: %v", err)
	}
	secret, public := secretAndPublic()
	if got := keys(values.Config); !slices.Equal(got, public) {
		t.Errorf("values.yaml config names %q,\nwant exactly the non-secret variables %q", got, public)
	}
	if got := keys(values.SecretKeys); !slices.Equal(got, secret) {
		t.Errorf("values.yaml secretKeys names %q,\nwant exactly the secret variables %q", got, secret)
	}
	for name, v := range knownVars() {
		ref, ok := values.SecretKeys[name]
		if ok && v.Required && ref["optional"] != false {
			t.Errorf("secretKeys.%s is optional, but the bot requires it", name)
		}
	}
	if values.ReplicaCount != 2 {
		t.Errorf("replicaCount %d, want 2", values.ReplicaCount)
	}
}

// TestChartAlertsAreTheRules: the chart's files/alerts.yaml is the rules
// file itself, not a copy that could drift.
func TestChartAlertsAreTheRules(t *testing.T) {
	target, err := os.Readlink(chart + "/files/alerts.yaml")
	if err != nil {
		t.Fatalf("%s/files/alerts.yaml is not a link to prometheus/alerts.yaml: %v", chart, err)
	}
	if target != "../../../prometheus/alerts.yaml" {
		t.Errorf("files/alerts.yaml links to %s", target)
	}
}

// helmTemplate renders the chart with every optional resource on. Without
// helm on PATH the test is skipped, unless HBRBOT_REQUIRE_HELM is set (CI).
func helmTemplate(t *testing.T, args ...string) []file {
	t.Helper()
	helm, err := exec.LookPath("helm")
	if err != nil {
		if os.Getenv("HBRBOT_REQUIRE_HELM") != "" {
			t.Fatal("helm is not on PATH, and HBRBOT_REQUIRE_HELM is set")
		}
		t.Skip("helm is not on PATH")
	}
	cmd := exec.Command(helm, append([]string{"template", "hbrbot", chart}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, stderr.String())
	}
	docs, err := decodeYAML(out)
	if err != nil {
		t.Fatalf("helm template: %v\n%s", err, out)
	}
	f := file{path: "helm template", raw: out, docs: docs}
	return []file{f}
}

// TestChartRendered: the rendered chart passes the checks of deploy/k8s,
// its ConfigMap holds exactly the non-secret variables and its Secret
// references exactly the secret ones, and its PrometheusRule is
// prometheus/alerts.yaml.
func TestChartRendered(t *testing.T) {
	files := helmTemplate(t, "--set", "serviceMonitor.enabled=true", "--set", "prometheusRule.enabled=true")
	for _, f := range files {
		for _, b := range unknownVars(f.path, f.raw, knownVars()) {
			t.Errorf("%s is not a variable the config package reads", b)
		}
	}
	checkKubernetes(t, files)
	secret, public := secretAndPublic()

	cms := find(files, "ConfigMap")
	if len(cms) != 1 {
		t.Fatalf("want one ConfigMap, found %d", len(cms))
	}
	data, _ := cms[0]["data"].(map[string]any)
	if got := keys(data); !slices.Equal(got, public) {
		t.Errorf("the ConfigMap holds %q,\nwant exactly the non-secret variables %q", got, public)
	}
	var fromSecrets []string
	for _, e := range list(get(find(files, "Deployment")[0], "spec", "template", "spec", "containers", 0, "env")) {
		if get(e, "valueFrom", "secretKeyRef") != nil {
			fromSecrets = append(fromSecrets, str(get(e, "name")))
		}
	}
	sort.Strings(fromSecrets)
	if !slices.Equal(fromSecrets, secret) {
		t.Errorf("the Deployment takes %q from the Secret,\nwant exactly the secret variables %q", fromSecrets, secret)
	}

	for _, kind := range []string{"ServiceMonitor", "PrometheusRule", "PodDisruptionBudget", "Service"} {
		if len(find(files, kind)) != 1 {
			t.Errorf("want one %s, found %d", kind, len(find(files, kind)))
		}
	}
	if rules := find(files, "PrometheusRule"); len(rules) == 1 {
		raw, err := os.ReadFile("prometheus/alerts.yaml")
		if err != nil {
			t.Fatal(err)
		}
		var want map[string]any
		if err := yaml.Unmarshal(raw, &want); err != nil {
			t.Fatal(err)
		}
		if got := rules[0]["spec"]; !reflect.DeepEqual(got, want) {
			t.Errorf("the PrometheusRule's spec is not prometheus/alerts.yaml")
		}
	}

	// Off by default.
	plain := helmTemplate(t)
	for _, kind := range []string{"ServiceMonitor", "PrometheusRule"} {
		if n := len(find(plain, kind)); n != 0 {
			t.Errorf("%d %s rendered by default; want it behind its values flag", n, kind)
		}
	}
}
