package translator

import (
	"slices"
	"strings"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/shadowplane/shadowplane/nodemeta"
	"github.com/shadowplane/shadowplane/policy"
)

// Test material: the translator never parses it, the watcher checks it.
var (
	testClientCert = &ClientCertificate{CertChain: []byte("CERT PEM"), PrivateKey: []byte("KEY PEM")}
	testCABundle   = &CABundle{PEM: []byte("CA PEM")}
)

// crossCluster copies default/entrance to another cluster's gateway with
// a private CA, a client certificate, an SNI and a Host override.
func crossCluster() *policy.Policy {
	return &policy.Policy{
		Namespace: "default", Name: "to-test-cluster",
		Source:  policy.Source{ConfigMap: "mirrors", Key: "policies.yaml"},
		Service: "entrance", Port: policy.PortRef{Name: "http"},
		Mirrors: []policy.Mirror{{
			Name: "gw", PartsPerMillion: 100_000,
			URL:  &policy.URLTarget{Raw: "https://198.18.0.7:8443", Scheme: "https", Host: "198.18.0.7", Port: 8443},
			Host: "entrance.test.example.com",
			TLS: &policy.MirrorTLS{SNI: "gateway.test.example.com", CAConfigMap: "test-ca", CAKey: policy.DefaultCAKey,
				ClientCertSecret: "copier"},
		}},
		MarkCopies: true,
	}
}

// tlsWorld holds toStaging and crossCluster, with usable TLS material.
func tlsWorld() *World {
	w := newWorld([]*Service{entranceService(), stagingService()}, crossCluster(), toStaging())
	w.ClientCertificates = map[string]*ClientCertificate{"default/copier": testClientCert}
	w.CABundles = map[string]*CABundle{"default/test-ca/ca.crt": testCABundle}
	return w
}

const crossClusterName = "shadow-url|https|198.18.0.7|8443"

func clusterWithPrefix(out *Output, prefix string) *tlsv3.UpstreamTlsContext {
	for _, c := range out.Clusters {
		if strings.HasPrefix(c.Name, prefix) {
			ctx := &tlsv3.UpstreamTlsContext{}
			if err := c.GetTransportSocket().GetTypedConfig().UnmarshalTo(ctx); err != nil {
				return nil
			}
			return ctx
		}
	}
	return nil
}

func mirrorPolicies(out *Output) []*routev3.RouteAction_RequestMirrorPolicy {
	var all []*routev3.RouteAction_RequestMirrorPolicy
	for _, r := range out.Routes[0].GetVirtualHosts()[0].GetRoutes() {
		all = append(all, r.GetRoute().GetRequestMirrorPolicies()...)
	}
	return all
}

func TestMirrorTLS(t *testing.T) {
	out := translateValid(t, tlsWorld(), entranceGroup)
	ctx := clusterWithPrefix(out, crossClusterName+"|tls-")
	if ctx == nil {
		t.Fatalf("no TLS cluster %s…; clusters: %v", crossClusterName, out.Clusters)
	}
	if ctx.GetSni() != "gateway.test.example.com" {
		t.Errorf("sni = %q", ctx.GetSni())
	}
	common := ctx.GetCommonTlsContext()
	if refs := common.GetTlsCertificateSdsSecretConfigs(); len(refs) != 1 || refs[0].GetName() != "mirror-client|default/copier" || refs[0].GetSdsConfig().GetAds() == nil {
		t.Errorf("client certificate refs = %v, want mirror-client|default/copier over ADS", refs)
	}
	combined := common.GetCombinedValidationContext()
	if ref := combined.GetValidationContextSdsSecretConfig(); ref.GetName() != "mirror-ca|default/test-ca/ca.crt" || ref.GetSdsConfig().GetAds() == nil {
		t.Errorf("CA ref = %v", ref)
	}
	sans := combined.GetDefaultValidationContext().GetMatchTypedSubjectAltNames()
	if len(sans) != 1 || sans[0].GetSanType() != tlsv3.SubjectAltNameMatcher_DNS || sans[0].GetMatcher().GetExact() != "gateway.test.example.com" {
		t.Errorf("verified names = %v, want the SNI", sans)
	}
	if combined.GetDefaultValidationContext().GetTrustedCa() != nil {
		t.Error("the system trust store is trusted beside the private CA")
	}

	if len(out.Secrets) != 2 {
		t.Fatalf("secrets = %v, want the CA and the client certificate", out.Secrets)
	}
	ca, cert := out.Secrets[0], out.Secrets[1]
	if string(ca.GetValidationContext().GetTrustedCa().GetInlineBytes()) != "CA PEM" ||
		string(cert.GetTlsCertificate().GetPrivateKey().GetInlineBytes()) != "KEY PEM" ||
		string(cert.GetTlsCertificate().GetCertificateChain().GetInlineBytes()) != "CERT PEM" {
		t.Errorf("secrets carry the wrong material: %v / %v", ca.GetName(), cert.GetName())
	}

	var hosts []string
	for _, m := range mirrorPolicies(out) {
		hosts = append(hosts, m.GetHostRewriteLiteral())
	}
	if !slices.Contains(hosts, "entrance.test.example.com") {
		t.Errorf("host rewrites = %q, want entrance.test.example.com", hosts)
	}
}

