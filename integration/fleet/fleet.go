// Package fleet simulates Envoy sidecars for scale benchmarks: each Sidecar
// is a real gRPC ADS client on its own connection that behaves like Envoy's
// xDS client: it subscribes to listeners and clusters (wildcard) and to the
// RTDS layer, then to the routes its listeners name and the endpoints its
// EDS clusters name; it ACKs every response it can decode and NACKs one it
// cannot, by nonce, SotW or delta. It records what it acknowledged and
// when, so a benchmark can time convergence and changes.
//
// internal/testtools/adsclient is the ADS client of the tests, but its
// methods fail the test and must run on the test's goroutine, which ten
// thousand concurrent sidecars cannot; this one reports errors instead.
package fleet

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/shadowplane/shadowplane/translator"
)

// Acked is what a sidecar acknowledged of one type.
type Acked struct {
	Version string
	At      time.Time
}

// Sidecar is one simulated Envoy.
type Sidecar struct {
	Node  *corev3.Node
	Delta bool

	mu    sync.Mutex
	acked map[string]Acked // by type URL
	// subscribed are the types asked for so far; the sidecar is synced
	// once it acknowledged each.
	subscribed map[string]bool
	nacks      int
	started    time.Time
	synced     time.Time // when every type was first acknowledged
	err        error     // of the last failed stream
	failures   int
}

// New makes a sidecar with the node identity `shadowplane bootstrap`
// writes.
func New(node *corev3.Node, delta bool) *Sidecar {
	return &Sidecar{Node: node, Delta: delta, acked: map[string]Acked{}, subscribed: map[string]bool{}}
}

// Run speaks ADS on conn until ctx ends. Like Envoy, it opens a new
// stream after one fails, after a jittered backoff (0.5 s doubling to 8 s),
// and counts the failures.
func (s *Sidecar) Run(ctx context.Context, conn grpc.ClientConnInterface) {
	s.mu.Lock()
	s.started = time.Now()
	s.mu.Unlock()
	client := discoveryv3.NewAggregatedDiscoveryServiceClient(conn)
	backoff := 500 * time.Millisecond
	for {
		var err error
		if s.Delta {
			err = s.runDelta(ctx, client)
		} else {
			err = s.runSotW(ctx, client)
		}
		if ctx.Err() != nil {
			return
		}
		s.mu.Lock()
		s.err, s.failures = err, s.failures+1
		s.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff/2 + time.Duration(rand.Int64N(int64(backoff/2)))):
		}
		backoff = min(2*backoff, 8*time.Second)
	}
}

// Failures counts the streams that ended in an error, and returns the
// last error.
func (s *Sidecar) Failures() (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.failures, s.err
}

// AckedOf returns what the sidecar last acknowledged of a type.
func (s *Sidecar) AckedOf(typeURL string) Acked {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.acked[typeURL]
}

// Convergence is the time from Run to every type acknowledged; false while
// not synced.
func (s *Sidecar) Convergence() (time.Duration, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.synced.IsZero() {
		return 0, false
	}
	return s.synced.Sub(s.started), true
}

// Nacks counts the responses the sidecar rejected.
func (s *Sidecar) Nacks() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.nacks
}

func (s *Sidecar) ack(typeURL, version string) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.acked[typeURL] = Acked{Version: version, At: now}
	if !s.synced.IsZero() {
		return
	}
	for t := range s.subscribed {
		if _, ok := s.acked[t]; !ok {
			return
		}
	}
	// Listeners and clusters come first; their dependents are subscribed
	// before their ACK is recorded, so this is the full set.
	s.synced = now
}

func (s *Sidecar) subscribe(typeURL string) {
	s.mu.Lock()
	s.subscribed[typeURL] = true
	s.mu.Unlock()
}

func (s *Sidecar) nack() {
	s.mu.Lock()
	s.nacks++
	s.mu.Unlock()
}

// decoded remembers dependentNames by type URL and version: a version names
// one content of its type (shadowplane's versions are content hashes, the
// floor server's a counter for one resource set), and ten thousand
// simulated sidecars in one process decoding the same listeners would
// take the cores the server is measured on. Real sidecars decode their
// own, on their own machines.
var decoded sync.Map // [2]string{typeURL, version} → dependents

type dependents struct {
	typeURL string
	names   []string
}

// dependentNamesOf is dependentNames, remembered by version; a version
// that fails to decode is not remembered.
func dependentNamesOf(typeURL, version string, resources []*anypb.Any) (string, []string, error) {
	key := [2]string{typeURL, version}
	if d, ok := decoded.Load(key); ok {
		return d.(dependents).typeURL, d.(dependents).names, nil
	}
	dep, names, err := dependentNames(typeURL, resources)
	if err == nil && version != "" {
		decoded.Store(key, dependents{dep, names})
	}
	return dep, names, err
}

// dependentNames reads, from a response's resources, the names of the type
// they make the sidecar subscribe to: routes for listeners, endpoints for
// EDS clusters. It returns "" when the type has no dependents.
func dependentNames(typeURL string, resources []*anypb.Any) (string, []string, error) {
	var names []string
	switch typeURL {
	case resource.ListenerType:
		for _, r := range resources {
			l := &listenerv3.Listener{}
			if err := r.UnmarshalTo(l); err != nil {
				return "", nil, err
			}
			for _, fc := range l.GetFilterChains() {
				for _, f := range fc.GetFilters() {
					hcm := &hcmv3.HttpConnectionManager{}
					if f.GetTypedConfig() == nil || f.GetTypedConfig().UnmarshalTo(hcm) != nil {
						continue
					}
					if name := hcm.GetRds().GetRouteConfigName(); name != "" {
						names = append(names, name)
					}
				}
			}
		}
		return resource.RouteType, sorted(names), nil
	case resource.ClusterType:
		for _, r := range resources {
			c := &clusterv3.Cluster{}
			if err := r.UnmarshalTo(c); err != nil {
				return "", nil, err
			}
			if c.GetType() == clusterv3.Cluster_EDS {
				name := c.GetEdsClusterConfig().GetServiceName()
				if name == "" {
					name = c.GetName()
				}
				names = append(names, name)
			}
		}
		return resource.EndpointType, sorted(names), nil
	}
	return "", nil, nil
}

