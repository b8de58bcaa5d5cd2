package certs

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// Secret names and keys that `shadowplane certgen` maintains in the control
// plane's namespace, and the CA ConfigMap it publishes for sidecars.
const (
	CASecretName      = "shadowplane-ca"      // ca.crt, ca.key: only certgen reads it
	ServingSecretName = "shadowplane-xds-tls" // tls.crt, tls.key, ca.crt: mounted by serve
	CAConfigMapName   = "shadowplane-ca"      // ca.crt: what sidecars trust
	KeyCACert         = "ca.crt"
	KeyCAKey          = "ca.key"
)

// GenerateOptions say what certgen makes.
type GenerateOptions struct {
	// Namespace and Service of the control plane; the serving certificate
	// carries <service>.<namespace>.svc and its longer forms.
	Namespace string
	Service   string
	// ExtraDNSNames and IPs are added to the serving certificate.
	ExtraDNSNames []string
	IPs           []net.IP
	// RenewBefore re-issues a serving certificate that expires sooner.
	RenewBefore  time.Duration
	LeafLifetime time.Duration
	Now          time.Time
}

// ServingDNSNames are the names a sidecar may dial the control plane by.
func ServingDNSNames(service, namespace string) []string {
	base := service + "." + namespace
	return []string{base + ".svc", base + ".svc.cluster.local", base, service}
}

// Result says what EnsureSecrets did.
type Result struct {
	CreatedCA     bool
	IssuedServing bool
	NotAfter      time.Time
}

// EnsureSecrets makes the CA Secret if missing (an existing CA is kept, so
// sidecars keep trusting it) and issues the serving certificate when it is
// missing, names other DNS names, or expires within RenewBefore. Running it
// again is safe: it is the rotation.
func EnsureSecrets(ctx context.Context, client kubernetes.Interface, o GenerateOptions) (Result, error) {
	var res Result
	secrets := client.CoreV1().Secrets(o.Namespace)
	ca, err := loadOrCreateCA(ctx, client, o, &res)
	if err != nil {
		return res, err
	}
	names := append(ServingDNSNames(o.Service, o.Namespace), o.ExtraDNSNames...)
	existing, err := secrets.Get(ctx, ServingSecretName, metav1.GetOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		return res, fmt.Errorf("get Secret %s/%s: %w", o.Namespace, ServingSecretName, err)
	}
	found := err == nil
	if found {
		if notAfter, ok := stillGood(existing.Data[corev1.TLSCertKey], ca.CertPEM, names, o.Now.Add(o.RenewBefore)); ok {
			res.NotAfter = notAfter
			return res, nil
		}
	}
	lifetime := o.LeafLifetime
	if lifetime <= 0 {
		lifetime = DefaultLeafLifetime
	}
	leaf, err := ca.Issue(names, o.IPs, lifetime, o.Now)
	if err != nil {
		return res, err
	}
	secret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: ServingSecretName, Namespace: o.Namespace,
			Labels: map[string]string{"app.kubernetes.io/name": "shadowplane", "app.kubernetes.io/component": "xds-tls"}},
		Type: corev1.SecretTypeTLS,
		Data: map[string][]byte{corev1.TLSCertKey: leaf.CertPEM, corev1.TLSPrivateKeyKey: leaf.KeyPEM, KeyCACert: ca.CertPEM},
	}
	if found {
		secret.ResourceVersion = existing.ResourceVersion
		_, err = secrets.Update(ctx, secret, metav1.UpdateOptions{})
	} else {
		_, err = secrets.Create(ctx, secret, metav1.CreateOptions{})
	}
	if err != nil {
		return res, fmt.Errorf("write Secret %s/%s: %w", o.Namespace, ServingSecretName, err)
	}
	res.IssuedServing = true
	res.NotAfter, _ = certNotAfter(leaf.CertPEM)
	return res, nil
}

func loadOrCreateCA(ctx context.Context, client kubernetes.Interface, o GenerateOptions, res *Result) (*Authority, error) {
	secrets := client.CoreV1().Secrets(o.Namespace)
	s, err := secrets.Get(ctx, CASecretName, metav1.GetOptions{})
	if err == nil {
		ca, err := LoadAuthority(Pair{CertPEM: s.Data[KeyCACert], KeyPEM: s.Data[KeyCAKey]})
		if err != nil {
			return nil, fmt.Errorf("Secret %s/%s: %w", o.Namespace, CASecretName, err)
		}
		return ca, nil
	}
	if !apierrors.IsNotFound(err) {
		return nil, fmt.Errorf("get Secret %s/%s: %w", o.Namespace, CASecretName, err)
	}
	ca, err := NewAuthority("shadowplane-xds-ca", DefaultCALifetime, o.Now)
	if err != nil {
		return nil, err
	}
	_, err = secrets.Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: CASecretName, Namespace: o.Namespace,
			Labels: map[string]string{"app.kubernetes.io/name": "shadowplane", "app.kubernetes.io/component": "xds-ca"}},
		Type: corev1.SecretTypeOpaque,
		Data: map[string][]byte{KeyCACert: ca.CertPEM, KeyCAKey: ca.KeyPEM},
	}, metav1.CreateOptions{})
	if err != nil {
		return nil, fmt.Errorf("create Secret %s/%s: %w", o.Namespace, CASecretName, err)
	}
	res.CreatedCA = true
	return ca, nil
}

// stillGood reports whether certPEM is signed by caPEM, carries every name,
// and is valid past deadline.
func stillGood(certPEM, caPEM []byte, names []string, deadline time.Time) (time.Time, bool) {
	cert, err := parseCert(certPEM)
	if err != nil {
		return time.Time{}, false
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return time.Time{}, false
	}
	for _, n := range names {
		if _, err := cert.Verify(x509.VerifyOptions{DNSName: n, Roots: roots, CurrentTime: deadline}); err != nil {
			return time.Time{}, false
		}
	}
	return cert.NotAfter, true
}

func certNotAfter(certPEM []byte) (time.Time, error) {
	cert, err := parseCert(certPEM)
	if err != nil {
		return time.Time{}, err
	}
	return cert.NotAfter, nil
}

func parseCert(certPEM []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("no PEM certificate")
	}
	return x509.ParseCertificate(block.Bytes)
}
