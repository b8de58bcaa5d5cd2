package translator

import (
	"fmt"
	"net"
	"sort"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"

	"github.com/shadowplane/shadowplane/internal/contenthash"
	"github.com/shadowplane/shadowplane/policy"
)

// Secrets are served by SDS on the sidecar's authenticated ADS stream, and
// only to the node groups whose clusters name them. Their names stay the
// same when the Secret or ConfigMap behind them is rotated, so a rotation
// changes only the SDS resource: no cluster is rebuilt, no copy dropped.

// clientSecretName names the SDS secret of a Secret's client certificate.
func clientSecretName(namespace, secret string) string {
	return "mirror-client|" + ClientCertificateKey(namespace, secret)
}

// caSecretName names the SDS secret of a CA bundle.
func caSecretName(namespace, configMap, key string) string {
	return "mirror-ca|" + CABundleKey(namespace, configMap, key)
}

// tlsProblem is one reason a mirror's TLS material cannot be used.
type tlsProblem struct {
	field   string // under the mirror, e.g. "tls.clientCertSecret"
	message string
}

// mirrorTLSProblems lists why the CA bundle or client certificate a mirror
// names cannot be used. A mirror with problems gets no copies: sending them
// without the certificate, or trusting another CA, is never an option.
func mirrorTLSProblems(w *World, p *policy.Policy, m policy.Mirror) []tlsProblem {
	t := m.TLS
	if t == nil {
		return nil
	}
	var out []tlsProblem
	if t.CAConfigMap != "" {
		switch ca := w.caBundle(p.Namespace, t.CAConfigMap, t.CAKey); {
		case ca == nil:
			out = append(out, tlsProblem{"tls.caConfigMap", fmt.Sprintf("ConfigMap %q has no key %q, does not exist, or lacks the label %s: \"true\"",
				p.Namespace+"/"+t.CAConfigMap, t.CAKey, policy.TLSObjectLabel)})
		case ca.Problem != "":
			out = append(out, tlsProblem{"tls.caConfigMap", fmt.Sprintf("ConfigMap %q key %q: %s", p.Namespace+"/"+t.CAConfigMap, t.CAKey, ca.Problem)})
		}
	}
	if t.ClientCertSecret != "" {
		switch cert := w.clientCertificate(p.Namespace, t.ClientCertSecret); {
		case cert == nil:
			out = append(out, tlsProblem{"tls.clientCertSecret", fmt.Sprintf("Secret %q does not exist or lacks the label %s: \"true\"",
				p.Namespace+"/"+t.ClientCertSecret, policy.TLSObjectLabel)})
		case cert.Problem != "":
			out = append(out, tlsProblem{"tls.clientCertSecret", fmt.Sprintf("Secret %q: %s", p.Namespace+"/"+t.ClientCertSecret, cert.Problem)})
		}
	}
	return out
}

// noCopiesSuffix ends every TLS problem message.
const noCopiesSuffix = "; no copies go to this mirror until it is fixed (the primary is not affected)"

// CheckMirrorTLS checks the CA bundles and client certificates a policy's
// mirrors name against the World. Each problem is a Warning: the policy
// stays in force, its other mirrors keep copying, and the mirror resumes
// once the Secret or ConfigMap is fixed.
func CheckMirrorTLS(p *policy.Policy, w *World) []*policy.PolicyError {
	var errs []*policy.PolicyError
	for i, m := range p.Mirrors {
		for _, problem := range mirrorTLSProblems(w, p, m) {
			errs = append(errs, &policy.PolicyError{
				Namespace: p.Namespace, ConfigMap: p.Source.ConfigMap, Key: p.Source.Key,
				Policy: p.Name, Index: p.Source.Index,
				Field:   fmt.Sprintf("mirrors[%d].%s", i, problem.field),
				Message: problem.message + noCopiesSuffix, Warning: true,
			})
		}
	}
	return errs
}

// usableMirror reports whether a mirror's TLS material can be used, and
// records a warning for each problem when it cannot.
func (t *translation) usableMirror(p *policy.Policy, m policy.Mirror) bool {
	problems := mirrorTLSProblems(t.world, p, m)
	for _, problem := range problems {
		t.warnf("policy %s: mirror %s: %s%s", policyID(p), m.Name, problem.message, noCopiesSuffix)
	}
	return len(problems) == 0
}

