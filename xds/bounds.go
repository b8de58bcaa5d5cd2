package xds

import (
	"context"
	"fmt"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/shadowplane/shadowplane/internal/logging"
	"github.com/shadowplane/shadowplane/translator"
)

// Limits bound what one xDS client can make the control plane hold or do,
// so one abusive client cannot exhaust it or slow the other sidecars. Each
// refusal is a clear gRPC status, one log line and a counter.
type Limits struct {
	// MaxNodeBytes bounds what the control plane reads of a node: its id,
	// cluster and metadata (Envoy's own build and extension list, tens of
	// KiB, is left to the message size bound).
	MaxNodeBytes int
	// MaxNamesPerRequest bounds the resource names one request subscribes
	// to or unsubscribes from.
	MaxNamesPerRequest int
	// RequestsPerSecond and RequestBurst bound each stream's request rate.
	RequestsPerSecond float64
	RequestBurst      int
	// NewStreamsPerSecond and NewStreamBurst bound how fast streams may
	// start, across all clients; a stream waits up to NewStreamWait for a
	// slot, then is refused with ResourceExhausted.
	NewStreamsPerSecond float64
	NewStreamBurst      int
	NewStreamWait       time.Duration
	// MaxNackDetailBytes cuts a NACK's error_detail in logs and in the
	// proxy status.
	MaxNackDetailBytes int
	// MaxStreamsPerConnection bounds the xDS streams one connection may
	// hold open at once; Envoy uses one.
	MaxStreamsPerConnection int
	// MaxMessageBytes bounds one received message; the gRPC server must be
	// built with grpc.MaxRecvMsgSize(MaxMessageBytes) (ServerOptions).
	MaxMessageBytes int
}

// DefaultLimits are generous for any real sidecar: Envoy sends one node of
// a few hundred bytes, names a handful of resources per type, and a few
// requests per push.
func DefaultLimits() Limits {
	return Limits{
		MaxNodeBytes:            16 << 10,
		MaxNamesPerRequest:      1000,
		RequestsPerSecond:       20,
		RequestBurst:            100,
		NewStreamsPerSecond:     100,
		NewStreamBurst:          200,
		NewStreamWait:           time.Second,
		MaxNackDetailBytes:      1 << 10,
		MaxStreamsPerConnection: 8,
		MaxMessageBytes:         1 << 20,
	}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	l.MaxNodeBytes = positiveOr(l.MaxNodeBytes, d.MaxNodeBytes)
	l.MaxNamesPerRequest = positiveOr(l.MaxNamesPerRequest, d.MaxNamesPerRequest)
	l.RequestsPerSecond = positiveOr(l.RequestsPerSecond, d.RequestsPerSecond)
	l.RequestBurst = positiveOr(l.RequestBurst, d.RequestBurst)
	l.NewStreamsPerSecond = positiveOr(l.NewStreamsPerSecond, d.NewStreamsPerSecond)
	l.NewStreamBurst = positiveOr(l.NewStreamBurst, d.NewStreamBurst)
	l.NewStreamWait = positiveOr(l.NewStreamWait, d.NewStreamWait)
	l.MaxNackDetailBytes = positiveOr(l.MaxNackDetailBytes, d.MaxNackDetailBytes)
	l.MaxStreamsPerConnection = positiveOr(l.MaxStreamsPerConnection, d.MaxStreamsPerConnection)
	l.MaxMessageBytes = positiveOr(l.MaxMessageBytes, d.MaxMessageBytes)
	return l
}

// positiveOr is v when it is positive, else def: zero options mean "the
// default".
func positiveOr[T int | float64 | time.Duration](v, def T) T {
	if v > 0 {
		return v
	}
	return def
}

// Bound names, the label of shadowplane_xds_bounds_exceeded_total.
const (
	boundNodeSize      = "node_size"
	boundNames         = "resource_names"
	boundTypeURL       = "type_url"
	boundRequestRate   = "request_rate"
	boundNewStreamRate = "new_stream_rate"
	boundConnStreams   = "streams_per_connection"
	boundMessageSize   = "message_size"
)

var allBounds = []string{boundNodeSize, boundNames, boundTypeURL, boundRequestRate, boundNewStreamRate, boundConnStreams, boundMessageSize}

func newBoundsCounter(reg prometheus.Registerer) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "shadowplane_xds_bounds_exceeded_total",
		Help: "xDS requests or streams refused because they exceeded a bound, by bound.",
	}, []string{"bound"})
	reg.MustRegister(c)
	for _, b := range allBounds {
		c.WithLabelValues(b)
	}
	return c
}

// exceeded logs and counts a refused bound and returns its status.
func (s *Server) exceeded(bound string, code codes.Code, address, nodeID, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	s.boundsExceeded.WithLabelValues(bound).Inc()
	s.log.Warn("xDS bound exceeded", "bound", bound, "node", logging.Cut(nodeID, 256), "address", address, "error", msg)
	return status.Errorf(code, "shadowplane: %s", msg)
}

