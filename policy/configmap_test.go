package policy

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// configMapYAML renders a labelled policy ConfigMap whose data keys hold
// the given texts as literal blocks.
func configMapYAML(namespace, name string, keys ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: %s\n", name)
	if namespace != "" {
		fmt.Fprintf(&b, "  namespace: %s\n", namespace)
	}
	b.WriteString("  labels:\n    shadowplane.io/policy: \"true\"\ndata:\n")
	for i := 0; i+1 < len(keys); i += 2 {
		fmt.Fprintf(&b, "  %s: |\n%s", keys[i], indentLines(keys[i+1], "    "))
	}
	return b.String()
}

// listItem turns a YAML mapping into an item of a block list.
func listItem(mapping string) string {
	return "- " + strings.TrimPrefix(indentLines(mapping, "  "), "  ")
}

func namedPolicy(name, service string) string {
	return fmt.Sprintf("policies:\n- name: %s\n  service: %s\n  mirrors: [{service: %s-shadow, percent: 1}]\n", name, service, service)
}

// policyIDs lists "namespace/configmap/key/name" of each policy.
func policyIDs(policies []*Policy) []string {
	var out []string
	for _, p := range policies {
		out = append(out, p.Namespace+"/"+p.Source.ConfigMap+"/"+p.Source.Key+"/"+p.Name)
	}
	return out
}

