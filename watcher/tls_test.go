package watcher

import (
	"context"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/shadowplane/shadowplane/internal/certs"
	"github.com/shadowplane/shadowplane/policy"
	"github.com/shadowplane/shadowplane/translator"
)

var tlsTestNow = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

// testPKI is a CA and what it issued, for the TLS tests.
type testPKI struct {
	ca                       *certs.Authority
	client, server           certs.Pair
	expired, notYet, another certs.Pair
}

func newTestPKI(t *testing.T, now time.Time) testPKI {
	t.Helper()
	ca, err := certs.NewAuthority("test-ca", 365*24*time.Hour, now.Add(-30*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	issue := func(p certs.Pair, err error) certs.Pair {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	return testPKI{
		ca:      ca,
		client:  issue(ca.IssueClient("copier", 24*time.Hour, now)),
		server:  issue(ca.Issue([]string{"gw.example.com"}, nil, 24*time.Hour, now)),
		expired: issue(ca.IssueClient("copier", time.Hour, now.Add(-48*time.Hour))),
		notYet:  issue(ca.IssueClient("copier", time.Hour, now.Add(48*time.Hour))),
		another: issue(ca.IssueClient("other", 24*time.Hour, now)),
	}
}

func tlsSecret(ns, name string, typ corev1.SecretType, cert, key []byte) *corev1.Secret {
	return &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{policy.TLSObjectLabel: "true"}},
		Type:       typ,
		Data:       map[string][]byte{corev1.TLSCertKey: cert, corev1.TLSPrivateKeyKey: key},
	}
}

func TestCheckClientCertificate(t *testing.T) {
	pki := newTestPKI(t, tlsTestNow)
	tests := []struct {
		name    string
		secret  *corev1.Secret
		problem string // "" means usable
	}{
		{"valid", tlsSecret("ns", "s", corev1.SecretTypeTLS, pki.client.CertPEM, pki.client.KeyPEM), ""},
		{"opaque type", tlsSecret("ns", "s", corev1.SecretTypeOpaque, pki.client.CertPEM, pki.client.KeyPEM), `has type "Opaque", want "kubernetes.io/tls"`},
		{"no key", tlsSecret("ns", "s", corev1.SecretTypeTLS, pki.client.CertPEM, nil), "needs both tls.crt and tls.key"},
		{"key of another certificate", tlsSecret("ns", "s", corev1.SecretTypeTLS, pki.client.CertPEM, pki.another.KeyPEM), "tls.key does not match the certificate in tls.crt"},
		{"garbage certificate", tlsSecret("ns", "s", corev1.SecretTypeTLS, []byte("not pem"), pki.client.KeyPEM), "tls.crt holds no PEM certificate"},
		{"expired", tlsSecret("ns", "s", corev1.SecretTypeTLS, pki.expired.CertPEM, pki.expired.KeyPEM), "the certificate expired at 2026-05-30T13:00:00Z"},
		{"not yet valid", tlsSecret("ns", "s", corev1.SecretTypeTLS, pki.notYet.CertPEM, pki.notYet.KeyPEM), "the certificate is not valid before 2026-06-03T11:55:00Z"},
		{"server certificate", tlsSecret("ns", "s", corev1.SecretTypeTLS, pki.server.CertPEM, pki.server.KeyPEM), "not for client authentication"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cert, _ := checkClientCertificate(tt.secret, tlsTestNow)
			if tt.problem == "" {
				if cert.Problem != "" || len(cert.PrivateKey) == 0 || len(cert.CertChain) == 0 {
					t.Fatalf("want a usable certificate, got problem %q", cert.Problem)
				}
				return
			}
			if !strings.Contains(cert.Problem, tt.problem) {
				t.Errorf("problem = %q, want it to contain %q", cert.Problem, tt.problem)
			}
			if len(cert.PrivateKey) != 0 || len(cert.CertChain) != 0 {
				t.Error("an unusable certificate still carries its material")
			}
			if strings.Contains(cert.Problem, "PRIVATE KEY") {
				t.Errorf("problem quotes the key: %q", cert.Problem)
			}
		})
	}
}

func TestCheckCABundle(t *testing.T) {
	pki := newTestPKI(t, tlsTestNow)
	old, err := certs.NewAuthority("old-ca", time.Hour, tlsTestNow.Add(-72*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, data, problem string
	}{
		{"one CA", string(pki.ca.CertPEM), ""},
		{"an expired and a valid CA", string(old.CertPEM) + string(pki.ca.CertPEM), ""},
		{"empty", "", "holds no PEM certificate"},
		{"a key in the bundle", string(pki.ca.CertPEM) + string(pki.client.KeyPEM), `PEM block 2 is a "PRIVATE KEY", want only CERTIFICATE blocks`},
		{"only an expired CA", string(old.CertPEM), "none of its certificates is valid now"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bundle, _ := checkCABundle([]byte(tt.data), tlsTestNow)
			if tt.problem == "" && (bundle.Problem != "" || string(bundle.PEM) != tt.data) {
				t.Fatalf("want a usable bundle, got problem %q", bundle.Problem)
			}
			if !strings.Contains(bundle.Problem, tt.problem) {
				t.Errorf("problem = %q, want it to contain %q", bundle.Problem, tt.problem)
			}
		})
	}
}