// TestMirrorTLSUnusable: a mirror whose Secret or CA is missing or invalid
// gets no copies (no mirror policy, cluster or secret) and a warning; the
// primary route and the policy's other mirrors are untouched.
func TestMirrorTLSUnusable(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(w *World)
		wants string
	}{
		{"missing Secret", func(w *World) { w.ClientCertificates = nil }, `Secret "default/copier" does not exist or lacks the label shadowplane.io/mirror-tls: "true"`},
		{"invalid Secret", func(w *World) {
			w.ClientCertificates["default/copier"] = &ClientCertificate{Problem: "the certificate expired at 2026-01-01T00:00:00Z"}
		}, `Secret "default/copier": the certificate expired at 2026-01-01T00:00:00Z`},
		{"missing CA key", func(w *World) { w.CABundles = map[string]*CABundle{"default/test-ca/other.crt": testCABundle} },
			`ConfigMap "default/test-ca" has no key "ca.crt"`},
		{"invalid CA", func(w *World) { w.CABundles["default/test-ca/ca.crt"] = &CABundle{Problem: "holds no PEM certificate"} },
			`ConfigMap "default/test-ca" key "ca.crt": holds no PEM certificate`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := tlsWorld()
			tt.edit(w)
			out := translateValid(t, w, entranceGroup)
			if ctx := clusterWithPrefix(out, crossClusterName); ctx != nil {
				t.Error("the unusable mirror still has a cluster")
			}
			if len(out.Secrets) != 0 {
				t.Errorf("secrets = %v, want none", out.Secrets)
			}
			mirrors := mirrorPolicies(out)
			if len(mirrors) != 1 || !strings.HasPrefix(mirrors[0].GetCluster(), "shadow|staging|entrance") {
				t.Errorf("mirror policies = %v, want only the staging one", mirrors)
			}
			if len(out.Warnings) != 1 || !strings.Contains(out.Warnings[0], tt.wants) || !strings.Contains(out.Warnings[0], "no copies go to this mirror until it is fixed") {
				t.Errorf("warnings = %q, want one containing %q", out.Warnings, tt.wants)
			}
			errs := CheckMirrorTLS(crossCluster(), w)
			if len(errs) != 1 || !errs[0].Warning || !strings.HasPrefix(errs[0].Field, "mirrors[0].tls.") || !strings.Contains(errs[0].Message, tt.wants) {
				t.Errorf("CheckMirrorTLS = %v", errs)
			}
		})
	}
	if errs := CheckMirrorTLS(crossCluster(), tlsWorld()); len(errs) != 0 {
		t.Errorf("CheckMirrorTLS with usable material = %v", errs)
	}
}

// TestSecretRotationChangesOnlySecrets: rotating a certificate or a CA
// bundle re-sends the secrets alone; clusters, routes and listeners keep
// their versions, so Envoy swaps the material without rebuilding or
// draining anything.
func TestSecretRotationChangesOnlySecrets(t *testing.T) {
	before := translateValid(t, tlsWorld(), entranceGroup)
	for _, tt := range []struct {
		name string
		edit func(w *World)
	}{
		{"client certificate", func(w *World) {
			w.ClientCertificates["default/copier"] = &ClientCertificate{CertChain: []byte("NEW CERT PEM"), PrivateKey: []byte("NEW KEY PEM")}
		}},
		{"CA bundle", func(w *World) { w.CABundles["default/test-ca/ca.crt"] = &CABundle{PEM: []byte("OLD AND NEW CA PEM")} }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := tlsWorld()
			tt.edit(w)
			after := translateValid(t, w, entranceGroup)
			var changed []string
			for _, typ := range ResourceTypes {
				if before.Versions[typ.URL] != after.Versions[typ.URL] {
					changed = append(changed, typ.URL)
				}
			}
			if !slices.Equal(changed, []string{resourcev3.SecretType}) {
				t.Errorf("changed types = %v, want only secrets", changed)
			}
		})
	}
}

// TestSecretsOnlyForTheirUsers: a sidecar whose policies name no Secret
// gets none, even in the same namespace.
func TestSecretsOnlyForTheirUsers(t *testing.T) {
	w := tlsWorld()
	other := entranceService()
	other.Name = "checkout"
	w.Services[ServiceKey("default", "checkout")] = other
	p := toStaging()
	p.Name, p.Service = "checkout-to-staging", "checkout"
	w.Policies = append(w.Policies, p)
	out := translateValid(t, w, nodemeta.NodeGroup{Namespace: "default", Service: "checkout", Ports: []nodemeta.PortPair{{Listen: 15001, App: 8080}}})
	if len(out.Secrets) != 0 {
		t.Errorf("checkout's sidecar gets secrets %v", out.Secrets)
	}
	if len(mirrorPolicies(out)) != 1 {
		t.Errorf("checkout's policy did not translate: %v", mirrorPolicies(out))
	}
}

// TestMirrorHostOverride: a Service target's copies carry the Host the
// mirror sets; without one they keep the request's.
func TestMirrorHostOverride(t *testing.T) {
	p := toStaging()
	p.Mirrors[0].Host = "entrance.staging.svc"
	out := translateValid(t, newWorld([]*Service{entranceService(), stagingService()}, p), entranceGroup)
	if m := mirrorPolicies(out); len(m) != 1 || m[0].GetHostRewriteLiteral() != "entrance.staging.svc" {
		t.Errorf("mirror policies = %v", m)
	}
	out = translateValid(t, baseWorld(), entranceGroup)
	if m := mirrorPolicies(out); len(m) != 1 || m[0].GetHostRewriteLiteral() != "" {
		t.Errorf("without a host override: %v", m)
	}
}
