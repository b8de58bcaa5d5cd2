package peers

import (
	"context"
	"fmt"
	"net"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	secretv3 "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"

	"github.com/shadowplane/shadowplane/internal/certs"
)

// Istio's sidecar config names two SDS secrets that istio-agent serves on
// the sidecar's "sds-grpc" cluster: the workload certificate and the root.
const (
	istioWorkloadSecret = "default"
	istioRootSecret     = "ROOTCA"
)

// StubSDS stands in for istio-agent's SDS server: it serves a throwaway
// workload certificate and its CA under Istio's secret names, so the
// clusters and listeners istiod sends can finish warming in an upstream
// Envoy. Nothing connects with these certificates; they only have to parse.
type StubSDS struct {
	Addr   string // 127.0.0.1:port
	server *grpc.Server
	cancel context.CancelFunc
}

// StartStubSDS serves the two secrets on a loopback port.
func StartStubSDS() (*StubSDS, error) {
	now := time.Now()
	ca, err := certs.NewAuthority("bench-istio-root", 24*time.Hour, now)
	if err != nil {
		return nil, err
	}
	leaf, err := ca.Issue([]string{"entrance.bench.svc"}, nil, 24*time.Hour, now)
	if err != nil {
		return nil, err
	}
	secrets := []types.Resource{
		&tlsv3.Secret{Name: istioWorkloadSecret, Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
			CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: leaf.CertPEM}},
			PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: leaf.KeyPEM}},
		}}},
		&tlsv3.Secret{Name: istioRootSecret, Type: &tlsv3.Secret_ValidationContext{ValidationContext: &tlsv3.CertificateValidationContext{
			TrustedCa: &corev3.DataSource{Specifier: &corev3.DataSource_InlineBytes{InlineBytes: ca.CertPEM}},
		}}},
	}
	snapshot, err := cachev3.NewSnapshot("1", map[resourcev3.Type][]types.Resource{resourcev3.SecretType: secrets})
	if err != nil {
		return nil, fmt.Errorf("sds snapshot: %w", err)
	}
	cache := cachev3.NewSnapshotCache(false, oneGroup{}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	if err := cache.SetSnapshot(ctx, oneGroup{}.ID(nil), snapshot); err != nil {
		cancel()
		return nil, fmt.Errorf("sds snapshot: %w", err)
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		cancel()
		return nil, err
	}
	g := grpc.NewServer()
	secretv3.RegisterSecretDiscoveryServiceServer(g, serverv3.NewServer(ctx, cache, nil))
	go func() { _ = g.Serve(lis) }()
	return &StubSDS{Addr: lis.Addr().String(), server: g, cancel: cancel}, nil
}

// Stop ends the server and its streams.
func (s *StubSDS) Stop() {
	s.server.Stop()
	s.cancel()
}

// oneGroup gives every Envoy the same secrets.
type oneGroup struct{}

func (oneGroup) ID(*corev3.Node) string { return "istio-sidecars" }
