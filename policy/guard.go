package policy

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

var guardFields = []string{"connectTimeout", "maxConnections", "maxPendingRequests", "maxRequests", "maxBodyBytes"}

// Bounds of the guard fields.
const (
	minConnectTimeout = 10 * time.Millisecond
	maxConnectTimeout = 10 * time.Second
	maxGuardLimit     = 10000
	minMaxBodyBytes   = 1 << 10  // 1Ki
	maxMaxBodyBytes   = 64 << 20 // 64Mi
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
	if f := fields["maxBodyBytes"]; !absentNode(f) {
		g.MaxBodyBytes = p.parseByteSize(joinPath(path, "maxBodyBytes"), f)
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

// parseByteSize reads a size in bytes: a whole number, or a whole number
// with the Kubernetes binary suffix Ki or Mi ("512Ki", "16Mi").
func (p *policyParser) parseByteSize(path string, n *yaml.Node) uint32 {
	want := fmt.Sprintf("must be a size from 1Ki to 64Mi: bytes as a whole number, or with the suffix Ki or Mi such as \"512Ki\" or \"16Mi\" (leave it out for the default, %s)",
		formatByteSize(DefaultMaxBodyBytes))
	if n.Kind == yaml.AliasNode {
		p.fail(path, n, "%s", aliasProblem(n))
		return 0
	}
	if n.Kind != yaml.ScalarNode || (n.ShortTag() != tagStr && n.ShortTag() != tagInt) {
		p.fail(path, n, "%s, got %s", want, describeNode(n))
		return 0
	}
	digits, unit := n.Value, uint64(1)
	switch {
	case strings.HasSuffix(digits, "Ki"):
		digits, unit = strings.TrimSuffix(digits, "Ki"), 1<<10
	case strings.HasSuffix(digits, "Mi"):
		digits, unit = strings.TrimSuffix(digits, "Mi"), 1<<20
	}
	v, err := strconv.ParseUint(digits, 10, 32)
	if err != nil || !plainDecimalRE.MatchString(digits) || v*unit < minMaxBodyBytes || v*unit > maxMaxBodyBytes {
		p.fail(path, n, "%s, got %s", want, describeNode(n))
		return 0
	}
	return uint32(v * unit)
}

// formatByteSize writes a size the way parseByteSize reads it, in the
// largest unit that divides it.
func formatByteSize(b uint32) string {
	switch {
	case b >= 1<<20 && b%(1<<20) == 0:
		return strconv.FormatUint(uint64(b>>20), 10) + "Mi"
	case b >= 1<<10 && b%(1<<10) == 0:
		return strconv.FormatUint(uint64(b>>10), 10) + "Ki"
	}
	return strconv.FormatUint(uint64(b), 10)
}
