package policy

import (
	"fmt"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/api/resource"
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

// byteSizeRule says how sizes are written: as Kubernetes quantities, read by
// apimachinery, so they mean what they mean in a Pod's resources.
var byteSizeRule = fmt.Sprintf(`must be a size from %s to %s written as a Kubernetes quantity: a whole number of bytes, or a number with the suffix Ki or Mi (powers of 1024, e.g. "512Ki", "16Mi") or k or M (powers of 1000, e.g. "1M" = 1000000 bytes) (leave it out for the default, %s)`,
	byteQuantity(minMaxBodyBytes), byteQuantity(maxMaxBodyBytes), byteQuantity(DefaultMaxBodyBytes))

// byteQuantity writes a size the way Kubernetes does, in the largest binary
// unit that divides it: 4194304 is "4Mi".
func byteQuantity(b int64) string { return resource.NewQuantity(b, resource.BinarySI).String() }

// parseByteSize reads a size in bytes, written as a Kubernetes quantity
// ("512Ki", "16Mi", "1M", "1048576"). Its value must be a whole number of
// bytes within the bounds: "1.5Mi" is 1572864 bytes and fine, "0.5" is
// not, and the milli suffix ("100m") is refused outright, being a typo for M.
func (p *policyParser) parseByteSize(path string, n *yaml.Node) uint32 {
	if n.Kind == yaml.AliasNode {
		p.fail(path, n, "%s", aliasProblem(n))
		return 0
	}
	if n.Kind != yaml.ScalarNode || (n.ShortTag() != tagStr && n.ShortTag() != tagInt && n.ShortTag() != tagFloat) {
		p.fail(path, n, "%s, got %s", byteSizeRule, describeNode(n))
		return 0
	}
	q, err := resource.ParseQuantity(n.Value)
	switch {
	case err != nil:
		p.fail(path, n, "%s, got %s", byteSizeRule, describeNode(n))
	case q.Sign() < 0:
		p.fail(path, n, "%s, got %s: a size cannot be negative", byteSizeRule, describeNode(n))
	case q.Cmp(*resource.NewQuantity(maxMaxBodyBytes, resource.BinarySI)) > 0:
		p.fail(path, n, "%s, got %s: that is more than %s", byteSizeRule, describeNode(n), byteQuantity(maxMaxBodyBytes))
	case strings.HasSuffix(n.Value, "m"):
		p.fail(path, n, "%s, got %s: the suffix m means thousandths, which a size in bytes has no use for; for megabytes write M (1000000 bytes) or Mi (1048576 bytes)", byteSizeRule, describeNode(n))
	case q.Cmp(*resource.NewQuantity(q.Value(), resource.BinarySI)) != 0:
		// Value rounds up, so only a whole number of bytes survives the
		// round trip.
		p.fail(path, n, "%s, got %s: that is not a whole number of bytes", byteSizeRule, describeNode(n))
	case q.Value() < minMaxBodyBytes:
		p.fail(path, n, "%s, got %s: that is less than %s", byteSizeRule, describeNode(n), byteQuantity(minMaxBodyBytes))
	default:
		return uint32(q.Value())
	}
	return 0
}
