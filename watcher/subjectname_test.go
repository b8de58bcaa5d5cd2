package watcher

import (
	"testing"

	"github.com/shadowplane/shadowplane/policy"
)

// TestSubjectNameRoundTrip: every subject a key yields, invalid names with
// "/" included, reads back from its stored name, so a new leader knows the
// verdicts the old one recorded and does not record their Events again.
func TestSubjectNameRoundTrip(t *testing.T) {
	for _, name := range []string{"p1", "a/b", "a//b/", "/x"} {
		definition := "policies:\n- name: " + name + "\n  service: web\n  mirrors:\n  - service: x\n    percent: 1\n"
		_, errs := policy.ParsePolicies("default", "mirrors", "policies.yaml", []byte(definition), policy.ParseOptions{})
		k := parsedKey{source: keySource{"default", "mirrors", "policies.yaml"}, errs: errs}
		claims, _ := claimsOfKey(k, nil)
		for _, c := range claims {
			stored := subjectName(c.subject)
			got, ok := parseSubjectName(configMapRef{"default", "mirrors"}, stored)
			if !ok || got != c.subject {
				t.Errorf("name %q: subject %+v stored as %q reads back as %+v, %v", name, c.subject, stored, got, ok)
			}
		}
	}
}
