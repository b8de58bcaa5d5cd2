package main

import (
	"fmt"
	"strings"
	"testing"

	"github.com/shadowplane/shadowplane/policy"
)

const setTestKey = `# Release of entrance: keep this comment.
policies:
- name: copy
  service: entrance
  mirrors:
  - {service: entrance-shadow, name: staging, percent: 10}   # ten percent
- name: canary
  service: entrance
  routeTo:
  - service: entrance-v2
    name: canary
    weight:   5     # step by step
  - service: entrance-v3
    weight: 0
`

// TestEditSharesWritesAMissingWeight: a lone backend written without a
// weight (100) gets one, in the mapping's own style, and nothing else moves.
func TestEditSharesWritesAMissingWeight(t *testing.T) {
	tests := []struct{ name, key, want string }{
		{"flow", "policies:\n- name: gray  # marker\n  service: entrance\n  routeTo: [{service: entrance-edge}]   # edge\n",
			"policies:\n- name: gray  # marker\n  service: entrance\n  routeTo: [{service: entrance-edge, weight: 0}]   # edge\n"},
		{"block", "policies:\n- name: gray\n  service: entrance\n  routeTo:\n  - service: entrance-edge\n    name: edge   # the edge build\n# end\n",
			"policies:\n- name: gray\n  service: entrance\n  routeTo:\n  - service: entrance-edge\n    name: edge   # the edge build\n    weight: 0\n# end\n"},
		{"block at the end without a newline", "policies:\n- name: gray\n  service: entrance\n  routeTo:\n  - service: entrance-edge",
			"policies:\n- name: gray\n  service: entrance\n  routeTo:\n  - service: entrance-edge\n    weight: 0\n"},
	}
	for _, tt := range tests {
		policies, errs := policy.ParsePolicies("shop", "release", "policies.yaml", []byte(tt.key), policy.ParseOptions{})
		if len(errs) != 0 || len(policies) != 1 {
			t.Fatalf("%s: test key invalid: %v", tt.name, errs)
		}
		got, _, err := editShares(tt.key, policies[0], []shareEdit{{name: policies[0].RouteTo[0].Name, text: "0"}})
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if got != tt.want {
			t.Errorf("%s: got\n%s\nwant\n%s", tt.name, got, tt.want)
		}
		if edited, errs := policy.ParsePolicies("shop", "release", "policies.yaml", []byte(got), policy.ParseOptions{}); len(errs) != 0 || edited[0].RouteTo[0].PartsPerMillion != 0 {
			t.Errorf("%s: the edit does not parse to weight 0: %v", tt.name, errs)
		}
	}
}

// TestEditShares: an edit changes only the numbers, so every comment and
// the layout survive, and the result parses to the new shares.
func TestEditShares(t *testing.T) {
	tests := []struct {
		policy string
		edits  []shareEdit
		want   string // the key's text after the edit
		err    string
	}{
		{"canary", []shareEdit{{name: "canary", text: "25"}},
			strings.Replace(setTestKey, "weight:   5     # step", "weight:   25     # step", 1), ""},
		{"canary", []shareEdit{{name: "canary", text: "0"}, {name: "entrance-v3", text: "100"}},
			strings.Replace(strings.Replace(setTestKey, "weight:   5 ", "weight:   0 ", 1), "weight: 0\n", "weight: 100\n", 1), ""},
		{"copy", []shareEdit{{name: "staging", text: "1.5"}},
			strings.Replace(setTestKey, "percent: 10}", "percent: 1.5}", 1), ""},
		{"canary", []shareEdit{{name: "nope", text: "1"}}, "", `has no mirror or routeTo backend named "nope"; its names are: canary, entrance-v3`},
	}
	for _, tt := range tests {
		policies, errs := policy.ParsePolicies("shop", "release", "policies.yaml", []byte(setTestKey), policy.ParseOptions{})
		if len(errs) != 0 {
			t.Fatalf("test key invalid: %v", errs)
		}
		var p *policy.Policy
		for _, candidate := range policies {
			if candidate.Name == tt.policy {
				p = candidate
			}
		}
		got, _, err := editShares(setTestKey, p, tt.edits)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%v: error %v, want %q", tt.edits, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Fatalf("%v: %v", tt.edits, err)
		}
		if got != tt.want {
			t.Errorf("%v: got\n%s\nwant\n%s", tt.edits, got, tt.want)
		}
	}
}

func TestPromotedBackend(t *testing.T) {
	two := &policy.Policy{Name: "p", RouteTo: []policy.RouteBackend{{Name: "a"}, {Name: "b"}}}
	one := &policy.Policy{Name: "p", RouteTo: []policy.RouteBackend{{Name: "a"}}}
	if got, err := promotedBackend(one, nil); got != "a" || err != nil {
		t.Errorf("one backend: %q %v", got, err)
	}
	if got, err := promotedBackend(two, []string{"b"}); got != "b" || err != nil {
		t.Errorf("named: %q %v", got, err)
	}
	if _, err := promotedBackend(two, nil); err == nil || !strings.Contains(err.Error(), "name the one to promote") {
		t.Errorf("two unnamed: %v", err)
	}
	if _, err := promotedBackend(two, []string{"c"}); err == nil {
		t.Error("unknown backend accepted")
	}
}

// TestValidateRouteCap: `validate` reports a policy the route cap keeps out
// of force, as an error naming it, before anything is applied.
func TestValidateRouteCap(t *testing.T) {
	var b strings.Builder
	b.WriteString("policies:\n")
	for i := 0; i < 8; i++ {
		fmt.Fprintf(&b, "- name: p%d\n  service: entrance\n  match: {headers: [{name: x-%d, present: true}]}\n  mirrors: [{service: shadow, percent: 1}]\n", i, i)
	}
	stdout, _, code := runCLI(t, []byte(b.String()), "validate", "-f", "-")
	if code != 1 || !strings.Contains(stdout, `error: configmap "default/stdin" key "stdin" policy "p7": match: with this policy, the policies of Service default/entrance port "" would need 255 routes`) {
		t.Errorf("exit %d, output:\n%s", code, stdout)
	}
	if strings.Contains(stdout, `policy "default/p7" is valid`) || !strings.Contains(stdout, `policy "default/p6" is valid`) {
		t.Errorf("p0..p6 must be valid and p7 not:\n%s", stdout)
	}
}
