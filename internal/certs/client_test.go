package certs

import (
	"crypto/x509"
	"encoding/pem"
	"testing"
	"time"
)

// TestIssueClient: a client certificate chains to its CA for client
// authentication only.
func TestIssueClient(t *testing.T) {
	now := time.Now()
	ca, err := NewAuthority("ca", time.Hour, now)
	if err != nil {
		t.Fatal(err)
	}
	p, err := ca.IssueClient("copier", time.Minute, now)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(p.CertPEM)
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.cert)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("as a client certificate: %v", err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Error("a client certificate verifies as a serving one")
	}
	if cert.Subject.CommonName != "copier" || !cert.NotAfter.Equal(now.Add(time.Minute).Truncate(time.Second)) {
		t.Errorf("subject %q, not after %v", cert.Subject.CommonName, cert.NotAfter)
	}
}