// tlsClusterSuffix tells apart the clusters of one URL reached with
// different TLS settings; "" without any.
func tlsClusterSuffix(namespace string, t *policy.MirrorTLS) string {
	if t == nil {
		return ""
	}
	var owner []byte
	if t.CAConfigMap != "" || t.ClientCertSecret != "" {
		// The objects named are those of the policy's namespace.
		owner = []byte(namespace)
	}
	return "|tls-" + contenthash.Of(owner, []byte(t.SNI), []byte(t.CAConfigMap), []byte(t.CAKey), []byte(t.ClientCertSecret))[:12]
}

// upstreamTLS verifies an https target's certificate against the target's
// CA bundle (by SDS) or the system trust store, and against its name: the
// SNI override, else the URL's host (a DNS name, or an IP address SAN for an
// IP). It sends that name as SNI unless it is an IP, and presents the
// client certificate (by SDS) when the target names one. There is no way to
// skip verification.
func upstreamTLS(host, namespace string, t *policy.MirrorTLS) *tlsv3.UpstreamTlsContext {
	name := host
	if t != nil && t.SNI != "" {
		name = t.SNI
	}
	sanType := tlsv3.SubjectAltNameMatcher_DNS
	sni := name
	if net.ParseIP(name) != nil {
		sanType = tlsv3.SubjectAltNameMatcher_IP_ADDRESS
		sni = ""
	}
	names := &tlsv3.CertificateValidationContext{
		MatchTypedSubjectAltNames: []*tlsv3.SubjectAltNameMatcher{{
			SanType: sanType,
			Matcher: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: name}},
		}},
	}
	common := &tlsv3.CommonTlsContext{}
	if t != nil && t.CAConfigMap != "" {
		common.ValidationContextType = &tlsv3.CommonTlsContext_CombinedValidationContext{
			CombinedValidationContext: &tlsv3.CommonTlsContext_CombinedCertificateValidationContext{
				DefaultValidationContext:         names,
				ValidationContextSdsSecretConfig: sdsSecretConfig(caSecretName(namespace, t.CAConfigMap, t.CAKey)),
			},
		}
	} else {
		names.TrustedCa = &corev3.DataSource{Specifier: &corev3.DataSource_Filename{Filename: systemCABundle}}
		common.ValidationContextType = &tlsv3.CommonTlsContext_ValidationContext{ValidationContext: names}
	}
	if t != nil && t.ClientCertSecret != "" {
		common.TlsCertificateSdsSecretConfigs = []*tlsv3.SdsSecretConfig{sdsSecretConfig(clientSecretName(namespace, t.ClientCertSecret))}
	}
	return &tlsv3.UpstreamTlsContext{Sni: sni, CommonTlsContext: common}
}

func sdsSecretConfig(name string) *tlsv3.SdsSecretConfig {
	return &tlsv3.SdsSecretConfig{Name: name, SdsConfig: adsConfigSource()}
}

// buildSecrets returns the SDS secrets the group's shadow clusters name,
// sorted by name. Only usable material reaches here: mirrors with TLS
// problems got no cluster.
func (t *translation) buildSecrets() []*tlsv3.Secret {
	byName := map[string]*tlsv3.Secret{}
	for _, target := range t.targets {
		tc := target.tls
		if tc == nil {
			continue
		}
		if tc.CAConfigMap != "" {
			name := caSecretName(target.tlsNamespace, tc.CAConfigMap, tc.CAKey)
			ca := t.world.caBundle(target.tlsNamespace, tc.CAConfigMap, tc.CAKey)
			byName[name] = &tlsv3.Secret{Name: name, Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
				TrustedCa: inlineBytes(ca.PEM),
			}}}
		}
		if tc.ClientCertSecret != "" {
			name := clientSecretName(target.tlsNamespace, tc.ClientCertSecret)
			cert := t.world.clientCertificate(target.tlsNamespace, tc.ClientCertSecret)
			byName[name] = &tlsv3.Secret{Name: name, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
				CertificateChain: inlineBytes(cert.CertChain),
				PrivateKey:       inlineBytes(cert.PrivateKey),
			}}}
		}
	}
	out := make([]*tlsv3.Secret, 0, len(byName))
	for _, s := range byName {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func inlineBytes(b []byte) *corev3.DataSource {
	return &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: b}}
}
