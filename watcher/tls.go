package watcher

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"slices"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/clock"

	"github.com/shadowplane/shadowplane/policy"
	"github.com/shadowplane/shadowplane/translator"
)

// tlsSelector selects the Secrets and CA ConfigMaps mirror targets may use.
// The API server applies it: no other Secret ever reaches the control plane.
var tlsSelector = labels.SelectorFromSet(labels.Set{policy.TLSObjectLabel: "true"})

// labelledListWatch lists and watches only the objects matching selector,
// filtered by the API server.
func labelledListWatch[L runtime.Object](selector labels.Selector,
	list func(context.Context, metav1.ListOptions) (L, error),
	watchFn func(context.Context, metav1.ListOptions) (watch.Interface, error)) *cache.ListWatch {
	withSelector := func(o metav1.ListOptions) metav1.ListOptions {
		o.LabelSelector = selector.String()
		return o
	}
	return &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return list(ctx, withSelector(o))
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return watchFn(ctx, withSelector(o))
		},
	}
}

// isTLSObject re-checks the label, for clients that do not filter (fakes).
func isTLSObject(obj any) bool {
	o, ok := obj.(metav1.Object)
	return ok && tlsSelector.Matches(labels.Set(o.GetLabels()))
}

// stripTLSSecret keeps a Secret's identity, labels, type and the two keys
// a client certificate needs; anything else in it never enters the cache.
func stripTLSSecret(obj any) (any, error) {
	s, ok := obj.(*corev1.Secret)
	if !ok {
		return obj, nil
	}
	s.ManagedFields = nil
	s.Annotations = nil
	s.OwnerReferences = nil
	s.StringData = nil
	for key := range s.Data {
		if key != corev1.TLSCertKey && key != corev1.TLSPrivateKeyKey {
			delete(s.Data, key)
		}
	}
	return s, nil
}

// stripCAConfigMap keeps a CA ConfigMap's identity, labels and data.
func stripCAConfigMap(obj any) (any, error) {
	c, ok := obj.(*corev1.ConfigMap)
	if !ok {
		return obj, nil
	}
	c.ManagedFields = nil
	c.Annotations = nil
	c.OwnerReferences = nil
	c.BinaryData = nil
	return c, nil
}

// tlsMaterial is what the labelled Secrets and CA ConfigMaps hold, checked.
type tlsMaterial struct {
	certificates map[string]*translator.ClientCertificate
	bundles      map[string]*translator.CABundle
	// recheck is the earliest future time a certificate starts or stops
	// being valid (zero: none), when the material must be checked again.
	recheck time.Time
	// checks are the results by object, for the next build to reuse.
	checks map[string]tlsCheck
}

// tlsCheck is the checked form of one Secret or CA key: parsing keys and
// certificates on every World would cost milliseconds per RSA key.
type tlsCheck struct {
	resourceVersion string
	at              time.Time // when it was checked
	cert            *translator.ClientCertificate
	bundle          *translator.CABundle
	// changes are the validity bounds of its certificates.
	changes []time.Time
}

// reusable reports whether a check of the object at resourceVersion still
// holds at now: same object version, and no validity bound crossed since.
func (c tlsCheck) reusable(resourceVersion string, now time.Time) bool {
	if resourceVersion == "" || c.resourceVersion != resourceVersion {
		return false
	}
	return !slices.ContainsFunc(c.changes, func(t time.Time) bool { return t.After(c.at) && !t.After(now) })
}

// buildTLSMaterial checks every labelled Secret and every key of every
// labelled CA ConfigMap at time now, reusing the checks of objects that
// did not change (prev; nil checks everything).
func buildTLSMaterial(secrets []*corev1.Secret, configMaps []*corev1.ConfigMap, now time.Time, prev map[string]tlsCheck) tlsMaterial {
	m := tlsMaterial{
		certificates: make(map[string]*translator.ClientCertificate, len(secrets)),
		bundles:      map[string]*translator.CABundle{},
		checks:       make(map[string]tlsCheck, len(prev)),
	}
	for _, s := range secrets {
		key := translator.ClientCertificateKey(s.Namespace, s.Name)
		c, ok := prev["secret|"+key]
		if !ok || !c.reusable(s.ResourceVersion, now) {
			c = tlsCheck{resourceVersion: s.ResourceVersion, at: now}
			c.cert, c.changes = checkClientCertificate(s, now)
		}
		m.checks["secret|"+key] = c
		m.certificates[key] = c.cert
		m.noteChange(c.changes, now)
	}
	for _, cm := range configMaps {
		for dataKey, data := range cm.Data {
			key := translator.CABundleKey(cm.Namespace, cm.Name, dataKey)
			c, ok := prev["ca|"+key]
			if !ok || !c.reusable(cm.ResourceVersion, now) {
				c = tlsCheck{resourceVersion: cm.ResourceVersion, at: now}
				c.bundle, c.changes = checkCABundle([]byte(data), now)
			}
			m.checks["ca|"+key] = c
			m.bundles[key] = c.bundle
			m.noteChange(c.changes, now)
		}
	}
	return m
}

func (m *tlsMaterial) noteChange(changes []time.Time, now time.Time) {
	for _, t := range changes {
		if t.After(now) && (m.recheck.IsZero() || t.Before(m.recheck)) {
			m.recheck = t
		}
	}
}

