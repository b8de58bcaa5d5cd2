package policy

import (
	"fmt"

	"go.yaml.in/yaml/v3"
)

// RouteBackend is one Service a routing rule sends a share of its matching
// requests to, instead of the stable version (the application behind the
// sidecar).
type RouteBackend struct {
	// Name is unique within the policy; `shadowplane set ns/policy
	// <name>=<weight>` uses it. Defaults to the Service's name.
	Name string
	// Service in the policy's namespace, and which of its ports.
	Service string
	Port    PortRef
	// PartsPerMillion is the share of matching requests routed here:
	// weight × 10,000, like Mirror.PartsPerMillion. The shares of a rule
	// sum to at most 1,000,000; the rest stays on the stable version.
	PartsPerMillion uint32
}

// MaxRouteBackendsPerPolicy is the most routeTo backends one policy may have.
const MaxRouteBackendsPerPolicy = 8

var routeBackendFields = []string{"service", "port", "name", "weight"}

// RouteRuntimePrefix is the runtime key prefix of a routing rule's weights:
// Envoy reads each backend's weight at "<prefix>.<cluster name>", and the
// stable version's at "<prefix>.<local app cluster name>".
func RouteRuntimePrefix(p *Policy) string {
	return "shadowplane." + p.Namespace + "." + p.Name + ".routeTo"
}

// parseRouteTo reads the optional routeTo list. With one backend the weight
// may be left out and means 100 (all matching requests: a marker route);
// with several, each needs one. ownTargetKnown is as for parseMirrors.
func (p *policyParser) parseRouteTo(path string, n *yaml.Node, pol *Policy, ownTargetKnown bool) []RouteBackend {
	items, ok := optionalSequence(p, path, n)
	if !ok || absentNode(n) {
		return nil
	}
	switch {
	case len(items) == 0:
		p.fail(path, n, "must list at least one backend, e.g. - {service: entrance-v2, weight: 5}; to send nothing there, set weight: 0")
		return nil
	case len(items) > MaxRouteBackendsPerPolicy:
		p.fail(path, n, "holds %d backends, more than the limit of %d per policy", len(items), MaxRouteBackendsPerPolicy)
		return nil
	}
	var out []RouteBackend
	nameOwner := map[string]int{}
	targetOwner := map[string]int{}
	var total uint64
	for i, item := range items {
		itemPath := indexPath(path, i)
		b, ok := p.parseRouteBackend(itemPath, item, pol, ownTargetKnown, len(items) == 1)
		if !ok {
			continue
		}
		if first, dup := nameOwner[b.Name]; dup {
			p.fail(joinPath(itemPath, "name"), item, "backend name %q is already used by %s: give each backend its own \"name\"", b.Name, indexPath(path, first))
			continue
		}
		target := b.Service + ":" + b.Port.String()
		if first, dup := targetOwner[target]; dup {
			p.fail(itemPath, item, "routes to the same Service and port as %s: merge the two into one backend with the sum of their weights", indexPath(path, first))
			continue
		}
		nameOwner[b.Name], targetOwner[target] = i, i
		total += uint64(b.PartsPerMillion)
		out = append(out, b)
	}
	if total > 1_000_000 {
		p.fail(path, n, "the weights add up to %s %%, more than 100: each weight is the percent of matching requests a backend gets, and the rest stays on the stable version",
			formatPPM(total))
		return nil
	}
	return out
}

func (p *policyParser) parseRouteBackend(path string, n *yaml.Node, pol *Policy, ownTargetKnown, only bool) (RouteBackend, bool) {
	fields, ok := mappingFields(p, path, n, routeBackendFields...)
	if !ok {
		return RouteBackend{}, false
	}
	before := len(p.k.errs)
	var b RouteBackend
	if absentNode(fields["service"]) {
		p.fail(joinPath(path, "service"), n, "is required: the Service in namespace %q that gets the routed requests, e.g. entrance-v2", pol.Namespace)
	} else {
		b.Service, _ = parseName(p, joinPath(path, "service"), fields["service"], serviceName)
	}
	b.Port, _ = parsePortRef(p, joinPath(path, "port"), fields["port"])
	b.Name = b.Service
	if nameNode := fields["name"]; !absentNode(nameNode) {
		if name, ok := stringValue(p, joinPath(path, "name"), nameNode); ok {
			if explicitMirrorNameRE.MatchString(name) {
				b.Name = name
			} else {
				p.fail(joinPath(path, "name"), nameNode, "must be 1 to 63 characters of a-z, 0-9, \"-\" and \"_\", got %s", quoteShort(name))
			}
		}
	}
	weightPath := joinPath(path, "weight")
	switch w := fields["weight"]; {
	case absentNode(w) && only:
		b.PartsPerMillion = 1_000_000
	case absentNode(w):
		p.fail(weightPath, n, "is required when routeTo lists several backends: the percent of matching requests this backend gets, from 0 to 100")
	default:
		ppm, problem := parsePercent(w)
		if problem != "" {
			p.fail(weightPath, w, "%s", problem)
		}
		b.PartsPerMillion = ppm
	}
	if ownTargetKnown && b.Service == pol.Service && b.Port == pol.Port {
		p.fail(path, fields["service"], "routes to the policy's own Service %q and port, which is the stable version the rest of the requests stay on: route to another Service (e.g. %q)",
			pol.Namespace+"/"+pol.Service, pol.Service+"-v2")
	}
	return b, len(p.k.errs) == before
}

// formatPPM renders parts per million as a percent with up to 4 decimals.
func formatPPM(ppm uint64) string {
	s := fmt.Sprintf("%d.%04d", ppm/10000, ppm%10000)
	for s[len(s)-1] == '0' {
		s = s[:len(s)-1]
	}
	return trimDot(s)
}

func trimDot(s string) string {
	if s[len(s)-1] == '.' {
		return s[:len(s)-1]
	}
	return s
}
