package watcher

import (
	"strings"
	"testing"

	"github.com/shadowplane/shadowplane/policy"
)

// keyOf makes a parsed key of n valid policies and one invalid entry when
// invalid is set.
func keyOf(key string, n int, invalid bool) parsedKey {
	k := parsedKey{source: keySource{Namespace: "default", ConfigMap: "mirrors", Key: key}}
	for i := range n {
		k.policies = append(k.policies, &policy.Policy{Namespace: "default", Name: key + string(rune('a'+i%26)), Source: policy.Source{ConfigMap: "mirrors", Key: key, Index: i}})
	}
	if invalid {
		k.errs = append(k.errs, &policy.PolicyError{Index: n, Message: "bad"})
	}
	return k
}

func TestApplyCaps(t *testing.T) {
	tests := []struct {
		name        string
		keys        []parsedKey
		wantCapped  []bool
		wantMessage string
	}{
		{"within both caps", []parsedKey{keyOf("a.yaml", MaxPoliciesPerKey, false), keyOf("b.yaml", 50, false)}, []bool{false, false}, ""},
		{"an invalid entry counts", []parsedKey{keyOf("a.yaml", MaxPoliciesPerKey, true)}, []bool{true}, "holds 101 policies, more than the 100 one key may hold"},
		{"one key over", []parsedKey{keyOf("a.yaml", MaxPoliciesPerKey+1, false), keyOf("b.yaml", 1, false)}, []bool{true, false}, "split them across keys"},
		{"the ConfigMap over", []parsedKey{keyOf("a.yaml", 100, false), keyOf("b.yaml", 100, false), keyOf("c.yaml", 1, false)}, []bool{true, true, true},
			"ConfigMap mirrors holds 201 policies across its keys, more than the 200"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			applyCaps(tc.keys)
			for i, k := range tc.keys {
				capped := len(k.policies) == 0 && len(k.errs) == 1 && k.errs[0].KeyWide()
				if capped != tc.wantCapped[i] {
					t.Errorf("key %s capped = %v, want %v", k.source.Key, capped, tc.wantCapped[i])
				}
				if capped && !strings.Contains(k.errs[0].Error(), tc.wantMessage) {
					t.Errorf("key %s: %q, want it to contain %q", k.source.Key, k.errs[0].Error(), tc.wantMessage)
				}
			}
		})
	}
}