// checkClientCertificate turns a Secret into a client certificate, with a
// Problem when Envoy could not, or should not, present it. Messages never
// quote the key. changes are the certificate's validity bounds.
func checkClientCertificate(s *corev1.Secret, now time.Time) (cert *translator.ClientCertificate, changes []time.Time) {
	cert = &translator.ClientCertificate{CertChain: s.Data[corev1.TLSCertKey], PrivateKey: s.Data[corev1.TLSPrivateKeyKey]}
	fail := func(format string, args ...any) *translator.ClientCertificate {
		return &translator.ClientCertificate{Problem: fmt.Sprintf(format, args...)}
	}
	switch {
	case s.Type != corev1.SecretTypeTLS:
		return fail("has type %q, want %q (create it with kubectl create secret tls)", s.Type, corev1.SecretTypeTLS), nil
	case len(cert.CertChain) == 0 || len(cert.PrivateKey) == 0:
		return fail("needs both %s and %s", corev1.TLSCertKey, corev1.TLSPrivateKeyKey), nil
	}
	pair, err := tls.X509KeyPair(cert.CertChain, cert.PrivateKey)
	if err != nil {
		return fail("%s", keyPairProblem(err)), nil
	}
	leaf := pair.Leaf
	if leaf == nil {
		if leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return fail("%s: the certificate cannot be parsed: %v", corev1.TLSCertKey, err), nil
		}
	}
	changes = []time.Time{leaf.NotBefore, leaf.NotAfter}
	if problem := validityProblem(leaf, now); problem != "" {
		return fail("%s", problem), changes
	}
	if len(leaf.ExtKeyUsage) > 0 && !slices.ContainsFunc(leaf.ExtKeyUsage, func(u x509.ExtKeyUsage) bool {
		return u == x509.ExtKeyUsageClientAuth || u == x509.ExtKeyUsageAny
	}) {
		return fail("the certificate in %s is not for client authentication (its extended key usage lacks clientAuth)", corev1.TLSCertKey), changes
	}
	return cert, changes
}

// keyPairProblem words crypto/tls's errors about a certificate and key.
// They never carry key material; they are still replaced by fixed texts
// so no future wording can leak any.
func keyPairProblem(err error) string {
	msg := err.Error()
	switch {
	case containsAny(msg, "does not match"):
		return fmt.Sprintf("%s does not match the certificate in %s", corev1.TLSPrivateKeyKey, corev1.TLSCertKey)
	case containsAny(msg, "in certificate input"):
		return fmt.Sprintf("%s holds no PEM certificate", corev1.TLSCertKey)
	case containsAny(msg, "in key input", "private key"):
		return fmt.Sprintf("%s holds no usable PEM private key", corev1.TLSPrivateKeyKey)
	default:
		return fmt.Sprintf("%s and %s do not form a certificate and key", corev1.TLSCertKey, corev1.TLSPrivateKeyKey)
	}
}

func containsAny(s string, subs ...string) bool {
	return slices.ContainsFunc(subs, func(sub string) bool { return strings.Contains(s, sub) })
}

// validityProblem says why a certificate is not valid at now.
func validityProblem(c *x509.Certificate, now time.Time) string {
	switch {
	case now.After(c.NotAfter):
		return fmt.Sprintf("the certificate expired at %s", c.NotAfter.UTC().Format(time.RFC3339))
	case now.Before(c.NotBefore):
		return fmt.Sprintf("the certificate is not valid before %s", c.NotBefore.UTC().Format(time.RFC3339))
	}
	return ""
}

// checkCABundle checks a PEM CA bundle: at least one certificate, every
// block a certificate, and at least one of them valid now.
func checkCABundle(data []byte, now time.Time) (bundle *translator.CABundle, changes []time.Time) {
	fail := func(format string, args ...any) *translator.CABundle {
		return &translator.CABundle{Problem: fmt.Sprintf(format, args...)}
	}
	var valid int
	rest := data
	for n := 0; ; n++ {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			if n == 0 {
				return fail("holds no PEM certificate"), nil
			}
			break
		}
		if block.Type != "CERTIFICATE" {
			return fail("PEM block %d is a %q, want only CERTIFICATE blocks", n+1, block.Type), nil
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return fail("certificate %d cannot be parsed: %v", n+1, err), nil
		}
		changes = append(changes, c.NotBefore, c.NotAfter)
		if validityProblem(c, now) == "" {
			valid++
		}
	}
	if valid == 0 {
		return fail("none of its certificates is valid now (expired or not yet valid)"), changes
	}
	return &translator.CABundle{PEM: data}, changes
}

// scheduleTLSRecheck builds a new World just after at, when a certificate
// starts or stops being valid, so an expiring client certificate stops its
// mirror (and says so) without any Kubernetes change. Called from the
// goroutine that builds Worlds.
func (w *Watcher) scheduleTLSRecheck(at time.Time) {
	if w.tlsRecheck != nil {
		w.tlsRecheck.Stop()
		w.tlsRecheck = nil
	}
	if at.IsZero() {
		return
	}
	// A second late, so the certificate is past the instant it changes.
	delay := at.Sub(w.opts.clock.Now()) + time.Second
	if delayed, ok := w.opts.clock.(clock.WithDelayedExecution); ok {
		w.tlsRecheck = delayed.AfterFunc(delay, w.debounce.mark)
		return
	}
	w.tlsRecheck = clock.RealClock{}.AfterFunc(delay, w.debounce.mark)
}
