package policy

import (
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"unicode"

	"go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/util/validation"
)

// TLSObjectLabel labels the Secrets (client certificates) and ConfigMaps (CA
// bundles) that mirror targets may use. The control plane reads no other
// Secret: its informer asks the API server for labelled ones only.
const TLSObjectLabel = "shadowplane.io/mirror-tls"

// DefaultCAKey is the ConfigMap key read for a CA bundle when caKey is not
// given, as in cert-manager's and Kubernetes' own CA ConfigMaps.
const DefaultCAKey = "ca.crt"

// MirrorTLS is how the copies reach an https URL target: which CA vouches
// for it, which client certificate they present and which SNI they send.
// The certificate is always verified; nothing here can switch that off.
type MirrorTLS struct {
	// SNI is the server name sent in the TLS handshake, and the name the
	// target's certificate must carry; "" means the URL's host.
	SNI string
	// CAConfigMap names a ConfigMap in the policy's namespace, labelled
	// TLSObjectLabel, whose CAKey holds the PEM CA bundle the target's
	// certificate must chain to; "" means the system trust store.
	CAConfigMap string
	CAKey       string
	// ClientCertSecret names a kubernetes.io/tls Secret in the policy's
	// namespace, labelled TLSObjectLabel, whose certificate the copies
	// present; "" means none.
	ClientCertSecret string
}

var mirrorTLSFields = []string{"sni", "caConfigMap", "caKey", "clientCertSecret"}

// objectName is the rule of ConfigMap and Secret names.
var objectName = nameRule{
	check: validation.IsDNS1123Subdomain,
	rule:  `a Kubernetes object name: up to 253 characters of a-z, 0-9, "-" and ".", starting and ending with a letter or digit`,
}

// parseMirrorTLSAndHost reads a mirror's optional "tls" and "host" fields.
// It runs after the target is parsed: tls needs to know it is an https URL.
func (p *policyParser) parseMirrorTLSAndHost(path string, fields map[string]*yaml.Node, m *Mirror) {
	if n := fields["host"]; !absentNode(n) {
		if host, ok := p.parseAuthority(joinPath(path, "host"), n); ok {
			m.Host = host
		}
	}
	n := fields["tls"]
	if absentNode(n) {
		return
	}
	tlsPath := joinPath(path, "tls")
	switch {
	case m.Service != "":
		p.fail(tlsPath, n, "applies only to https url targets: a Service target is reached inside the cluster, in clear text")
		return
	case m.URL != nil && m.URL.Scheme != "https":
		p.fail(tlsPath, n, "applies only to https url targets: write the url as https://%s", m.URL.Authority())
		return
	}
	if problem := insecureFieldProblem(n); problem != "" {
		p.fail(tlsPath, n, "%s", problem)
		return
	}
	tf, ok := mappingFields(p, tlsPath, n, mirrorTLSFields...)
	if !ok {
		return
	}
	var t MirrorTLS
	if v := tf["sni"]; !absentNode(v) {
		t.SNI, _ = p.parseServerName(joinPath(tlsPath, "sni"), v)
	}
	if v := tf["caConfigMap"]; !absentNode(v) {
		t.CAConfigMap, _ = parseName(p, joinPath(tlsPath, "caConfigMap"), v, objectName)
	}
	if v := tf["caKey"]; !absentNode(v) {
		keyPath := joinPath(tlsPath, "caKey")
		if key, ok := stringValue(p, keyPath, v); ok {
			switch {
			case absentNode(tf["caConfigMap"]):
				p.fail(keyPath, v, "needs caConfigMap: name the ConfigMap that holds the CA bundle")
			case len(validation.IsConfigMapKey(key)) > 0:
				p.fail(keyPath, v, "must be a ConfigMap key (letters, digits, \"-\", \"_\" and \".\"), got %s", quoteShort(key))
			default:
				t.CAKey = key
			}
		}
	}
	if t.CAConfigMap != "" && t.CAKey == "" {
		t.CAKey = DefaultCAKey
	}
	if v := tf["clientCertSecret"]; !absentNode(v) {
		t.ClientCertSecret, _ = parseName(p, joinPath(tlsPath, "clientCertSecret"), v, objectName)
	}
	if t == (MirrorTLS{}) {
		p.fail(tlsPath, n, "is empty: set caConfigMap, clientCertSecret or sni, or remove tls (https targets are verified against the system trust store by default)")
		return
	}
	m.TLS = &t
}

// insecureFieldProblem refuses, with a message of its own, any attempt to
// switch certificate verification off, rather than a bare "unknown field".
func insecureFieldProblem(n *yaml.Node) string {
	if n.Kind != yaml.MappingNode {
		return ""
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		name := strings.ToLower(fieldNoise.Replace(n.Content[i].Value))
		if strings.Contains(name, "insecure") || strings.Contains(name, "skipverify") || strings.Contains(name, "noverify") {
			return fmt.Sprintf("%s: certificate verification cannot be turned off; give the CA that signed the target's certificate with caConfigMap instead",
				quoteShort(n.Content[i].Value))
		}
	}
	return ""
}

// parseServerName reads an SNI: a DNS name (TLS sends no IP addresses as
// SNI), lower-cased.
func (p *policyParser) parseServerName(path string, n *yaml.Node) (string, bool) {
	s, ok := stringValue(p, path, n)
	if !ok {
		return "", false
	}
	s = strings.ToLower(strings.TrimSuffix(s, "."))
	if net.ParseIP(s) != nil || !isDNSName(s) {
		p.fail(path, n, "must be a DNS host name such as entrance.staging.example.com (TLS sends no IP address as SNI), got %s", quoteShort(s))
		return "", false
	}
	return s, true
}

// parseAuthority reads the Host (HTTP/2 :authority) given to copies:
// host[:port], the host a DNS name or an IP ([...] for IPv6), lower-cased.
func (p *policyParser) parseAuthority(path string, n *yaml.Node) (string, bool) {
	s, ok := stringValue(p, path, n)
	if !ok {
		return "", false
	}
	const shape = "must be host or host:port, e.g. entrance.staging.example.com"
	if s == "" || strings.IndexFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		p.fail(path, n, "%s, without spaces or control characters, got %s", shape, quoteShort(s))
		return "", false
	}
	u, err := url.Parse("http://" + s)
	if err != nil || u.Host != s || u.User != nil || u.Path != "" || u.RawQuery != "" || u.Fragment != "" {
		p.fail(path, n, "%s, got %s", shape, quoteShort(s))
		return "", false
	}
	host := strings.ToLower(u.Hostname())
	if problem := checkURLHost(host); problem != "" {
		p.fail(path, n, "%s", strings.Replace(problem, "e.g. http://10.16.0.147:8080", "e.g. entrance.staging.example.com", 1))
		return "", false
	}
	if port := u.Port(); port != "" || strings.HasSuffix(s, ":") {
		if num, err := strconv.Atoi(port); err != nil || len(validation.IsValidPortNum(num)) > 0 {
			p.fail(path, n, "port must be from 1 to 65535, got %s", quoteShort(port))
			return "", false
		}
	}
	return strings.ToLower(s), true
}

// Authority is the Host of copies sent to the target unless a mirror sets
// its own: the URL's host, with the port when it is not the scheme's
// default.
func (u *URLTarget) Authority() string {
	if (u.Scheme == "http" && u.Port == 80) || (u.Scheme == "https" && u.Port == 443) || u.Port == 0 {
		if strings.Contains(u.Host, ":") { // IPv6 literal
			return "[" + u.Host + "]"
		}
		return u.Host
	}
	return net.JoinHostPort(u.Host, strconv.Itoa(int(u.Port)))
}
