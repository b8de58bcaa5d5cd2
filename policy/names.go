package policy

import (
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// isDNSLabel reports whether s is an RFC 1123 label as Kubernetes uses for
// names: 1 to 63 characters of a-z, 0-9 and "-", starting and ending with a
// letter or digit.
func isDNSLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case c == '-' && i > 0 && i < len(s)-1:
		default:
			return false
		}
	}
	return true
}

const dnsLabelRule = `a lower-case DNS label: 1 to 63 characters of a-z, 0-9 and "-", starting and ending with a letter or digit`

// isPortName reports whether s is a valid Service port name (IANA_SVC_NAME):
// 1 to 15 characters of a-z, 0-9 and "-", at least one letter, no "-" at
// either end and no "--".
func isPortName(s string) bool {
	if len(s) == 0 || len(s) > 15 || s[0] == '-' || s[len(s)-1] == '-' || strings.Contains(s, "--") {
		return false
	}
	letter := false
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z':
			letter = true
		case c >= '0' && c <= '9', c == '-':
		default:
			return false
		}
	}
	return letter
}

const portRule = `a port name (1 to 15 characters of a-z, 0-9 and "-" with at least one letter, e.g. "http") or a port number from 1 to 65535`

// parseDNSLabel reads a field that names a Kubernetes object.
func parseDNSLabel(r reporter, path string, n *yaml.Node) (string, bool) {
	s, ok := stringValue(r, path, n)
	if !ok {
		return "", false
	}
	if !isDNSLabel(s) {
		r.fail(path, n, "must be %s, got %s", dnsLabelRule, quoteShort(s))
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
	if v, err := strconv.Atoi(s); err == nil && plainDecimalRE.MatchString(s) {
		if v < 1 || v > 65535 {
			r.fail(path, n, "must be %s, got %s", portRule, quoteShort(s))
			return PortRef{}, false
		}
		return PortRef{Number: int32(v)}, true
	}
	if !isPortName(s) {
		r.fail(path, n, "must be %s, got %s", portRule, quoteShort(s))
		return PortRef{}, false
	}
	return PortRef{Name: s}, true
}
