package deploy_test

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"

	"github.com/hbrbot/hbrbot/metrics"
)

// capture registers on a real registry and keeps what metrics.New
// registers.
type capture struct {
	*prometheus.Registry
	collectors []prometheus.Collector
}

func (c *capture) Register(col prometheus.Collector) error {
	c.collectors = append(c.collectors, col)
	return c.Registry.Register(col)
}

func (c *capture) MustRegister(cols ...prometheus.Collector) {
	for _, col := range cols {
		if err := c.Register(col); err != nil {
			panic(err)
		}
	}
}

var fqNameRE = regexp.MustCompile(`fqName: "([^"]+)"`)

// exportedSeries are the series names the bot's collectors export: each
// metric's name, and for histograms and summaries the _bucket, _sum and
// _count series that PromQL reads.
func exportedSeries(t *testing.T) map[string]bool {
	t.Helper()
	reg := &capture{Registry: prometheus.NewRegistry()}
	metrics.New(reg)
	if len(reg.collectors) == 0 {
		t.Fatal("metrics.New registered nothing")
	}
	// Metrics without labels are gathered at once, with their type; a
	// vector's type is its Go type.
	types := map[string]string{}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		types[f.GetName()] = f.GetType().String()
	}
	names := map[string]bool{}
	for _, col := range reg.collectors {
		descs := make(chan *prometheus.Desc, 16)
		col.Describe(descs)
		close(descs)
		for d := range descs {
			m := fqNameRE.FindStringSubmatch(d.String())
			if m == nil {
				t.Fatalf("no name in %s", d)
			}
			typ := types[m[1]]
			switch col.(type) {
			case *prometheus.HistogramVec:
				typ = "HISTOGRAM"
			case *prometheus.SummaryVec:
				typ = "SUMMARY"
			}
			names[m[1]] = true
			switch typ {
			case "HISTOGRAM", "GAUGE_HISTOGRAM":
				names[m[1]+"_bucket"], names[m[1]+"_sum"], names[m[1]+"_count"] = true, true, true
			case "SUMMARY":
				names[m[1]+"_sum"], names[m[1]+"_count"] = true, true
			}
		}
	}
	return names
}

// Pieces of PromQL that are not metric names.
var (
	promStringRE   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'`)
	promGroupingRE = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	promSelectorRE = regexp.MustCompile(`\{[^}]*\}`)
	promRangeRE    = regexp.MustCompile(`\[[^\]]*\]`)
	promVarRE      = regexp.MustCompile(`\$\{?\w+\}?`)
	promFuncRE     = regexp.MustCompile(`\b[A-Za-z_][A-Za-z0-9_]*\s*\(`)
	promIdentRE    = regexp.MustCompile(`\b[A-Za-z_:][A-Za-z0-9_:]*\b`)
	promKeywords   = []string{"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset", "and", "or", "unless", "inf", "nan"}
)

// seriesIn lists the series names a PromQL expression reads.
func seriesIn(expr string) []string {
	for _, re := range []*regexp.Regexp{promStringRE, promGroupingRE, promSelectorRE, promRangeRE, promVarRE, promFuncRE} {
		expr = re.ReplaceAllString(expr, " ")
	}
	var out []string
	for _, id := range promIdentRE.FindAllString(expr, -1) {
		if !slices.Contains(promKeywords, strings.ToLower(id)) && !slices.Contains(out, id) {
			out = append(out, id)
		}
	}
	return out
}

func TestSeriesIn(t *testing.T) {
	tests := []struct {
		expr string
		want []string
	}{
		{`max(hbrbot_socket_mode_connected) == 0`, []string{"hbrbot_socket_mode_connected"}},
		{`hbrbot_socket_mode_connected == 0 or x != 1`, []string{"hbrbot_socket_mode_connected", "x"}},
		{`sum by (le, action) (rate(hbrbot_hbr_call_duration_seconds_bucket{instance=~"$instance", code!="a b"}[$__rate_interval]))`,
			[]string{"hbrbot_hbr_call_duration_seconds_bucket"}},
		{`sum(rate(a_sum[5m])) / sum without (x) (rate(a_count[5m])) > 0.1 and on (job) up`, []string{"a_sum", "a_count", "up"}},
		{`histogram_quantile(0.9, sum by (le) (rate(hbrbot_report_lag_seconds_bucket[30m]))) > 60`, []string{"hbrbot_report_lag_seconds_bucket"}},
	}
	for _, tt := range tests {
		if got := seriesIn(tt.expr); !slices.Equal(got, tt.want) {
			t.Errorf("seriesIn(%q) = %q, want %q", tt.expr, got, tt.want)
		}
	}
}