// checkRequest applies the per-request bounds, before anything is stored
// for the request: node size, names per request, known type URL, rate. The
// first answer to each response (the request naming its nonce) is free of
// the rate: it is paced by the server's own pushes.
func (s *Server) checkRequest(key streamKey, node *corev3.Node, typeURL, nonce string, names int) error {
	s.mu.Lock()
	st := s.streams[key]
	var limiter *rate.Limiter
	var address, nodeID string
	checked := false
	if st != nil {
		// The node that identified the stream was measured then;
		// go-control-plane passes that very node with later requests.
		checked = node != nil && node == st.firstNode
		if st.limiter == nil {
			st.limiter = rate.NewLimiter(rate.Limit(s.limits.RequestsPerSecond), s.limits.RequestBurst)
		}
		limiter, address, nodeID = st.limiter, st.address, st.nodeID
		if t := st.types[typeURL]; nonce != "" && t != nil && t.unanswered && t.sentNonce == nonce {
			t.unanswered = false
			limiter = nil
		}
	}
	s.mu.Unlock()
	if nodeID == "" {
		nodeID = node.GetId()
	}

	if node != nil && !checked {
		if n := proto.Size(claimedNode(node)); n > s.limits.MaxNodeBytes {
			return s.exceeded(boundNodeSize, codes.InvalidArgument, address, nodeID,
				"the node's id, cluster and metadata are %d bytes, more than the %d allowed", n, s.limits.MaxNodeBytes)
		}
	}
	if names > s.limits.MaxNamesPerRequest {
		return s.exceeded(boundNames, codes.InvalidArgument, address, nodeID,
			"the request names %d resources, more than the %d allowed", names, s.limits.MaxNamesPerRequest)
	}
	if _, served := translator.ResourceTypeOf(typeURL); !served {
		return s.exceeded(boundTypeURL, codes.InvalidArgument, address, nodeID,
			"type %q is not served here", logging.Cut(typeURL, 128))
	}
	if limiter != nil && !limiter.Allow() {
		return s.exceeded(boundRequestRate, codes.ResourceExhausted, address, nodeID,
			"more than %g requests per second on one stream (burst %d)", s.limits.RequestsPerSecond, s.limits.RequestBurst)
	}
	return nil
}

// gRPC transport buffers per connection; see ServerOptions.
const (
	readBufferBytes  = 4 << 10
	writeBufferBytes = 16 << 10
)

// ServerOptions are the gRPC server options that enforce the transport
// bounds: message size, streams per connection (a backstop above the
// counted limit, so the counted one answers first with a clear status), and
// the admission interceptor ahead of authentication; and the transport's
// buffer sizes.
func (s *Server) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		// Per connection gRPC keeps a read and a write buffer, 32 KiB each
		// by default: 64 KiB per sidecar, most of the memory of an idle
		// stream. Requests are small, so a 4 KiB read buffer does; the
		// write buffer, one HTTP/2 frame, is taken from a pool for each
		// flush and given back (docs/benchmarks.md, "Memory per stream").
		grpc.ReadBufferSize(readBufferBytes),
		grpc.WriteBufferSize(writeBufferBytes),
		grpc.SharedWriteBuffer(true),
		grpc.MaxRecvMsgSize(s.limits.MaxMessageBytes),
		grpc.MaxConcurrentStreams(uint32(2 * s.limits.MaxStreamsPerConnection)),
		grpc.ChainStreamInterceptor(s.admissionInterceptor(), s.StreamInterceptor()),
	}
}

// admissionInterceptor admits a new stream when its connection holds fewer
// than MaxStreamsPerConnection streams and the shared new-stream bucket,
// Istio-style, has a token: a burst of reconnecting sidecars is spread out
// rather than refused, and a flood is refused with ResourceExhausted after
// waiting NewStreamWait. It also reports oversized messages, which gRPC
// refuses before any of our code sees them.
func (s *Server) admissionInterceptor() grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		address := peerAddress(ss.Context())
		if !s.openConnStream(address) {
			return s.exceeded(boundConnStreams, codes.ResourceExhausted, address, "",
				"more than %d xDS streams on one connection", s.limits.MaxStreamsPerConnection)
		}
		defer s.closeConnStream(address)

		ctx, cancel := context.WithTimeout(ss.Context(), s.limits.NewStreamWait)
		err := s.newStreams.Wait(ctx)
		cancel()
		if err != nil {
			return s.exceeded(boundNewStreamRate, codes.ResourceExhausted, address, "",
				"too many new xDS streams (more than %g per second); retry later", s.limits.NewStreamsPerSecond)
		}
		err = handler(srv, &sizeReportingStream{ServerStream: ss, s: s, address: address})
		return err
	}
}

func (s *Server) openConnStream(address string) bool {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	if s.connStreams[address] >= s.limits.MaxStreamsPerConnection {
		return false
	}
	s.connStreams[address]++
	return true
}

func (s *Server) closeConnStream(address string) {
	s.connMu.Lock()
	defer s.connMu.Unlock()
	if s.connStreams[address]--; s.connStreams[address] <= 0 {
		delete(s.connStreams, address)
	}
}

// sizeReportingStream logs and counts a message refused for its size.
type sizeReportingStream struct {
	grpc.ServerStream
	s       *Server
	address string
}

func (w *sizeReportingStream) RecvMsg(m any) error {
	err := w.ServerStream.RecvMsg(m)
	if st, ok := status.FromError(err); ok && st.Code() == codes.ResourceExhausted {
		w.s.boundsExceeded.WithLabelValues(boundMessageSize).Inc()
		w.s.log.Warn("xDS bound exceeded", "bound", boundMessageSize, "address", w.address,
			"error", logging.Cut(st.Message(), 256))
	}
	return err
}

// claimedNode is the part of a node a sidecar claims things with: what the
// bounds measure and a stream remembers (not Envoy's extension list).
func claimedNode(n *corev3.Node) *corev3.Node {
	return &corev3.Node{Id: n.GetId(), Cluster: n.GetCluster(), Metadata: n.GetMetadata()}
}
