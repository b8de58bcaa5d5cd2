package watcher

import (
	"fmt"

	"github.com/shadowplane/shadowplane/policy"
)

// Caps on policies. Every policy is translated for its group and stored,
// in force, in its ConfigMap's last-valid annotation; Kubernetes bounds a
// ConfigMap's annotations to 256 KiB together, and a policy takes about
// half a kilobyte there, so a ConfigMap holds at most 200. Past a cap the
// key (or every key of the ConfigMap) is rejected as a whole and the
// policies last read from it stay in force.
const (
	MaxPoliciesPerKey       = 100
	MaxPoliciesPerConfigMap = 200
)

// entryCount is how many entries a parsed key holds, valid or not.
func entryCount(policies []*policy.Policy, errs []*policy.PolicyError) int {
	seen := map[int]bool{}
	for _, p := range policies {
		seen[p.Source.Index] = true
	}
	for _, e := range errs {
		if e.Index >= 0 {
			seen[e.Index] = true
		}
	}
	return len(seen)
}

// applyCaps rejects, in place, the keys of one ConfigMap that hold more
// than MaxPoliciesPerKey entries, and all its keys when together they hold
// more than MaxPoliciesPerConfigMap.
func applyCaps(keys []parsedKey) {
	total := 0
	for _, k := range keys {
		total += entryCount(k.policies, k.errs)
	}
	for i, k := range keys {
		n := entryCount(k.policies, k.errs)
		switch {
		case total > MaxPoliciesPerConfigMap:
			keys[i] = capped(k, fmt.Sprintf("ConfigMap %s holds %d policies across its keys, more than the %d one ConfigMap may hold; move some to another ConfigMap",
				k.source.ConfigMap, total, MaxPoliciesPerConfigMap))
		case n > MaxPoliciesPerKey:
			keys[i] = capped(k, fmt.Sprintf("the key holds %d policies, more than the %d one key may hold; split them across keys or ConfigMaps", n, MaxPoliciesPerKey))
		}
	}
}

func capped(k parsedKey, message string) parsedKey {
	return parsedKey{source: k.source, errs: []*policy.PolicyError{{
		Namespace: k.source.Namespace, ConfigMap: k.source.ConfigMap, Key: k.source.Key, Index: -1,
		Message: message,
	}}}
}
