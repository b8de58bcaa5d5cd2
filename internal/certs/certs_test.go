package certs

import (
	"context"

	"crypto/tls"
	"crypto/x509"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestIssueAndVerify(t *testing.T) {
	now := time.Now()
	ca, err := NewAuthority("shadowplane-ca", DefaultCALifetime, now)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Issue([]string{"shadowplane.shadowplane-system.svc"}, []net.IP{net.ParseIP("127.0.0.1")}, DefaultLeafLifetime, now)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.X509KeyPair(leaf.CertPEM, leaf.KeyPEM)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(pair.Certificate[0])
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(ca.CertPEM)
	for _, name := range []string{"shadowplane.shadowplane-system.svc", "127.0.0.1"} {
		if _, err := cert.Verify(x509.VerifyOptions{DNSName: name, Roots: roots}); err != nil {
			t.Errorf("verify for %s: %v", name, err)
		}
	}
	if _, err := cert.Verify(x509.VerifyOptions{DNSName: "evil.example.com", Roots: roots}); err == nil {
		t.Error("the certificate verified for a name it does not carry")
	}
	if got := cert.NotAfter.Sub(now); got > DefaultLeafLifetime || got < DefaultLeafLifetime-time.Minute {
		t.Errorf("leaf lifetime %v, want %v", got, DefaultLeafLifetime)
	}

	// A reloaded CA signs certificates the old trust bundle accepts.
	again, err := LoadAuthority(ca.Pair)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := again.Issue(nil, nil, time.Hour, now); err == nil {
		t.Error("issuing a certificate with no name succeeded")
	}
	if _, err := LoadAuthority(leaf); err == nil {
		t.Error("a serving certificate was accepted as a CA")
	}
}

func TestFileSourceReloadsAndKeepsLastGood(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	now := time.Now()
	ca, _ := NewAuthority("ca", time.Hour, now)
	first, _ := ca.Issue([]string{"first"}, nil, time.Hour, now)
	if err := WriteFiles(first, certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	src, err := NewFileSource(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	name := func() string {
		c, err := src.ServerTLSConfig().GetCertificate(nil)
		if err != nil {
			t.Fatal(err)
		}
		x, _ := x509.ParseCertificate(c.Certificate[0])
		return x.Subject.CommonName
	}
	if got := name(); got != "first" {
		t.Fatalf("serving %q, want first", got)
	}
	second, _ := ca.Issue([]string{"second-with-a-longer-name"}, nil, time.Hour, now)
	if err := WriteFiles(second, certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	if got := name(); got != "second-with-a-longer-name" {
		t.Fatalf("after rotation serving %q, want the new certificate", got)
	}
	// A half-written update keeps the last good pair.
	if err := os.WriteFile(keyFile, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := name(); got != "second-with-a-longer-name" {
		t.Fatalf("after a broken update serving %q, want the last good certificate", got)
	}
	if _, err := NewFileSource(certFile, keyFile); err == nil {
		t.Fatal("NewFileSource accepted a broken key")
	}
}

func TestEnsureSecretsKeepsCAAndRenews(t *testing.T) {
	client := fake.NewClientset()
	ctx := context.Background()
	now := time.Now()
	o := GenerateOptions{Namespace: "shadowplane-system", Service: "shadowplane", RenewBefore: 30 * 24 * time.Hour, Now: now}
	first, err := EnsureSecrets(ctx, client, o)
	if err != nil {
		t.Fatal(err)
	}
	if !first.CreatedCA || !first.IssuedServing {
		t.Fatalf("first run: %+v, want a new CA and a serving certificate", first)
	}
	serving := func() *corev1.Secret {
		s, err := client.CoreV1().Secrets(o.Namespace).Get(ctx, ServingSecretName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	before := serving()

	again, err := EnsureSecrets(ctx, client, o)
	if err != nil {
		t.Fatal(err)
	}
	if again.CreatedCA || again.IssuedServing {
		t.Fatalf("second run: %+v, want nothing changed", again)
	}

	// 61 days later the 90-day certificate is inside the renewal window.
	o.Now = now.Add(61 * 24 * time.Hour)
	renewed, err := EnsureSecrets(ctx, client, o)
	if err != nil {
		t.Fatal(err)
	}
	if renewed.CreatedCA || !renewed.IssuedServing {
		t.Fatalf("renewal: %+v, want a new serving certificate from the same CA", renewed)
	}
	after := serving()
	if string(after.Data[KeyCACert]) != string(before.Data[KeyCACert]) {
		t.Error("renewal changed the CA: sidecars would stop trusting the control plane")
	}
	if string(after.Data[corev1.TLSCertKey]) == string(before.Data[corev1.TLSCertKey]) {
		t.Error("renewal kept the old serving certificate")
	}

	// A new DNS name re-issues too.
	o.ExtraDNSNames = []string{"xds.example.internal"}
	if res, _ := EnsureSecrets(ctx, client, o); !res.IssuedServing {
		t.Error("a new DNS name did not re-issue the serving certificate")
	}
}
