// Package certs makes and serves the certificates of the xDS port: a CA that
// sidecars trust, a serving certificate signed by it, and a TLS
// configuration that re-reads the files on change, so certificates rotate
// without restarting the control plane.
package certs

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"sync"
	"time"
)

// Defaults for certificate lifetimes: the CA lives for years (sidecars
// trust it), the serving certificate for 90 days (rotated from files).
const (
	DefaultCALifetime   = 10 * 365 * 24 * time.Hour
	DefaultLeafLifetime = 90 * 24 * time.Hour
)

// Pair is a PEM certificate and its PEM private key.
type Pair struct {
	CertPEM []byte
	KeyPEM  []byte
}

// Authority is a CA that can sign serving certificates.
type Authority struct {
	Pair
	cert *x509.Certificate
	key  crypto.Signer
}

// NewAuthority makes a self-signed CA named commonName.
func NewAuthority(commonName string, lifetime time.Duration, now time.Time) (*Authority, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: commonName, Organization: []string{"shadowplane"}},
		NotBefore:             now.Add(-5 * time.Minute),
		NotAfter:              now.Add(lifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("sign CA certificate: %w", err)
	}
	cert, _ := x509.ParseCertificate(der)
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	return &Authority{Pair: Pair{CertPEM: encodeCert(der), KeyPEM: keyPEM}, cert: cert, key: key}, nil
}

// LoadAuthority reads a CA from PEM, to sign a new serving certificate with
// the CA sidecars already trust.
func LoadAuthority(p Pair) (*Authority, error) {
	tc, err := tls.X509KeyPair(p.CertPEM, p.KeyPEM)
	if err != nil {
		return nil, fmt.Errorf("CA certificate and key: %w", err)
	}
	cert, err := x509.ParseCertificate(tc.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	if !cert.IsCA {
		return nil, errors.New("CA certificate: it is not a CA (basicConstraints CA:FALSE)")
	}
	signer, ok := tc.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, errors.New("CA key: not a signing key")
	}
	return &Authority{Pair: p, cert: cert, key: signer}, nil
}

// Issue signs a serving certificate for the given DNS names and IPs.
func (a *Authority) Issue(dnsNames []string, ips []net.IP, lifetime time.Duration, now time.Time) (Pair, error) {
	if len(dnsNames) == 0 && len(ips) == 0 {
		return Pair{}, errors.New("a serving certificate needs at least one DNS name or IP")
	}
	cn := ""
	if len(dnsNames) > 0 {
		cn = dnsNames[0]
	}
	return a.sign(&x509.Certificate{
		Subject:     pkix.Name{CommonName: cn, Organization: []string{"shadowplane"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    dnsNames,
		IPAddresses: ips,
	}, lifetime, now)
}

// IssueClient signs a client certificate named commonName, for a mirror
// target that requires one (and for tests of it).
func (a *Authority) IssueClient(commonName string, lifetime time.Duration, now time.Time) (Pair, error) {
	return a.sign(&x509.Certificate{
		Subject:     pkix.Name{CommonName: commonName, Organization: []string{"shadowplane"}},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}, lifetime, now)
}

// sign completes tmpl (serial, validity from five minutes ago for clock
// skew, never past the CA's own, key usage) and signs it with a new key.
func (a *Authority) sign(tmpl *x509.Certificate, lifetime time.Duration, now time.Time) (Pair, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Pair{}, fmt.Errorf("generate key: %w", err)
	}
	notAfter := now.Add(lifetime)
	if notAfter.After(a.cert.NotAfter) {
		notAfter = a.cert.NotAfter
	}
	tmpl.SerialNumber = serial()
	tmpl.NotBefore = now.Add(-5 * time.Minute)
	tmpl.NotAfter = notAfter
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.cert, key.Public(), a.key)
	if err != nil {
		return Pair{}, fmt.Errorf("sign certificate: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return Pair{}, err
	}
	return Pair{CertPEM: encodeCert(der), KeyPEM: keyPEM}, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(fmt.Sprintf("crypto/rand: %v", err))
	}
	return n
}

func encodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// FileSource serves a certificate and key from files and reloads them when
// either changes on disk (a Secret volume update, cert-manager renewal), so
// the next handshake uses the new pair; open connections keep theirs.
type FileSource struct {
	certFile, keyFile string

	mu      sync.Mutex
	stamp   [2]fileStamp
	current *tls.Certificate
}

type fileStamp struct {
	modTime time.Time
	size    int64
}

// NewFileSource loads certFile and keyFile; it fails if they do not form a
// valid pair, so a misconfigured server never starts.
func NewFileSource(certFile, keyFile string) (*FileSource, error) {
	s := &FileSource{certFile: certFile, keyFile: keyFile}
	if _, err := s.Certificate(); err != nil {
		return nil, err
	}
	return s, nil
}

// Certificate returns the pair on disk, reloading it when the files
// changed. A broken update (a half-written key) keeps the last good pair.
func (s *FileSource) Certificate() (*tls.Certificate, error) {
	stamps, err := stampFiles(s.certFile, s.keyFile)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil && s.current != nil && stamps == s.stamp {
		return s.current, nil
	}
	if err == nil {
		var pair tls.Certificate
		if pair, err = tls.LoadX509KeyPair(s.certFile, s.keyFile); err == nil {
			s.current, s.stamp = &pair, stamps
			return s.current, nil
		}
	}
	if s.current != nil {
		return s.current, nil
	}
	return nil, fmt.Errorf("load serving certificate %s and key %s: %w", s.certFile, s.keyFile, err)
}

func stampFiles(paths ...string) (out [2]fileStamp, err error) {
	for i, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return out, err
		}
		out[i] = fileStamp{modTime: fi.ModTime(), size: fi.Size()}
	}
	return out, nil
}

// ServerTLSConfig is the xDS port's TLS: TLS 1.3 only (Envoy's bootstrap
// asks for it), HTTP/2 by ALPN, the certificate re-read per handshake.
func (s *FileSource) ServerTLSConfig() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		NextProtos: []string{"h2"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return s.Certificate()
		},
	}
}

// WriteFiles writes a pair atomically (temp file and rename), the key with
// mode 0600.
func WriteFiles(p Pair, certFile, keyFile string) error {
	if err := writeAtomic(keyFile, p.KeyPEM, 0o600); err != nil {
		return err
	}
	return writeAtomic(certFile, p.CertPEM, 0o644)
}

func writeAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return fmt.Errorf("write %s: %w", tmp, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("rename %s: %w", tmp, err)
	}
	return nil
}
