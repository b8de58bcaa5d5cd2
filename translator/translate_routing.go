package translator

import (
	"sort"
	"strconv"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/shadowplane/shadowplane/policy"
)

// routeBackendRef is one routeTo backend of one routing rule, resolved to
// its cluster.
type routeBackendRef struct {
	backend policy.RouteBackend
	cluster string
	// ready is false when the backend cannot take requests (Service or
	// port unknown, no ready endpoint): its share then stays on the stable
	// version, by RTDS, never as a 503.
	ready bool
}

// RouteClusterPrefix starts the name of every cluster that routing rules
// send real requests to: "route|<namespace>|<service>|<port>".
const RouteClusterPrefix = "route|"

// routeTarget is the cluster of one Service that routing rules send real
// traffic to.
type routeTarget struct {
	cluster   string
	endpoints []hostPort
}

// resolveRoutes resolves the routeTo backends of the given policies to
// clusters, recording each in t.routeTargets.
func (t *translation) resolveRoutes(policies []*policy.Policy) map[*policy.Policy][]routeBackendRef {
	out := map[*policy.Policy][]routeBackendRef{}
	for _, p := range policies {
		for _, b := range p.RouteTo {
			out[p] = append(out[p], t.resolveRouteBackend(p, b))
		}
	}
	return out
}

func (t *translation) resolveRouteBackend(p *policy.Policy, b policy.RouteBackend) routeBackendRef {
	svcKey := ServiceKey(p.Namespace, b.Service)
	ref := routeBackendRef{backend: b}
	svc := t.world.Service(p.Namespace, b.Service)
	portName := b.Port.String()
	var sp ServicePort
	found := false
	if svc != nil {
		if sp, found = svc.Port(b.Port); found {
			portName = strconv.Itoa(int(sp.Port))
		}
	}
	ref.cluster = RouteClusterPrefix + p.Namespace + "|" + b.Service + "|" + portName
	target := t.routeTargets[ref.cluster]
	if target == nil {
		target = &routeTarget{cluster: ref.cluster}
		if found {
			target.endpoints, _ = endpointAddresses(svc, sp)
		}
		t.routeTargets[ref.cluster] = target
	}
	ref.ready = len(target.endpoints) > 0
	if ref.ready {
		return ref
	}
	why := "has no ready endpoints"
	switch {
	case svc == nil:
		why = "is not found"
	case !found && b.Port.IsZero():
		why = "has several ports and the backend names none"
	case !found:
		why = "has no port " + b.Port.String()
	}
	t.warnf("policy %s: routeTo %s: Service %s %s; its share stays on the stable version", policyID(p), b.Name, svcKey, why)
	return ref
}

// weightedClusters sends a rule's requests to the stable version (the
// local application) and its backends. The weights in the route are only
// defaults (all on the stable version); the weights in force come from
// RTDS under the rule's runtime key prefix, so a weight change is an RTDS
// update alone and drains nothing. Envoy reads a missing key as its
// default, so a lost runtime layer falls back to the stable version.
func weightedClusters(rule *policy.Policy, backends []routeBackendRef, appPort uint32) *routev3.RouteAction_WeightedClusters {
	clusters := []*routev3.WeightedCluster_ClusterWeight{{
		Name:   appClusterName(appPort),
		Weight: wrapperspb.UInt32(1_000_000),
	}}
	for _, b := range backends {
		clusters = append(clusters, &routev3.WeightedCluster_ClusterWeight{Name: b.cluster, Weight: wrapperspb.UInt32(0)})
	}
	return &routev3.RouteAction_WeightedClusters{WeightedClusters: &routev3.WeightedCluster{
		Clusters:         clusters,
		RuntimeKeyPrefix: policy.RouteRuntimePrefix(rule),
	}}
}

// routeWeights adds the weights in force of one rule on one listener to
// the runtime layer: each ready backend its share, unready ones 0, and the
// stable version the rest. Envoy reads weights as integers, so they are
// plain numbers in parts per million.
func routeWeights(fields map[string]*structpb.Value, rule *policy.Policy, backends []routeBackendRef, appPort uint32) {
	prefix := policy.RouteRuntimePrefix(rule) + "."
	var routed uint32
	for _, b := range backends {
		share := uint32(0)
		if b.ready {
			share = b.backend.PartsPerMillion
		}
		routed += share
		fields[prefix+b.cluster] = structpb.NewNumberValue(float64(share))
	}
	fields[prefix+appClusterName(appPort)] = structpb.NewNumberValue(float64(1_000_000 - routed))
}

// routeClusters builds the clusters of the routeTo Services. Their
// endpoints are inline (STATIC), not EDS: a new cluster is usable the
// moment Envoy has it, with no warming while it waits for endpoints, so
// the route that ADS delivers right after it never points at a cluster
// that cannot take requests yet. Limits are as for the application:
// this is production traffic, not copies.
func (t *translation) routeClusters() []*clusterv3.Cluster {
	out := make([]*clusterv3.Cluster, 0, len(t.routeTargets))
	for _, target := range t.routeTargets {
		cla := &endpointv3.ClusterLoadAssignment{ClusterName: target.cluster}
		if len(target.endpoints) > 0 {
			lb := make([]*endpointv3.LbEndpoint, len(target.endpoints))
			for i, a := range target.endpoints {
				lb[i] = lbEndpoint(a.address, a.port)
			}
			cla.Endpoints = []*endpointv3.LocalityLbEndpoints{{LbEndpoints: lb}}
		}
		out = append(out, productionCluster(target.cluster, cla))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}
