package integration

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/shadowplane/shadowplane/internal/testtools"
)

// TestMonitoringRules runs Prometheus' own promtool on deploy/monitoring:
// the PrometheusRule's groups pass `promtool check rules`, its alerts fire
// (and only fire) as deploy/monitoring/prometheusrule_test.yaml expects on
// synthetic series (share drift, copies nothing, copies failing), and every
// query of the Grafana dashboard parses.
func TestMonitoringRules(t *testing.T) {
	promtool := testtools.Require(t, "promtool")
	root := testtools.RepoRoot()
	dir := t.TempDir()
	run := func(args ...string) {
		t.Helper()
		cmd := exec.Command(promtool, args...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}

	var rule struct {
		Kind string `json:"kind"`
		Spec struct {
			Groups []any `json:"groups"`
		} `json:"spec"`
	}
	data, err := os.ReadFile(filepath.Join(root, "deploy/monitoring/prometheusrule.yaml"))
	must(t, err)
	must(t, yaml.Unmarshal(data, &rule))
	if rule.Kind != "PrometheusRule" || len(rule.Spec.Groups) == 0 {
		t.Fatalf("deploy/monitoring/prometheusrule.yaml: kind %q with %d groups", rule.Kind, len(rule.Spec.Groups))
	}
	writeYAML(t, filepath.Join(dir, "rules.yaml"), map[string]any{"groups": rule.Spec.Groups})
	tests, err := os.ReadFile(filepath.Join(root, "deploy/monitoring/prometheusrule_test.yaml"))
	must(t, err)
	must(t, os.WriteFile(filepath.Join(dir, "rules_test.yaml"), tests, 0o644))
	run("check", "rules", "rules.yaml")
	run("test", "rules", "rules_test.yaml")

	// The dashboard's queries, with Grafana's variables filled in, as
	// recording rules: promtool parses each.
	var dashboard struct {
		Panels []struct {
			Title   string `json:"title"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	data, err = os.ReadFile(filepath.Join(root, "deploy/monitoring/grafana-dashboard.json"))
	must(t, err)
	must(t, json.Unmarshal(data, &dashboard))
	grafana := strings.NewReplacer("$__rate_interval", "5m", "$namespace", ".*", "$policy", ".*")
	var recording []map[string]string
	for i, p := range dashboard.Panels {
		for j, target := range p.Targets {
			recording = append(recording, map[string]string{"record": fmt.Sprintf("dashboard:panel%d_target%d", i, j), "expr": grafana.Replace(target.Expr)})
		}
	}
	if len(recording) == 0 {
		t.Fatal("the dashboard has no queries")
	}
	writeYAML(t, filepath.Join(dir, "dashboard.yaml"), map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": recording}}})
	run("check", "rules", "dashboard.yaml")
}

func writeYAML(t *testing.T, path string, v any) {
	t.Helper()
	data, err := yaml.Marshal(v)
	must(t, err)
	must(t, os.WriteFile(path, data, 0o644))
}
