package harness

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/shadowplane/shadowplane/internal/certs"
)

// StartTLSBackend is StartBackend over HTTPS with a freshly made
// certificate for host from a throwaway CA (as an IP address SAN, or a DNS name):
// a target no system trust store accepts, to show that copies to an https
// URL target are verified. Requests are recorded only once a TLS handshake
// succeeds; failed handshakes are counted by TLSHandshakeErrors.
func StartTLSBackend(name, host string) (*Backend, error) {
	cert, err := untrustedCert(host)
	if err != nil {
		return nil, fmt.Errorf("backend %s: %w", name, err)
	}
	return startTLSBackend(name, host, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, true)
}

// StartMutualTLSBackend is StartBackend over HTTPS with the given serving
// certificate, requiring a client certificate that one of clientCAs (PEM)
// signed: another cluster's gateway. Keep-alives are off, so every request
// makes a handshake of its own and shows the client certificate in use at
// that moment. Requests record the SNI and the client certificate's
// common name.
func StartMutualTLSBackend(name, host string, serving certs.Pair, clientCAs []byte) (*Backend, error) {
	cert, err := tls.X509KeyPair(serving.CertPEM, serving.KeyPEM)
	if err != nil {
		return nil, fmt.Errorf("backend %s: %w", name, err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(clientCAs) {
		return nil, fmt.Errorf("backend %s: no client CA certificate", name)
	}
	return startTLSBackend(name, host, &tls.Config{
		Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12,
		ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool,
		// HTTP/1.1, whose "Connection: close" stops reuse at once (an
		// HTTP/2 GOAWAY could race a copy already on its way).
		NextProtos: []string{"http/1.1"},
	}, false)
}

func startTLSBackend(name, host string, cfg *tls.Config, keepAlive bool) (*Backend, error) {
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return nil, fmt.Errorf("backend %s: %w", name, err)
	}
	b := &Backend{Name: name, Addr: l.Addr().String(), Host: host, Port: int32(l.Addr().(*net.TCPAddr).Port), listener: l, stopping: make(chan struct{})}
	b.server = &http.Server{
		Handler:           http.HandlerFunc(b.serve),
		ReadHeaderTimeout: 10 * time.Second,
		TLSConfig:         cfg,
		ErrorLog:          handshakeErrorLog(&b.tlsHandshakeErrors),
	}
	b.server.SetKeepAlivesEnabled(keepAlive)
	go func() { _ = b.server.ServeTLS(l, "", "") }()
	return b, nil
}

// TLSHandshakeErrors counts the TLS handshakes the backend saw fail (a
// client refusing the certificate, for one).
func (b *Backend) TLSHandshakeErrors() int { return int(b.tlsHandshakeErrors.Load()) }

// untrustedCert makes a short-lived certificate for host (an IP address
// SAN, or a DNS name) from a throwaway CA that nothing trusts.
func untrustedCert(host string) (tls.Certificate, error) {
	now := time.Now()
	ca, err := certs.NewAuthority("shadowplane tests", 24*time.Hour, now)
	if err != nil {
		return tls.Certificate{}, err
	}
	var names []string
	var ips []net.IP
	if ip := net.ParseIP(host); ip != nil {
		ips = []net.IP{ip}
	} else {
		names = []string{host}
	}
	pair, err := ca.Issue(names, ips, 24*time.Hour, now)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(pair.CertPEM, pair.KeyPEM)
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
