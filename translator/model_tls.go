package translator

// ClientCertificate is the certificate and key of a labelled
// kubernetes.io/tls Secret, as the watcher found them.
type ClientCertificate struct {
	// CertChain and PrivateKey are PEM, as in the Secret's tls.crt and
	// tls.key.
	CertChain  []byte
	PrivateKey []byte
	// Problem says why the Secret cannot be used (wrong type, a key that
	// does not match the certificate, expired); "" when it can. It never
	// quotes the key.
	Problem string
}

// CABundle is one key of a labelled ConfigMap holding PEM CA certificates.
type CABundle struct {
	PEM []byte
	// Problem says why the bundle cannot be used; "" when it can.
	Problem string
}

// ClientCertificateKey is the World key of a Secret's client certificate.
func ClientCertificateKey(namespace, secret string) string { return namespace + "/" + secret }

// CABundleKey is the World key of one data key of a CA ConfigMap.
func CABundleKey(namespace, configMap, key string) string {
	return namespace + "/" + configMap + "/" + key
}

func (w *World) clientCertificate(namespace, secret string) *ClientCertificate {
	if w == nil {
		return nil
	}
	return w.ClientCertificates[ClientCertificateKey(namespace, secret)]
}

func (w *World) caBundle(namespace, configMap, key string) *CABundle {
	if w == nil {
		return nil
	}
	return w.CABundles[CABundleKey(namespace, configMap, key)]
}
