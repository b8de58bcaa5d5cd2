package watcher

import (
	"testing"

	"github.com/shadowplane/shadowplane/policy"
	"github.com/shadowplane/shadowplane/translator"
)

// TestStoredVersionsAreRechecked: a last valid version read from the
// annotation is put back in force only if the current options accept it.
// Here the stored version mirrors to a URL host that this control plane
// does not allow (the allowlist was narrowed since, or the annotation was
// written by hand), and the current definition is invalid: nothing is in
// force, rather than the refused target.
func TestStoredVersionsAreRechecked(t *testing.T) {
	definition := `policies:
- name: p1
  service: web
  port: http
  mirrors:
  - url: http://10.16.0.147
    percent: 100
`
	stored, errs := policy.ParsePolicies("default", "mirrors", "policies.yaml", []byte(definition),
		policy.ParseOptions{AllowedURLHosts: []string{"10.16.0.147"}})
	if len(stored) != 1 {
		t.Fatalf("parse with the host allowed: %v", errs)
	}
	raw, err := encodeLastValid(stored)
	if err != nil {
		t.Fatal(err)
	}
	if ps, _ := policy.ParsePolicies("default", "mirrors", "policies.yaml", []byte(definition), policy.ParseOptions{}); len(ps) != 0 {
		t.Fatal("the control plane's options accept the URL; the test needs them to refuse it")
	}
	cm := policyConfigMap("default", "mirrors", map[string]string{"policies.yaml": definition})
	cm.Annotations = map[string]string{AnnotationLastValid: raw}
	h := newHarness(t, Options{LeaderElected: true}, append(baseObjects("default"), cm)...)
	h.start(3)
	w := h.world("first", func(*translator.World) bool { return true })
	if p := policyOf(w, "default", "p1"); p != nil {
		t.Fatalf("a refused URL target is in force from the stored version: %s", p.Mirrors[0].URL.Raw)
	}
}
