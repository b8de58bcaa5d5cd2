package policyrefs

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"

	"github.com/shadowplane/shadowplane/policy"
)

func TestServices(t *testing.T) {
	tests := []struct {
		name string
		p    *policy.Policy
		want []string
	}{
		{
			name: "own Service only, URL target",
			p:    &policy.Policy{Namespace: "shop", Name: "p", Service: "web", Mirrors: []policy.Mirror{{URL: &policy.URLTarget{Host: "10.0.0.1"}}}},
			want: []string{"shop/web"},
		},
		{
			name: "targets in the policy's namespace and another, deduplicated",
			p: &policy.Policy{Namespace: "shop", Name: "p", Service: "web", Mirrors: []policy.Mirror{
				{Service: "web-shadow"}, {Service: "web", Namespace: "staging"}, {Service: "web-shadow", Namespace: "shop"},
			}},
			want: []string{"shop/web", "shop/web-shadow", "staging/web"},
		},
		{
			name: "routeTo backends, in the policy's namespace",
			p: &policy.Policy{Namespace: "shop", Name: "p", Service: "web",
				RouteTo: []policy.RouteBackend{{Name: "canary", Service: "web-v2"}, {Name: "edge", Service: "web-edge"}}},
			want: []string{"shop/web", "shop/web-edge", "shop/web-v2"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Services(tc.p); !slices.Equal(got, tc.want) {
				t.Errorf("Services = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestServicesMatchesEncodingWalk: on every policy the parser makes from
// the deploy examples and the parse test inputs, Services finds what a
// walk over the policy's JSON encoding finds (its first implementation).
func TestServicesMatchesEncodingWalk(t *testing.T) {
	files, err := filepath.Glob("../../policy/testdata/parse/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	examples, _ := filepath.Glob("../../deploy/examples/*.yaml")
	files = append(files, examples...)
	checked := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, doc := range policyDocuments(data) {
			policies, _ := policy.ParsePolicies("shop", "mirrors", "policies.yaml", doc, policy.ParseOptions{AllowedURLHosts: []string{"*"}})
			for _, p := range policies {
				checked++
				if got, want := Services(p), servicesByEncoding(p); !slices.Equal(got, want) {
					t.Errorf("%s: policy %s: Services = %v, the encoding walk finds %v", f, p.Name, got, want)
				}
			}
		}
	}
	if checked < 5 {
		t.Fatalf("only %d policies checked; the inputs moved?", checked)
	}
}

// policyDocuments returns data itself, or, for a Kubernetes manifest, the
// policy keys of its ConfigMaps.
func policyDocuments(data []byte) [][]byte {
	var out [][]byte
	for _, doc := range strings.Split(string(data), "\n---") {
		var cm struct {
			Kind string            `json:"kind"`
			Data map[string]string `json:"data"`
		}
		if err := yaml.Unmarshal([]byte(doc), &cm); err == nil && cm.Kind == "ConfigMap" {
			for key, v := range cm.Data {
				if policy.IsPolicyKey(key) {
					out = append(out, []byte(v))
				}
			}
			continue
		}
		out = append(out, []byte(doc))
	}
	return out
}

func servicesByEncoding(p *policy.Policy) []string {
	b, err := json.Marshal(p)
	if err != nil {
		panic(err)
	}
	var tree any
	if err := json.Unmarshal(b, &tree); err != nil {
		panic(err)
	}
	var out []string
	var visit func(v any)
	visit = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if svc, ok := v["Service"].(string); ok && svc != "" {
				ns, _ := v["Namespace"].(string)
				if ns == "" {
					ns = p.Namespace
				}
				out = append(out, ns+"/"+svc)
			}
			for _, child := range v {
				visit(child)
			}
		case []any:
			for _, child := range v {
				visit(child)
			}
		}
	}
	visit(tree)
	slices.Sort(out)
	return slices.Compact(out)
}
