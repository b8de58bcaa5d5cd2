package harness

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"log"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// StartTLSBackend is StartBackend over HTTPS with a freshly made
// self-signed certificate for host (as an IP address SAN, or a DNS name):
// a target no system trust store accepts, to show that copies to an https
// URL target are verified. Requests are recorded only once a TLS handshake
// succeeds; failed handshakes are counted by TLSHandshakeErrors.
func StartTLSBackend(name, host string) (*Backend, error) {
	cert, err := selfSignedCert(host)
	if err != nil {
		return nil, fmt.Errorf("backend %s: %w", name, err)
	}
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return nil, fmt.Errorf("backend %s: %w", name, err)
	}
	b := &Backend{Name: name, Addr: l.Addr().String(), Host: host, Port: int32(l.Addr().(*net.TCPAddr).Port), listener: l, stopping: make(chan struct{})}
	b.server = &http.Server{
		Handler:           http.HandlerFunc(b.serve),
		ReadHeaderTimeout: 10 * time.Second,
		TLSConfig:         &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
		ErrorLog:          handshakeErrorLog(&b.tlsHandshakeErrors),
	}
	go func() { _ = b.server.ServeTLS(l, "", "") }()
	return b, nil
}

// TLSHandshakeErrors counts the TLS handshakes the backend saw fail (a
// client refusing the certificate, for one).
func (b *Backend) TLSHandshakeErrors() int { return int(b.tlsHandshakeErrors.Load()) }

// selfSignedCert makes a short-lived ECDSA certificate for host.
func selfSignedCert(host string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: host, Organization: []string{"shadowplane tests"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if ip := net.ParseIP(host); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	} else {
		tmpl.DNSNames = []string{host}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// handshakeErrorLog is an http.Server error log that counts failed TLS
// handshakes and drops everything else.
func handshakeErrorLog(n *atomic.Int64) *log.Logger {
	return log.New(writerFunc(func(p []byte) (int, error) {
		if strings.Contains(string(p), "TLS handshake error") {
			n.Add(1)
		}
		return len(p), nil
	}), "", 0)
}

type writerFunc func(p []byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
