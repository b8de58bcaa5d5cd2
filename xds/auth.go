package xds

import (
	"context"
	"errors"
	"strings"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/shadowplane/shadowplane/internal/kubeauth"
	"github.com/shadowplane/shadowplane/internal/logging"
	"github.com/shadowplane/shadowplane/nodemeta"
)

// Auth verifies who a sidecar is. With Auth set, every xDS stream must carry
// a bearer token that Authenticate accepts, and the node it claims must pass
// Verify before any configuration is looked up for it.
type Auth struct {
	// Authenticate turns a bearer token into a verified identity; an error
	// wrapping kubeauth.ErrUnauthenticated refuses the stream.
	Authenticate func(ctx context.Context, token string) (kubeauth.Identity, error)
	// Verify checks a node's claim against its identity; an error wrapping
	// kubeauth.ErrPermissionDenied refuses the stream.
	Verify func(ctx context.Context, id kubeauth.Identity, c kubeauth.Claim) error
}

// Refusal reasons, the label of shadowplane_xds_refused_streams_total.
const (
	refusedUnauthenticated  = "unauthenticated"
	refusedPermissionDenied = "permission_denied"
	refusedUnverifiable     = "identity_unavailable"
	refusedNodeChanged      = "node_changed"
)

var refusalReasons = []string{refusedUnauthenticated, refusedPermissionDenied, refusedUnverifiable, refusedNodeChanged}

type authMetrics struct {
	refused  *prometheus.CounterVec
	insecure prometheus.Gauge
}

func newAuthMetrics(reg prometheus.Registerer, insecure bool) *authMetrics {
	m := &authMetrics{
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shadowplane_xds_refused_streams_total",
			Help: "xDS streams refused before any configuration was served, by reason.",
		}, []string{"reason"}),
		insecure: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "shadowplane_xds_insecure",
			Help: "1 when xDS is served without TLS and without verifying sidecar identity (--insecure-xds).",
		}),
	}
	reg.MustRegister(m.refused, m.insecure)
	for _, r := range refusalReasons {
		m.refused.WithLabelValues(r)
	}
	if insecure {
		m.insecure.Set(1)
	}
	return m
}

// identityCheckTimeout bounds each call to the API server that verifies a
// stream, so a slow API server refuses streams (Unavailable; Envoy retries)
// instead of piling them up.
const identityCheckTimeout = 10 * time.Second

type identityKey struct{}

func identityFrom(ctx context.Context) (kubeauth.Identity, bool) {
	id, ok := ctx.Value(identityKey{}).(kubeauth.Identity)
	return id, ok
}

// StreamInterceptor authenticates every stream before go-control-plane sees
// it: a stream without a valid token is refused with Unauthenticated, and
// the verified identity travels in the stream's context to the callbacks.
// Without Auth it passes streams through.
func (s *Server) StreamInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		if s.auth == nil {
			return handler(srv, ss)
		}
		ctx := ss.Context()
		authCtx, cancel := context.WithTimeout(ctx, identityCheckTimeout)
		id, err := s.auth.Authenticate(authCtx, bearerToken(ctx))
		cancel()
		if err != nil {
			return s.refuse(peerAddress(ctx), "", err)
		}
		return handler(srv, &authenticatedStream{ServerStream: ss, ctx: context.WithValue(ctx, identityKey{}, id)})
	}
}

type authenticatedStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (a *authenticatedStream) Context() context.Context { return a.ctx }

func bearerToken(ctx context.Context) string {
	md, _ := metadata.FromIncomingContext(ctx)
	for _, v := range md.Get("authorization") {
		if token, ok := strings.CutPrefix(v, "Bearer "); ok {
			return strings.TrimSpace(token)
		}
	}
	return ""
}

// verifyClaim checks that the stream's verified identity may claim node
// metadata naming namespace and service as node id nodeID.
func (s *Server) verifyClaim(ctx context.Context, address string, claim kubeauth.Claim) error {
	if s.auth == nil {
		return nil
	}
	id, ok := identityFrom(ctx)
	if !ok {
		// Only reachable if the interceptor was not installed: fail closed.
		return s.refuse(address, claim.NodeID, kubeauth.ErrUnauthenticated)
	}
	verifyCtx, cancel := context.WithTimeout(ctx, identityCheckTimeout)
	defer cancel()
	if err := s.auth.Verify(verifyCtx, id, claim); err != nil {
		return s.refuse(address, claim.NodeID, err)
	}
	return nil
}

// refuse logs one line, counts one refusal, and returns the gRPC status
// that ends the stream. The client learns why it was refused, never
// anything about the configuration it asked for.
func (s *Server) refuse(address, nodeID string, err error) error {
	var code codes.Code
	var reason string
	switch {
	case errors.Is(err, kubeauth.ErrUnauthenticated):
		code, reason = codes.Unauthenticated, refusedUnauthenticated
	case errors.Is(err, kubeauth.ErrPermissionDenied):
		code, reason = codes.PermissionDenied, refusedPermissionDenied
	case errors.Is(err, errNodeChanged):
		code, reason = codes.PermissionDenied, refusedNodeChanged
	default:
		code, reason = codes.Unavailable, refusedUnverifiable
	}
	s.authMetrics.refused.WithLabelValues(reason).Inc()
	s.log.Warn("refused xDS stream", "reason", reason, "node", logging.Cut(nodeID, 256), "address", address, "error", logging.Cut(err.Error(), 1024))
	return status.Errorf(code, "shadowplane: %v", err)
}

var errNodeChanged = errors.New("a stream's node may not change after its first request")

func peerAddress(ctx context.Context) string {
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		return p.Addr.String()
	}
	return ""
}

// VerifyNode checks a node as an ADS stream's first request is checked:
// its metadata names a valid node group and the stream's verified identity
// may claim it. Other gRPC services on the xDS server (the copy metrics
// sink) call it, so every stream a sidecar opens is held to the same proof.
func (s *Server) VerifyNode(ctx context.Context, node *corev3.Node) (nodemeta.NodeGroup, error) {
	group, err := nodemeta.GroupFromNode(node)
	if err != nil {
		s.metrics.invalidNodes.Inc()
		return nodemeta.NodeGroup{}, status.Errorf(codes.InvalidArgument, "shadowplane: %v", err)
	}
	claim := kubeauth.Claim{NodeID: node.GetId(), Namespace: group.Namespace, Service: group.Service}
	if err := s.verifyClaim(ctx, peerAddress(ctx), claim); err != nil {
		return nodemeta.NodeGroup{}, err
	}
	return group, nil
}
