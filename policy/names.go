package policy

import (
	"strconv"

	"go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/util/validation"
)

// nameRule is a kind of Kubernetes name: the check the API server applies to
// it (from apimachinery, so the parser never drifts from Kubernetes) and the
// rule in words for messages.
type nameRule struct {
	check func(string) []string
	rule  string
}

var (
	// dnsLabel is the rule of namespace names; policy names follow it too,
	// as they become part of runtime keys and Event messages.
	dnsLabel = nameRule{
		check: validation.IsDNS1123Label,
		rule:  `a lower-case DNS label: 1 to 63 characters of a-z, 0-9 and "-", starting and ending with a letter or digit`,
	}
	// serviceName is the stricter rule of Service names (RFC 1035): a name
	// starting with a digit can never name a Service.
	serviceName = nameRule{
		check: validation.IsDNS1035Label,
		rule:  `a Service name (a lower-case RFC 1035 label): 1 to 63 characters of a-z, 0-9 and "-", starting with a letter and ending with a letter or digit`,
	}
)

func (nr nameRule) valid(s string) bool { return len(nr.check(s)) == 0 }

const portRule = `a port name (1 to 15 characters of a-z, 0-9 and "-" with at least one letter, e.g. "http") or a port number from 1 to 65535`

// parseName reads a field that names a Kubernetes object.
func parseName(r reporter, path string, n *yaml.Node, nr nameRule) (string, bool) {
	s, ok := stringValue(r, path, n)
	if !ok {
		return "", false
	}
	if !nr.valid(s) {
		r.fail(path, n, "must be %s, got %s", nr.rule, quoteShort(s))
		return "", false
	}
	return s, true
}

// parsePortRef reads an optional Service port reference: a name or a
// number. Quoted digits are taken as a number, as Kubernetes does for
// intstr ports.
func parsePortRef(r reporter, path string, n *yaml.Node) (PortRef, bool) {
	if absentNode(n) {
		return PortRef{}, true
	}
	if n.Kind == yaml.ScalarNode && (n.ShortTag() == tagInt || n.ShortTag() == tagFloat) {
		v, ok := intValue(r, path, n, 1, 65535, "")
		return PortRef{Number: int32(v)}, ok
	}
	s, ok := stringValue(r, path, n)
	if !ok {
		return PortRef{}, false
	}
	if plainDecimalRE.MatchString(s) {
		v, err := strconv.Atoi(s)
		if err != nil || len(validation.IsValidPortNum(v)) != 0 {
			r.fail(path, n, "must be %s, got %s", portRule, quoteShort(s))
			return PortRef{}, false
		}
		return PortRef{Number: int32(v)}, true
	}
	if len(validation.IsValidPortName(s)) != 0 {
		r.fail(path, n, "must be %s, got %s", portRule, quoteShort(s))
		return PortRef{}, false
	}
	return PortRef{Name: s}, true
}
