package policy

import (
	"regexp"
	"strings"

	"go.yaml.in/yaml/v3"
)

var mirrorFields = []string{"service", "namespace", "port", "url", "name", "percent", "host", "tls"}

// explicitMirrorNameRE is what a user-chosen mirror name may look like. Dots
// are left to default names, so the two can never collide.
var explicitMirrorNameRE = regexp.MustCompile(`^[a-z0-9_-]{1,63}$`)

// parseMirrors reads the required, non-empty mirrors list. ownTargetKnown
// says whether pol.Service and pol.Port are valid, so that a mirror onto
// the policy's own Service and port can be caught.
func (p *policyParser) parseMirrors(path string, n *yaml.Node, pol *Policy, ownTargetKnown bool) []Mirror {
	if absentNode(n) {
		p.fail(path, p.node, "is required: list at least one copy target, e.g. - {service: entrance-shadow, percent: 10}")
		return nil
	}
	items, ok := optionalSequence(p, path, n)
	if !ok {
		return nil
	}
	switch {
	case len(items) == 0:
		p.fail(path, n, "must list at least one mirror (a \"service\" or \"url\" target with a \"percent\"); to pause copying, set percent: 0")
		return nil
	case len(items) > MaxMirrorsPerPolicy:
		p.fail(path, n, "holds %d mirrors, more than the limit of %d per policy: split them over several policies", len(items), MaxMirrorsPerPolicy)
		return nil
	}
	var mirrors []Mirror
	nameOwner := map[string]int{}
	for i, item := range items {
		itemPath := indexPath(path, i)
		m, explicitName, ok := p.parseMirror(itemPath, item, pol, ownTargetKnown)
		if !ok {
			continue
		}
		if first, dup := nameOwner[m.Name]; dup {
			field := itemPath
			if explicitName {
				field = joinPath(itemPath, "name")
			}
			p.fail(field, item, "mirror name %q is already used by %s: mirrors need distinct names, so give each of them its own \"name\" (e.g. name: copy-a and name: copy-b)",
				m.Name, indexPath(path, first))
			continue
		}
		nameOwner[m.Name] = i
		mirrors = append(mirrors, m)
	}
	return mirrors
}

// parseMirror reads one mirror; explicitName says whether the user chose
// the mirror's name.
func (p *policyParser) parseMirror(path string, n *yaml.Node, pol *Policy, ownTargetKnown bool) (m Mirror, explicitName, ok bool) {
	fields, ok := mappingFields(p, path, n, mirrorFields...)
	if !ok {
		return Mirror{}, false, false
	}
	before := len(p.k.errs)
	svcNode, urlNode := fields["service"], fields["url"]
	switch {
	case !absentNode(svcNode) && !absentNode(urlNode):
		p.fail(path, n, "set either \"service\" (a Service in the cluster) or \"url\" (a target outside it), not both")
	case !absentNode(svcNode):
		p.parseServiceTarget(path, fields, &m, pol, ownTargetKnown)
	case !absentNode(urlNode):
		p.parseURLMirror(path, fields, &m)
	default:
		p.fail(path, n, "needs a target: set \"service\" (a Service in the cluster) or \"url\" (a target outside it, e.g. http://10.16.0.147:8080)")
	}
	if nameNode := fields["name"]; !absentNode(nameNode) {
		explicitName = true
		if name, ok := stringValue(p, joinPath(path, "name"), nameNode); ok {
			if explicitMirrorNameRE.MatchString(name) {
				m.Name = name
			} else {
				p.fail(joinPath(path, "name"), nameNode, "must be 1 to 63 characters of a-z, 0-9, \"-\" and \"_\", got %s", quoteShort(name))
			}
		}
	}
	if len(p.k.errs) == before {
		p.parseMirrorTLSAndHost(path, fields, &m)
	}
	percentPath := joinPath(path, "percent")
	if absentNode(fields["percent"]) {
		p.fail(percentPath, n, "is required: the share of matching requests to copy, a number from 0 to 100 (0 pauses the mirror)")
	} else if ppm, problem := parsePercent(fields["percent"]); problem != "" {
		p.fail(percentPath, fields["percent"], "%s", problem)
	} else {
		m.PartsPerMillion = ppm
	}
	return m, explicitName, len(p.k.errs) == before
}

// parseServiceTarget fills a mirror that copies to a Service in the cluster.
func (p *policyParser) parseServiceTarget(path string, fields map[string]*yaml.Node, m *Mirror, pol *Policy, ownTargetKnown bool) {
	before := len(p.k.errs)
	svc, _ := parseName(p, joinPath(path, "service"), fields["service"], serviceName)
	ns := pol.Namespace
	if n := fields["namespace"]; !absentNode(n) {
		ns, _ = parseName(p, joinPath(path, "namespace"), n, dnsLabel)
	}
	port, _ := parsePortRef(p, joinPath(path, "port"), fields["port"])
	if len(p.k.errs) != before {
		return
	}
	m.Service, m.Namespace, m.Port = svc, ns, port
	m.Name = ns + "." + svc
	if !port.IsZero() {
		m.Name += "." + port.String()
	}
	if ownTargetKnown && ns == pol.Namespace && svc == pol.Service && port == pol.Port {
		p.fail(path, fields["service"], "targets the policy's own Service %q and port, which would copy its requests back onto itself: mirror to another Service (e.g. %q) or another port",
			ns+"/"+svc, svc+"-shadow")
	}
}

// parseURLMirror fills a mirror that copies to a URL outside the cluster.
func (p *policyParser) parseURLMirror(path string, fields map[string]*yaml.Node, m *Mirror) {
	for _, f := range []string{"namespace", "port"} {
		if n := fields[f]; !absentNode(n) {
			p.fail(joinPath(path, f), n, "applies only to service mirrors: a url target carries its port in the URL, e.g. http://10.16.0.147:8080")
		}
	}
	urlPath := joinPath(path, "url")
	raw, ok := stringValue(p, urlPath, fields["url"])
	if !ok {
		return
	}
	target, hostPort, problems := parseURLTarget(raw, p.k.opts)
	for _, problem := range problems {
		p.fail(urlPath, fields["url"], "%s", problem)
	}
	if len(problems) > 0 {
		return
	}
	m.URL = target
	// The default name is the host, plus the port when the URL spells one out.
	m.Name = sanitizeMirrorName(hostPort)
}

// sanitizeMirrorName lower-cases s and replaces every character outside
// [a-z0-9-_.] with "_".
func sanitizeMirrorName(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		case r >= 'A' && r <= 'Z':
			return r + ('a' - 'A')
		default:
			return '_'
		}
	}, s)
}
