package harness

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	authnv1 "k8s.io/api/authentication/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/utils/ptr"

	"github.com/shadowplane/shadowplane/internal/certs"
	"github.com/shadowplane/shadowplane/internal/kubeauth"
)

// XDSServerName is the DNS name the test control plane's certificate
// carries and sidecars check, as in a cluster.
const XDSServerName = "shadowplane.shadowplane-system.svc"

// XDSCerts are the files of a test control plane's TLS: a CA directory laid
// out like a mounted ConfigMap (for sidecars) and the serving pair.
type XDSCerts struct {
	CA       *certs.Authority
	CADir    string // holds ca.crt the way kubelet mounts a ConfigMap
	CAFile   string
	CertFile string
	KeyFile  string
}

// NewXDSCerts makes a CA and a serving certificate for XDSServerName and
// 127.0.0.1 under dir.
func NewXDSCerts(dir string) (*XDSCerts, error) {
	now := time.Now()
	ca, err := certs.NewAuthority("shadowplane-test-ca", time.Hour*24, now)
	if err != nil {
		return nil, err
	}
	c := &XDSCerts{CA: ca, CADir: filepath.Join(dir, "ca"), CertFile: filepath.Join(dir, "tls.crt"), KeyFile: filepath.Join(dir, "tls.key")}
	c.CAFile = filepath.Join(c.CADir, "ca.crt")
	if err := WriteProjected(c.CADir, map[string][]byte{"ca.crt": ca.CertPEM}); err != nil {
		return nil, err
	}
	if err := c.IssueServing(now); err != nil {
		return nil, err
	}
	return c, nil
}

// IssueServing writes a new serving certificate from the same CA: a
// rotation, as `shadowplane certgen` or cert-manager does it.
func (c *XDSCerts) IssueServing(now time.Time) error {
	pair, err := c.CA.Issue([]string{XDSServerName}, []net.IP{net.IPv4(127, 0, 0, 1)}, time.Hour, now)
	if err != nil {
		return err
	}
	return certs.WriteFiles(pair, c.CertFile, c.KeyFile)
}

// WriteProjected writes files into dir the way kubelet updates a projected
// or ConfigMap volume: into a fresh timestamped directory, then one atomic
// rename of the ..data symlink; each file is a symlink through ..data.
func WriteProjected(dir string, files map[string][]byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	stamp := "..data_" + strconv.FormatInt(time.Now().UnixNano(), 10)
	if err := os.Mkdir(filepath.Join(dir, stamp), 0o755); err != nil {
		return err
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, stamp, name), data, 0o644); err != nil {
			return err
		}
	}
	tmp := filepath.Join(dir, "..data_tmp")
	_ = os.Remove(tmp)
	if err := os.Symlink(stamp, tmp); err != nil {
		return err
	}
	old, _ := os.Readlink(filepath.Join(dir, "..data"))
	if err := os.Rename(tmp, filepath.Join(dir, "..data")); err != nil {
		return err
	}
	for name := range files {
		link := filepath.Join(dir, name)
		if _, err := os.Lstat(link); os.IsNotExist(err) {
			if err := os.Symlink(filepath.Join("..data", name), link); err != nil {
				return err
			}
		}
	}
	if old != "" && old != stamp {
		_ = os.RemoveAll(filepath.Join(dir, old))
	}
	return nil
}

// SidecarIdentity is what a real sidecar's identity rests on: a
// ServiceAccount, its Pod, and a projected token bound to that Pod.
type SidecarIdentity struct {
	Namespace      string
	ServiceAccount string
	PodName        string
	PodUID         string
	TokenDir       string
	TokenFile      string
}

