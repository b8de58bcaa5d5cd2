// Command floorserver is the least an ADS server over gRPC-go can do, for
// `make bench-scale` to measure shadowplane against: the same gRPC server
// settings as `shadowplane serve` (buffers, keepalive), one fixed set of
// resources marshalled once for every sidecar, no node groups, no
// identity, no status, no translation. The handler goroutine receives;
// a response goes out on the handler's goroutine or, for a push, on the
// pusher's. What it costs per sidecar is what gRPC-go and the protocol
// cost, so a target below its figures cannot be met by a gRPC-go server.
//
//	floorserver -xds 127.0.0.1:PORT -http 127.0.0.1:PORT
//
// GET /push sends every stream a new runtime layer version and returns
// once all were written; GET /ready answers 200.
package main

import (
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	runtimev3 "github.com/envoyproxy/go-control-plane/envoy/service/runtime/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/shadowplane/shadowplane/translator"
)

func main() {
	xdsAddr := flag.String("xds", "127.0.0.1:0", "ADS listen address")
	httpAddr := flag.String("http", "127.0.0.1:0", "push and readiness listen address")
	flag.Parse()
	s := newServer()
	g := grpc.NewServer(
		grpc.ReadBufferSize(4<<10), grpc.WriteBufferSize(16<<10), grpc.SharedWriteBuffer(true),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 5 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 15 * time.Second, PermitWithoutStream: true}),
	)
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, s)
	l, err := net.Listen("tcp", *xdsAddr)
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/ready", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ready") })
	mux.HandleFunc("/push", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, s.push())
	})
	go func() { log.Fatal(http.ListenAndServe(*httpAddr, mux)) }()
	fmt.Fprintln(os.Stderr, "floorserver serving")
	log.Fatal(g.Serve(l))
}

type server struct {
	discoveryv3.UnimplementedAggregatedDiscoveryServiceServer

	mu      sync.Mutex
	version int
	// byType are each type's resources, marshalled once.
	byType  map[string][]*anypb.Any
	streams map[*stream]struct{}
}

// stream is one sidecar's stream; send serialises its writers.
type stream struct {
	mu    sync.Mutex
	nonce int
	sotw  discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesServer
	delta discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesServer
}

func newServer() *server {
	must := func(m proto.Message) *anypb.Any {
		a, err := anypb.New(m)
		if err != nil {
			panic(err)
		}
		return a
	}
	hcm := must(&hcmv3.HttpConnectionManager{StatPrefix: "inbound", RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{
		Rds: &hcmv3.Rds{RouteConfigName: "inbound", ConfigSource: &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}},
	}})
	s := &server{streams: map[*stream]struct{}{}, byType: map[string][]*anypb.Any{
		resource.ListenerType: {must(&listenerv3.Listener{Name: "inbound", FilterChains: []*listenerv3.FilterChain{{
			Filters: []*listenerv3.Filter{{Name: "envoy.filters.network.http_connection_manager", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: hcm}}},
		}}})},
		resource.RouteType: {must(&routev3.RouteConfiguration{Name: "inbound"})},
		resource.ClusterType: {must(&clusterv3.Cluster{Name: "shadow", ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
			EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{EdsConfig: &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}}})},
		resource.EndpointType: {must(&endpointv3.ClusterLoadAssignment{ClusterName: "shadow"})},
	}}
	s.setRuntime(1)
	return s
}

// setRuntime makes version v of the runtime layer. Callers hold mu, or
// own s alone.
func (s *server) setRuntime(v int) {
	layer, _ := structpb.NewStruct(map[string]any{"shadowplane.floor.percent": float64(v % 100)})
	a, err := anypb.New(&runtimev3.Runtime{Name: translator.RuntimeLayerName, Layer: layer})
	if err != nil {
		panic(err)
	}
	s.version = v
	s.byType[resource.RuntimeType] = []*anypb.Any{a}
}

func (s *server) add(st *stream) {
	s.mu.Lock()
	s.streams[st] = struct{}{}
	s.mu.Unlock()
}

func (s *server) remove(st *stream) {
	s.mu.Lock()
	delete(s.streams, st)
	s.mu.Unlock()
}

func (s *server) current(typeURL string) (string, []*anypb.Any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strconv.Itoa(s.version), s.byType[typeURL]
}

// push sends every stream a new runtime version.
func (s *server) push() string {
	s.mu.Lock()
	s.setRuntime(s.version + 1)
	streams := make([]*stream, 0, len(s.streams))
	for st := range s.streams {
		streams = append(streams, st)
	}
	s.mu.Unlock()
	failed := 0
	for _, st := range streams {
		if err := s.send(st, resource.RuntimeType); err != nil {
			failed++
		}
	}
	return fmt.Sprintf("pushed to %d streams, %d failed", len(streams), failed)
}

func (s *server) send(st *stream, typeURL string) error {
	version, resources := s.current(typeURL)
	st.mu.Lock()
	defer st.mu.Unlock()
	st.nonce++
	nonce := strconv.Itoa(st.nonce)
	if st.sotw != nil {
		return st.sotw.Send(&discoveryv3.DiscoveryResponse{VersionInfo: version, TypeUrl: typeURL, Nonce: nonce, Resources: resources})
	}
	out := make([]*discoveryv3.Resource, len(resources))
	for i, r := range resources {
		out[i] = &discoveryv3.Resource{Name: strconv.Itoa(i), Version: version, Resource: r}
	}
	return st.delta.Send(&discoveryv3.DeltaDiscoveryResponse{SystemVersionInfo: version, TypeUrl: typeURL, Nonce: nonce, Resources: out})
}

// StreamAggregatedResources answers every request that is not an ACK:
// a new subscription or a changed resource list.
func (s *server) StreamAggregatedResources(ss discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	st := &stream{sotw: ss}
	s.add(st)
	defer s.remove(st)
	for {
		req, err := ss.Recv()
		if err != nil {
			return err
		}
		if req.GetResponseNonce() != "" && req.GetErrorDetail() == nil && req.GetVersionInfo() != "" {
			continue // an ACK
		}
		if err := s.send(st, req.GetTypeUrl()); err != nil {
			return err
		}
	}
}

// DeltaAggregatedResources answers every subscription; ACKs need nothing.
func (s *server) DeltaAggregatedResources(ds discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesServer) error {
	st := &stream{delta: ds}
	s.add(st)
	defer s.remove(st)
	for {
		req, err := ds.Recv()
		if err != nil {
			return err
		}
		if req.GetResponseNonce() != "" && len(req.GetResourceNamesSubscribe()) == 0 {
			continue // an ACK
		}
		if err := s.send(st, req.GetTypeUrl()); err != nil {
			return err
		}
	}
}
