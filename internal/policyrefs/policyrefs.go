// Package policyrefs finds the Services a policy depends on. The watcher
// uses it to ignore changes to Services and EndpointSlices that no policy
// names, and the xDS server to rebuild only the node groups a change
// touches; both must agree, so they share this one definition.
package policyrefs

import (
	"encoding/json"
	"slices"

	"github.com/shadowplane/shadowplane/policy"
)

// Services returns "namespace/name" of every Service the policy names: the
// Service it copies from and every Service target, sorted and without
// duplicates. It reads the policy generically, as JSON: any object in it
// with a non-empty "Service" field names a Service, in that object's
// "Namespace" or else the policy's. New kinds of Service targets (routing
// rules, say) are therefore found without a change here, as long as they
// keep those two field names.
func Services(p *policy.Policy) []string {
	b, err := json.Marshal(p)
	if err != nil {
		// Policy holds plain values only; should that change, the policy's
		// own Service is still a safe minimum.
		return []string{p.Namespace + "/" + p.Service}
	}
	var tree any
	if err := json.Unmarshal(b, &tree); err != nil {
		return []string{p.Namespace + "/" + p.Service}
	}
	var out []string
	walk(tree, p.Namespace, &out)
	slices.Sort(out)
	return slices.Compact(out)
}

func walk(v any, namespace string, out *[]string) {
	switch v := v.(type) {
	case map[string]any:
		if svc, ok := v["Service"].(string); ok && svc != "" {
			ns, _ := v["Namespace"].(string)
			if ns == "" {
				ns = namespace
			}
			*out = append(*out, ns+"/"+svc)
		}
		for _, child := range v {
			walk(child, namespace, out)
		}
	case []any:
		for _, child := range v {
			walk(child, namespace, out)
		}
	}
}