// TestTLSMaterialRecheck: the World is rebuilt when the first certificate
// starts or stops being valid.
func TestTLSMaterialRecheck(t *testing.T) {
	pki := newTestPKI(t, tlsTestNow)
	m := buildTLSMaterial([]*corev1.Secret{
		tlsSecret("ns", "a", corev1.SecretTypeTLS, pki.client.CertPEM, pki.client.KeyPEM),
		tlsSecret("ns", "b", corev1.SecretTypeTLS, pki.notYet.CertPEM, pki.notYet.KeyPEM),
	}, nil, tlsTestNow, nil)
	if want := tlsTestNow.Add(24 * time.Hour); !m.recheck.Equal(want) {
		t.Errorf("recheck at %v, want %v (the client certificate's expiry)", m.recheck, want)
	}
	if m.certificates["ns/a"].Problem != "" || m.certificates["ns/b"].Problem == "" {
		t.Errorf("certificates: %+v", m.certificates)
	}
}

// tlsPolicyYAML copies web:http to an https URL with a CA and a client
// certificate from namespace default.
const tlsPolicyYAML = `policies:
- name: xc
  service: web
  port: http
  mirrors:
  - url: https://gw.example.com
    percent: 10
    host: entrance.test.example.com
    tls: {caConfigMap: test-ca, clientCertSecret: copier, sni: entrance.test.example.com}
`

// TestWatcherMirrorTLS: the watcher reads only labelled Secrets and CA
// ConfigMaps into the World; a missing or invalid Secret is an Event and
// keeps the policy in force; fixing it is another Event.
func TestWatcherMirrorTLS(t *testing.T) {
	pki := newTestPKI(t, time.Now())
	caConfigMap := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "test-ca", Labels: map[string]string{policy.TLSObjectLabel: "true"}},
		Data:       map[string]string{policy.DefaultCAKey: string(pki.ca.CertPEM)},
	}
	unlabelled := tlsSecret("default", "copier", corev1.SecretTypeTLS, pki.client.CertPEM, pki.client.KeyPEM)
	unlabelled.Labels = nil
	objects := append(baseObjects("default"), caConfigMap, unlabelled,
		policyConfigMap("default", "mirrors", map[string]string{"policies.yaml": tlsPolicyYAML}))
	h := newHarness(t, Options{ParseOptions: policy.ParseOptions{AllowedURLHosts: []string{"gw.example.com"}}}, objects...)
	h.start(5)
	w := h.world("first", func(*translator.World) bool { return true })
	if policyOf(w, "default", "xc") == nil {
		t.Fatal("the policy is not in force while its Secret is missing")
	}
	if len(w.ClientCertificates) != 0 {
		t.Errorf("an unlabelled Secret reached the World: %v", w.ClientCertificates)
	}
	if ca := w.CABundles["default/test-ca/ca.crt"]; ca == nil || ca.Problem != "" {
		t.Errorf("CA bundle = %+v", ca)
	}
	wantEvents(t, h.events(), []string{"Warning MirrorTLSInvalid", `mirrors[0].tls.clientCertSecret: Secret "default/copier" does not exist or lacks the label shadowplane.io/mirror-tls: "true"; no copies go to this mirror until it is fixed`})

	labelled := tlsSecret("default", "copier", corev1.SecretTypeTLS, pki.client.CertPEM, pki.another.KeyPEM)
	w = h.update("label the Secret, with a key of another certificate", func(ctx context.Context) error {
		_, err := h.client.CoreV1().Secrets("default").Update(ctx, labelled, metav1.UpdateOptions{})
		return err
	})
	if c := w.ClientCertificates["default/copier"]; c == nil || !strings.Contains(c.Problem, "does not match") {
		t.Errorf("client certificate = %+v", c)
	}
	wantEvents(t, h.events(), []string{"Warning MirrorTLSInvalid", "tls.key does not match the certificate in tls.crt; no copies go to this mirror"})

	labelled.Data[corev1.TLSPrivateKeyKey] = pki.client.KeyPEM
	w = h.update("fix the key", func(ctx context.Context) error {
		_, err := h.client.CoreV1().Secrets("default").Update(ctx, labelled, metav1.UpdateOptions{})
		return err
	})
	if c := w.ClientCertificates["default/copier"]; c == nil || c.Problem != "" || string(c.PrivateKey) != string(pki.client.KeyPEM) {
		t.Errorf("client certificate after the fix: problem %q", c.Problem)
	}
	wantEvents(t, h.events(), []string{"Normal PolicyApplied policy xc applied"})

	// Only the labelled objects and the two keys of a client certificate
	// are kept in the cache.
	labelled.Data["extra"] = []byte("x")
	h.update("add a key to the Secret", func(ctx context.Context) error {
		_, err := h.client.CoreV1().Secrets("default").Update(ctx, labelled, metav1.UpdateOptions{})
		return err
	})
	for _, s := range h.watcher.informers.Load().scopes {
		cached, err := s.tlsSecrets.Secrets("default").Get("copier")
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := cached.Data["extra"]; ok {
			t.Error("the cache holds a Secret key the watcher never reads")
		}
	}
}