func sorted(names []string) []string {
	slices.Sort(names)
	return slices.Compact(names)
}

// initialNames are the first subscriptions: wildcard listeners and
// clusters, the RTDS layer by name, routes and endpoints once named.
func initialNames() map[string][]string {
	return map[string][]string{
		resource.ClusterType:  nil,
		resource.ListenerType: nil,
		resource.RuntimeType:  {translator.RuntimeLayerName},
	}
}

func (s *Sidecar) runSotW(ctx context.Context, client discoveryv3.AggregatedDiscoveryServiceClient) error {
	stream, err := client.StreamAggregatedResources(ctx)
	if err != nil {
		return fmt.Errorf("open SotW stream: %w", err)
	}
	names := initialNames()
	versions := map[string]string{}
	first := true
	send := func(typeURL, nonce string, detail *rpcstatus.Status) error {
		req := &discoveryv3.DiscoveryRequest{TypeUrl: typeURL, VersionInfo: versions[typeURL], ResponseNonce: nonce,
			ResourceNames: names[typeURL], ErrorDetail: detail}
		if first {
			req.Node, first = s.Node, false
		}
		return stream.Send(req)
	}
	for _, t := range []string{resource.ClusterType, resource.ListenerType, resource.RuntimeType} {
		s.subscribe(t)
		if err := send(t, "", nil); err != nil {
			return err
		}
	}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return err
		}
		typeURL := resp.GetTypeUrl()
		dep, depNames, err := dependentNamesOf(typeURL, resp.GetVersionInfo(), resp.GetResources())
		if err != nil {
			s.nack()
			if err := send(typeURL, resp.GetNonce(), &rpcstatus.Status{Message: err.Error()}); err != nil {
				return err
			}
			continue
		}
		versions[typeURL] = resp.GetVersionInfo()
		// An empty SotW subscription would be a wildcard: a type with no
		// names yet is not asked for, as Envoy does.
		_, subscribed := names[dep]
		resubscribe := dep != "" && len(depNames) > 0 && (!subscribed || !slices.Equal(names[dep], depNames))
		if resubscribe {
			s.subscribe(dep)
		}
		if err := send(typeURL, resp.GetNonce(), nil); err != nil {
			return err
		}
		s.ack(typeURL, resp.GetVersionInfo())
		if resubscribe {
			names[dep] = depNames
			if err := send(dep, "", nil); err != nil {
				return err
			}
		}
	}
}

func (s *Sidecar) runDelta(ctx context.Context, client discoveryv3.AggregatedDiscoveryServiceClient) error {
	stream, err := client.DeltaAggregatedResources(ctx)
	if err != nil {
		return fmt.Errorf("open delta stream: %w", err)
	}
	names := initialNames()
	first := true
	send := func(req *discoveryv3.DeltaDiscoveryRequest) error {
		if first {
			req.Node, first = s.Node, false
		}
		return stream.Send(req)
	}
	for _, t := range []string{resource.ClusterType, resource.ListenerType, resource.RuntimeType} {
		s.subscribe(t)
		if err := send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: t, ResourceNamesSubscribe: names[t]}); err != nil {
			return err
		}
	}
	// Delta responses carry only what changed; keep each type's resources
	// to know the full set a dependent subscription needs.
	held := map[string]map[string]*anypb.Any{}
	for {
		resp, err := stream.Recv()
		if err != nil {
			return err
		}
		typeURL := resp.GetTypeUrl()
		if held[typeURL] == nil {
			held[typeURL] = map[string]*anypb.Any{}
		}
		for _, r := range resp.GetResources() {
			held[typeURL][r.GetName()] = r.GetResource()
		}
		for _, name := range resp.GetRemovedResources() {
			delete(held[typeURL], name)
		}
		all := make([]*anypb.Any, 0, len(held[typeURL]))
		for _, r := range held[typeURL] {
			all = append(all, r)
		}
		dep, depNames, err := dependentNamesOf(typeURL, resp.GetSystemVersionInfo(), all)
		if err != nil {
			s.nack()
			if err := send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: typeURL, ResponseNonce: resp.GetNonce(),
				ErrorDetail: &rpcstatus.Status{Message: err.Error()}}); err != nil {
				return err
			}
			continue
		}
		old, subscribed := names[dep]
		resubscribe := dep != "" && !slices.Equal(old, depNames) && (subscribed || len(depNames) > 0)
		if resubscribe {
			s.subscribe(dep)
		}
		if err := send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: typeURL, ResponseNonce: resp.GetNonce()}); err != nil {
			return err
		}
		s.ack(typeURL, resp.GetSystemVersionInfo())
		if !resubscribe {
			continue
		}
		names[dep] = depNames
		req := &discoveryv3.DeltaDiscoveryRequest{TypeUrl: dep}
		for _, n := range depNames {
			if !slices.Contains(old, n) {
				req.ResourceNamesSubscribe = append(req.ResourceNamesSubscribe, n)
			}
		}
		for _, n := range old {
			if !slices.Contains(depNames, n) {
				req.ResourceNamesUnsubscribe = append(req.ResourceNamesUnsubscribe, n)
			}
		}
		if err := send(req); err != nil {
			return err
		}
	}
}
