package translator

import (
	"fmt"
	"time"

	"go.yaml.in/yaml/v3"
)

var guardFields = []string{"connectTimeout", "maxConnections", "maxPendingRequests", "maxRequests"}

// Bounds of the guard fields.
const (
	minConnectTimeout = 10 * time.Millisecond
	maxConnectTimeout = 10 * time.Second
	maxGuardLimit     = 10000
)

// parseGuard reads the optional guard overrides. Fields left out stay zero;
// the translator applies Guard.WithDefaults.
func (p *policyParser) parseGuard(path string, n *yaml.Node) Guard {
	var g Guard
	if absentNode(n) {
		return g
	}
	fields, ok := mappingFields(p, path, n, guardFields...)
	if !ok {
		return g
	}
	if f := fields["connectTimeout"]; !absentNode(f) {
		g.ConnectTimeout = p.parseConnectTimeout(joinPath(path, "connectTimeout"), f)
	}
	limits := []struct {
		field string
		dst   *uint32
		def   int
	}{
		{"maxConnections", &g.MaxConnections, DefaultMaxConnections},
		{"maxPendingRequests", &g.MaxPendingRequests, DefaultMaxPendingRequests},
		{"maxRequests", &g.MaxRequests, DefaultMaxRequests},
	}
	for _, l := range limits {
		if f := fields[l.field]; !absentNode(f) {
			hint := fmt.Sprintf(" (leave it out for the default, %d)", l.def)
			if v, ok := intValue(p, joinPath(path, l.field), f, 1, maxGuardLimit, hint); ok {
				*l.dst = uint32(v)
			}
		}
	}
	return g
}

func (p *policyParser) parseConnectTimeout(path string, n *yaml.Node) time.Duration {
	want := fmt.Sprintf("must be a duration from %v to %v such as \"250ms\" or \"1s\" (leave it out for the default, %v)",
		minConnectTimeout, maxConnectTimeout, DefaultConnectTimeout)
	if n.Kind == yaml.AliasNode {
		p.fail(path, n, "%s", aliasProblem(n))
		return 0
	}
	if n.Kind != yaml.ScalarNode || n.ShortTag() != tagStr {
		p.fail(path, n, "%s, got %s", want, describeNode(n))
		return 0
	}
	d, err := time.ParseDuration(n.Value)
	if err != nil || d < minConnectTimeout || d > maxConnectTimeout {
		p.fail(path, n, "%s, got %s", want, quoteShort(n.Value))
		return 0
	}
	return d
}
