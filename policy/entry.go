package policy

import (
	"fmt"

	"go.yaml.in/yaml/v3"
)

// policyFields are the fields of one policy, in the order the docs list them.
var policyFields = []string{"name", "service", "port", "match", "mirrors", "routeTo", "copyHeaders", "markCopies", "hostSuffix", "guard"}

// policyParser parses one entry of the policies list. It keeps going after
// a problem so that one pass reports every problem of the policy.
type policyParser struct {
	k     *keyParser
	index int
	node  *yaml.Node
	// name is the policy's name as written, for attributing problems even
	// when the name itself or other fields are broken.
	name   string
	failed bool
}

func (p *policyParser) fail(field string, n *yaml.Node, format string, args ...any) {
	p.failed = true
	p.k.errs = append(p.k.errs, p.k.newError(p.name, p.index, field, n, fmt.Sprintf(format, args...)))
}

func (p *policyParser) line(n *yaml.Node) int { return p.k.line(n) }

// peekName finds a policy's name before anything else is checked.
func peekName(item *yaml.Node) string {
	if n := nameNode(item); n != nil && n.Kind == yaml.ScalarNode && !isNullNode(n) {
		return n.Value
	}
	return ""
}

// nameNode is the value node of a policy's "name" field, nil without one.
func nameNode(item *yaml.Node) *yaml.Node {
	if item.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(item.Content); i += 2 {
		if item.Content[i].Kind == yaml.ScalarNode && item.Content[i].Value == "name" {
			return item.Content[i+1]
		}
	}
	return nil
}

// parse returns the policy, or nil when it has any problem.
func (p *policyParser) parse() *Policy {
	fields, ok := mappingFields(p, "", p.node, policyFields...)
	if !ok {
		return nil
	}
	pol := &Policy{
		Namespace:  p.k.namespace,
		Source:     Source{ConfigMap: p.k.configMap, Key: p.k.key, Index: p.index},
		MarkCopies: true,
	}
	if absentNode(fields["name"]) {
		p.fail("name", p.node, "is required: give every policy a unique name, %s such as \"entrance-to-staging\"", dnsLabel.rule)
	} else if name, ok := parseName(p, "name", fields["name"], dnsLabel); ok {
		pol.Name = name
	}
	if absentNode(fields["service"]) {
		p.fail("service", p.node, "is required: name the Service in namespace %q whose incoming requests are copied", p.k.namespace)
	} else if svc, ok := parseName(p, "service", fields["service"], serviceName); ok {
		pol.Service = svc
	}
	port, portOK := parsePortRef(p, "port", fields["port"])
	pol.Port = port
	pol.Match = p.parseMatch("match", fields["match"])
	// A mirror onto the policy's own Service and port is only detectable
	// once both are known to be valid.
	ownTargetKnown := pol.Service != "" && portOK
	if absentNode(fields["mirrors"]) && absentNode(fields["routeTo"]) {
		p.fail("mirrors", p.node, "is required unless the policy routes: list at least one copy target, e.g. - {service: entrance-shadow, percent: 10}, or route with routeTo: - {service: entrance-v2, weight: 5}")
	} else if !absentNode(fields["mirrors"]) {
		pol.Mirrors = p.parseMirrors("mirrors", fields["mirrors"], pol, ownTargetKnown)
	}
	pol.RouteTo = p.parseRouteTo("routeTo", fields["routeTo"], pol, ownTargetKnown)
	pol.CopyHeaders = p.parseCopyHeaders("copyHeaders", fields["copyHeaders"])
	if n := fields["markCopies"]; !absentNode(n) {
		pol.MarkCopies, _ = boolValue(p, "markCopies", n)
	}
	if n := fields["hostSuffix"]; !absentNode(n) {
		pol.HostSuffix, _ = boolValue(p, "hostSuffix", n)
	}
	pol.Guard = p.parseGuard("guard", fields["guard"])
	if p.failed {
		return nil
	}
	return pol
}