func TestParseConfigMapFile(t *testing.T) {
	deployment := "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec: {replicas: 1}\n"
	tests := []struct {
		name     string
		fileName string
		data     string
		want     []string
	}{
		{
			name:     "bare policy file",
			fileName: "policies.yaml",
			data:     namedPolicy("a", "entrance"),
			want:     []string{"default/policies.yaml/policies.yaml/a"},
		},
		{
			name:     "bare policy file under a directory keeps the given name",
			fileName: "deploy/my-policies.yaml",
			data:     namedPolicy("a", "entrance"),
			want:     []string{"default/deploy/my-policies.yaml/my-policies.yaml/a"},
		},
		{
			name:     "ConfigMap manifest: .yaml and .yml keys in key order, other keys ignored",
			fileName: "cm.yaml",
			data: configMapYAML("shop", "mirror-policies",
				"z.yaml", namedPolicy("z", "entrance"),
				"a.yml", namedPolicy("a", "entrance"),
				"README.md", "policies: [this is not parsed\n",
				"settings.json", "{}\n"),
			want: []string{"shop/mirror-policies/a.yml/a", "shop/mirror-policies/z.yaml/z"},
		},
		{
			name:     "namespace defaults to default",
			fileName: "cm.yaml",
			data:     configMapYAML("", "cm", "policies.yaml", namedPolicy("a", "entrance")),
			want:     []string{"default/cm/policies.yaml/a"},
		},
		{
			name:     "several documents, other kinds skipped",
			fileName: "bundle.yaml",
			data: deployment + "---\n" + configMapYAML("shop", "one", "policies.yaml", namedPolicy("a", "entrance")) +
				"---\n---\n" + namedPolicy("b", "entrance"),
			want: []string{"shop/one/policies.yaml/a", "default/bundle.yaml/bundle.yaml/b"},
		},
		{
			name:     "kind List as printed by kubectl get -o yaml",
			fileName: "list.yaml",
			data: "apiVersion: v1\nkind: List\nitems:\n" +
				listItem(configMapYAML("shop", "one", "policies.yaml", namedPolicy("a", "entrance"))) +
				listItem(configMapYAML("shop", "two", "policies.yaml", namedPolicy("b", "entrance"))),
			want: []string{"shop/one/policies.yaml/a", "shop/two/policies.yaml/b"},
		},
		{
			name:     "JSON manifest",
			fileName: "cm.json",
			data:     `{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "cm", "namespace": "shop", "labels": {"shadowplane.io/policy": "true"}}, "data": {"policies.yaml": "policies:\n- {name: a, service: entrance, mirrors: [{service: s, percent: 1}]}\n"}}`,
			want:     []string{"shop/cm/policies.yaml/a"},
		},
		{
			name:     "same name in two namespaces is fine",
			fileName: "two.yaml",
			data: configMapYAML("one", "cm", "policies.yaml", namedPolicy("a", "entrance")) + "---\n" +
				configMapYAML("two", "cm", "policies.yaml", namedPolicy("a", "entrance")),
			want: []string{"one/cm/policies.yaml/a", "two/cm/policies.yaml/a"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			policies, errs := ParseConfigMapFile(tt.fileName, []byte(tt.data), parseTestOptions)
			if len(errs) != 0 {
				t.Fatalf("unexpected errors:\n%s", renderErrors(errs))
			}
			if diff := cmp.Diff(tt.want, policyIDs(policies)); diff != "" {
				t.Errorf("policies (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseConfigMapFileProblems(t *testing.T) {
	unlabelled := strings.Replace(configMapYAML("shop", "cm", "policies.yaml", namedPolicy("a", "entrance")), "shadowplane.io/policy", "app", 1)
	tests := []struct {
		name      string
		data      string
		configMap string
		key       string
		field     string
		msg       string
		warning   bool
		want      []string // policies still returned
	}{
		{
			name: "file YAML syntax", data: "apiVersion: v1\nkind: [\n",
			configMap: "f.yaml", msg: "invalid YAML",
		},
		{
			name: "document is a list", data: "- a\n",
			configMap: "f.yaml", msg: "each document must be a ConfigMap manifest or a policy file",
		},
		{
			name: "document is neither manifest nor policy file", data: "name: a\nservice: entrance\n",
			configMap: "f.yaml", msg: "neither a ConfigMap manifest",
		},
		{
			name: "manifest without kind", data: "apiVersion: v1\nmetadata: {name: cm}\n",
			configMap: "f.yaml", field: "kind", msg: "is required",
		},
		{
			name: "ConfigMap with wrong apiVersion", data: strings.Replace(configMapYAML("shop", "cm"), "apiVersion: v1", "apiVersion: v2", 1),
			configMap: "cm", field: "apiVersion", msg: `must be v1 for a ConfigMap, got "v2"`,
		},
		{
			name: "ConfigMap without name", data: "apiVersion: v1\nkind: ConfigMap\nmetadata: {namespace: shop}\n",
			configMap: "f.yaml", field: "metadata.name", msg: "is required",
		},
		{
			name: "ConfigMap without the policy label", data: unlabelled,
			configMap: "cm", field: "metadata.labels", msg: `lacks the label shadowplane.io/policy: "true", so shadowplane ignores it`, warning: true,
		},
		{
			name: "data not a mapping", data: configMapYAML("shop", "cm") + "  - a\n",
			configMap: "cm", field: "data", msg: "must be a mapping of key to text",
		},
		{
			name: "data value not text", data: configMapYAML("shop", "cm") + "  policies.yaml:\n    policies: []\n",
			configMap: "cm", key: "policies.yaml", msg: `the value must be text holding the policies`,
		},
		{
			name:      "a bad key does not hide a good one",
			data:      configMapYAML("shop", "cm", "bad.yaml", "policies: [\n", "good.yaml", namedPolicy("a", "entrance")),
			configMap: "cm", key: "bad.yaml", msg: "invalid YAML",
			want: []string{"shop/cm/good.yaml/a"},
		},
		{
			name:      "duplicate names across keys drop both",
			data:      configMapYAML("shop", "cm", "a.yaml", namedPolicy("dup", "entrance"), "b.yaml", namedPolicy("dup", "checkout"), "c.yaml", namedPolicy("ok", "entrance")),
			configMap: "cm", key: "b.yaml", field: "name", msg: `policy name "dup" is already used in configmap "shop/cm" key "a.yaml"`,
			want: []string{"shop/cm/c.yaml/ok"},
		},
		{
			name:      "duplicate names across ConfigMaps drop both",
			data:      configMapYAML("shop", "one", "p.yaml", namedPolicy("dup", "entrance")) + "---\n" + configMapYAML("shop", "two", "p.yaml", namedPolicy("dup", "checkout")),
			configMap: "two", key: "p.yaml", field: "name", msg: `already used in configmap "shop/one" key "p.yaml"`,
		},
		{
			name: "oversized bare file", data: namedPolicy("a", "entrance") + "# " + strings.Repeat("x", MaxPolicyKeyBytes) + "\n",
			configMap: "f.yaml", key: "f.yaml", msg: "more than the limit of 262144 (256 KiB)",
		},
		{
			name: "file beyond the file limit", data: strings.Repeat("#", maxPolicyFileBytes+1),
			configMap: "f.yaml", msg: "more than the limit of 4194304",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			policies, errs := ParseConfigMapFile("f.yaml", []byte(tt.data), parseTestOptions)
			if diff := cmp.Diff(tt.want, policyIDs(policies)); diff != "" {
				t.Errorf("policies (-want +got):\n%s", diff)
			}
			found := false
			for _, e := range errs {
				if e.ConfigMap == tt.configMap && e.Key == tt.key && e.Field == tt.field && e.Warning == tt.warning && strings.Contains(e.Message, tt.msg) {
					found = true
				}
			}
			if !found {
				t.Errorf("want an error in configmap %q key %q field %q containing %q (warning %v), got:\n%s",
					tt.configMap, tt.key, tt.field, tt.msg, tt.warning, renderErrors(errs))
			}
		})
	}
}

// TestParseConfigMapFileLineNumbers checks that messages point at lines of
// the file, not of the embedded key.
func TestParseConfigMapFileLineNumbers(t *testing.T) {
	data := configMapYAML("shop", "cm", "policies.yaml", "policies:\n- name: a\n  service: entrance\n  mirrors: [{service: s, percent: 250}]\n")
	lines := strings.Split(data, "\n")
	wantLine := 0
	for i, l := range lines {
		if strings.Contains(l, "percent: 250") {
			wantLine = i + 1
		}
	}
	_, errs := ParseConfigMapFile("cm.yaml", []byte(data), parseTestOptions)
	if len(errs) != 1 || !strings.HasSuffix(errs[0].Message, fmt.Sprintf("(line %d)", wantLine)) {
		t.Errorf("want one error ending in (line %d), got:\n%s", wantLine, renderErrors(errs))
	}

	syntax := configMapYAML("shop", "cm", "policies.yaml", "policies:\n- name: a\n  service: [\n")
	_, errs = ParseConfigMapFile("cm.yaml", []byte(syntax), parseTestOptions)
	if len(errs) != 1 || !strings.Contains(errs[0].Message, "invalid YAML: line 12:") {
		t.Errorf("want a YAML error on line 12 of the file (service: [), got:\n%s", renderErrors(errs))
	}
}