// TestWatcherCertificateExpiry: a client certificate that expires while
// the control plane runs stops its mirror without any Kubernetes change.
func TestWatcherCertificateExpiry(t *testing.T) {
	now := time.Now()
	ca, err := certs.NewAuthority("test-ca", time.Hour, now.Add(-time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	short, err := ca.IssueClient("copier", 2*time.Second, now)
	if err != nil {
		t.Fatal(err)
	}
	objects := append(baseObjects("default"),
		tlsSecret("default", "copier", corev1.SecretTypeTLS, short.CertPEM, short.KeyPEM),
		policyConfigMap("default", "mirrors", map[string]string{"policies.yaml": strings.Replace(tlsPolicyYAML, "caConfigMap: test-ca, ", "", 1)}))
	h := newHarness(t, Options{ParseOptions: policy.ParseOptions{AllowedURLHosts: []string{"gw.example.com"}}}, objects...)
	h.start(5)
	if c := h.world("first", func(*translator.World) bool { return true }).ClientCertificates["default/copier"]; c == nil || c.Problem != "" {
		t.Fatalf("client certificate at first: %+v", c)
	}
	h.world("the certificate expired", func(w *translator.World) bool {
		c := w.ClientCertificates["default/copier"]
		return c != nil && strings.Contains(c.Problem, "the certificate expired at")
	})
	h.eventually("an Event says so", func() bool {
		return len(filterEvents(h.events(), "MirrorTLSInvalid", "expired")) > 0
	})
}

// TestTLSChecksReused: an unchanged object is not checked again, unless a
// validity bound of its certificate has passed since.
func TestTLSChecksReused(t *testing.T) {
	pki := newTestPKI(t, tlsTestNow)
	secret := tlsSecret("ns", "a", corev1.SecretTypeTLS, pki.client.CertPEM, pki.client.KeyPEM)
	secret.ResourceVersion = "1"
	first := buildTLSMaterial([]*corev1.Secret{secret}, nil, tlsTestNow, nil)

	// A different object under the same version would only show if the
	// check were reused; the version says what the watcher knows.
	same := secret.DeepCopy()
	same.Data[corev1.TLSPrivateKeyKey] = pki.another.KeyPEM
	if got := buildTLSMaterial([]*corev1.Secret{same}, nil, tlsTestNow.Add(time.Hour), first.checks); got.certificates["ns/a"] != first.certificates["ns/a"] {
		t.Error("an unchanged version was checked again")
	}
	same.ResourceVersion = "2"
	if got := buildTLSMaterial([]*corev1.Secret{same}, nil, tlsTestNow.Add(time.Hour), first.checks); !strings.Contains(got.certificates["ns/a"].Problem, "does not match") {
		t.Errorf("a new version was not checked: %+v", got.certificates["ns/a"])
	}
	if got := buildTLSMaterial([]*corev1.Secret{secret}, nil, tlsTestNow.Add(25*time.Hour), first.checks); !strings.Contains(got.certificates["ns/a"].Problem, "expired") {
		t.Errorf("past its expiry the certificate was not checked again: %+v", got.certificates["ns/a"])
	}
}

// TestLastValidKeepsMirrorTLS: the stored last valid version of a policy
// keeps its mirrors' TLS settings and Host, so every replica translates it
// alike.
func TestLastValidKeepsMirrorTLS(t *testing.T) {
	policies, errs := policy.ParsePolicies("default", "mirrors", "policies.yaml", []byte(tlsPolicyYAML),
		policy.ParseOptions{AllowedURLHosts: []string{"gw.example.com"}})
	if len(errs) > 0 || len(policies) != 1 {
		t.Fatalf("parse: %v", errs)
	}
	raw, err := encodeLastValid(policies)
	if err != nil {
		t.Fatal(err)
	}
	decoded, err := decodeLastValid(&corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: "mirrors", Annotations: map[string]string{AnnotationLastValid: raw}},
	})
	if err != nil || len(decoded) != 1 {
		t.Fatalf("decode: %v, %d policies", err, len(decoded))
	}
	got, want := decoded[0].Mirrors[0], policies[0].Mirrors[0]
	if got.TLS == nil || *got.TLS != *want.TLS || got.Host != want.Host {
		t.Errorf("stored mirror TLS %+v host %q, want %+v %q", got.TLS, got.Host, want.TLS, want.Host)
	}
}