// NewSidecarIdentity creates ServiceAccount serviceAccount and Pod podName
// (labelled app=<service>, so the test Service of that name selects it) in
// namespace, and writes a token bound to the Pod, for audience
// kubeauth.DefaultAudience, into dir/token the way kubelet does.
func (k *Kube) NewSidecarIdentity(ctx context.Context, namespace, service, serviceAccount, podName, dir string) (*SidecarIdentity, error) {
	_, err := k.Client.CoreV1().ServiceAccounts(namespace).Create(ctx, &corev1.ServiceAccount{
		ObjectMeta: metav1.ObjectMeta{Name: serviceAccount, Namespace: namespace},
	}, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return nil, fmt.Errorf("create ServiceAccount: %w", err)
	}
	pod, err := k.Client.CoreV1().Pods(namespace).Create(ctx, &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: podName, Namespace: namespace, Labels: map[string]string{"app": service, "shadowplane.io/sidecar": "true"}},
		Spec: corev1.PodSpec{
			ServiceAccountName: serviceAccount,
			Containers:         []corev1.Container{{Name: "app", Image: "app:test"}},
		},
	}, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		pod, err = k.Client.CoreV1().Pods(namespace).Get(ctx, podName, metav1.GetOptions{})
	}
	if err != nil {
		return nil, fmt.Errorf("create Pod: %w", err)
	}
	id := &SidecarIdentity{Namespace: namespace, ServiceAccount: serviceAccount, PodName: podName, PodUID: string(pod.UID),
		TokenDir: filepath.Join(dir, "token")}
	id.TokenFile = filepath.Join(id.TokenDir, "token")
	if err := k.RefreshToken(ctx, id); err != nil {
		return nil, err
	}
	return id, nil
}

// RefreshToken mints a new token for the identity and swaps it in, as
// kubelet does before the old one expires.
func (k *Kube) RefreshToken(ctx context.Context, id *SidecarIdentity) error {
	token, err := k.MintToken(ctx, id.Namespace, id.ServiceAccount, id.PodName, id.PodUID, kubeauth.DefaultAudience)
	if err != nil {
		return err
	}
	return WriteProjected(id.TokenDir, map[string][]byte{"token": []byte(token)})
}

// MintToken asks the API server for a ServiceAccount token bound to a Pod
// (TokenRequest), for audience.
func (k *Kube) MintToken(ctx context.Context, namespace, serviceAccount, podName, podUID, audience string) (string, error) {
	tr, err := k.Client.CoreV1().ServiceAccounts(namespace).CreateToken(ctx, serviceAccount, &authnv1.TokenRequest{
		Spec: authnv1.TokenRequestSpec{
			Audiences:         []string{audience},
			ExpirationSeconds: ptr.To[int64](3600),
			BoundObjectRef:    &authnv1.BoundObjectReference{Kind: "Pod", APIVersion: "v1", Name: podName, UID: types.UID(podUID)},
		},
	}, metav1.CreateOptions{})
	if err != nil {
		return "", fmt.Errorf("TokenRequest for %s/%s: %w", namespace, serviceAccount, err)
	}
	return tr.Status.Token, nil
}

// IssueServingFrom writes a serving certificate signed by another CA: the
// last step of a CA rotation, once sidecars trust both.
func (c *XDSCerts) IssueServingFrom(ca *certs.Authority, now time.Time) error {
	pair, err := ca.Issue([]string{XDSServerName}, []net.IP{net.IPv4(127, 0, 0, 1)}, time.Hour, now)
	if err != nil {
		return err
	}
	return certs.WriteFiles(pair, c.CertFile, c.KeyFile)
}

// DialXDS connects to a secure control plane the way a sidecar does: TLS
// verified against caPEM for XDSServerName, and, when token is not empty,
// "authorization: Bearer <token>" on every stream.
func DialXDS(address string, caPEM []byte, token string) (*grpc.ClientConn, error) {
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("no CA certificate in the bundle")
	}
	opts := []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		RootCAs: roots, ServerName: XDSServerName, MinVersion: tls.VersionTLS13,
	}))}
	if token != "" {
		opts = append(opts, grpc.WithPerRPCCredentials(bearerToken(token)))
	}
	return grpc.NewClient(address, opts...)
}

type bearerToken string

func (b bearerToken) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return map[string]string{"authorization": "Bearer " + string(b)}, nil
}

func (bearerToken) RequireTransportSecurity() bool { return true }

// ServingCertificate returns the certificate a TLS server at address
// presents for XDSServerName, verified against caPEM.
func ServingCertificate(address string, caPEM []byte) (*x509.Certificate, error) {
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(caPEM)
	conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", address,
		&tls.Config{RootCAs: roots, ServerName: XDSServerName, NextProtos: []string{"h2"}, MinVersion: tls.VersionTLS13})
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0], nil
}