// alertRules reads deploy/prometheus/alerts.yaml.
func alertRules(t *testing.T) (raw []byte, rules []map[string]any) {
	t.Helper()
	raw, err := os.ReadFile("prometheus/alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Groups []struct {
			Name  string
			Rules []map[string]any
		}
	}
	if err := yaml.Unmarshal(raw, &file); err != nil {
		t.Fatalf("alerts.yaml: %v", err)
	}
	for _, g := range file.Groups {
		rules = append(rules, g.Rules...)
	}
	return raw, rules
}

// dashboardExprs reads every query of deploy/grafana/hbrbot.json.
func dashboardExprs(t *testing.T) (raw []byte, exprs []string) {
	t.Helper()
	raw, err := os.ReadFile("grafana/hbrbot.json")
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID        string
		Panels     []struct{ Targets []struct{ Expr string } }
		Templating struct {
			List []struct {
				Definition string
			}
		}
	}
	if err := json.Unmarshal(raw, &dash); err != nil {
		t.Fatalf("hbrbot.json: %v", err)
	}
	if dash.UID == "" {
		t.Error("hbrbot.json has no uid: every import would make another copy")
	}
	for _, p := range dash.Panels {
		for _, tg := range p.Targets {
			exprs = append(exprs, tg.Expr)
		}
	}
	for _, v := range dash.Templating.List {
		if def, ok := strings.CutPrefix(v.Definition, "label_values("); ok {
			metric, _, _ := strings.Cut(def, ",")
			exprs = append(exprs, strings.TrimSpace(metric))
		}
	}
	return raw, exprs
}

var hbrbotNameRE = regexp.MustCompile(`\bhbrbot_[a-z0-9_]+`)

// TestObservabilityNamesExist: every series the alert rules and the
// dashboard query is one the bot exports (a renamed metric would leave an
// alert that never fires, a panel that stays empty), and so is every
// hbrbot_ name their text mentions.
func TestObservabilityNamesExist(t *testing.T) {
	exported := exportedSeries(t)
	check := func(where, expr string) {
		t.Helper()
		series := seriesIn(expr)
		if len(series) == 0 {
			t.Errorf("%s: %q reads no series", where, expr)
		}
		for _, s := range series {
			if !exported[s] {
				t.Errorf("%s: %s is not a series metrics/metrics.go exports (%q)", where, s, expr)
			}
		}
	}

	rawRules, rules := alertRules(t)
	if len(rules) < 6 {
		t.Errorf("alerts.yaml has %d rules", len(rules))
	}
	for _, r := range rules {
		check("alerts.yaml "+str(r["alert"]), str(r["expr"]))
	}
	rawDash, exprs := dashboardExprs(t)
	if len(exprs) < 10 {
		t.Errorf("hbrbot.json has %d queries", len(exprs))
	}
	for _, e := range exprs {
		check("hbrbot.json", e)
	}

	used := map[string]bool{}
	for _, f := range []struct {
		name string
		raw  []byte
	}{{"alerts.yaml", rawRules}, {"hbrbot.json", rawDash}} {
		for _, n := range hbrbotNameRE.FindAllString(string(f.raw), -1) {
			used[n] = true
			if !exported[n] {
				t.Errorf("%s mentions %s, which the bot does not export", f.name, n)
			}
		}
	}
	// The dashboard shows every metric the bot exports.
	var missing []string
	for name := range exported {
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")
		if exported[base] && !used[base] && !used[base+"_bucket"] && !used[base+"_sum"] && !slices.Contains(missing, base) {
			missing = append(missing, base)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("neither the dashboard nor the alerts show %q", missing)
	}
}
