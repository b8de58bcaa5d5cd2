package xds

import (
	"fmt"
	"sort"
	"strings"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	runtimev3 "github.com/envoyproxy/go-control-plane/envoy/service/runtime/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"github.com/envoyproxy/go-control-plane/pkg/wellknown"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/shadowplane/shadowplane/internal/contenthash"
	"github.com/shadowplane/shadowplane/nodemeta"
	"github.com/shadowplane/shadowplane/policy"
	"github.com/shadowplane/shadowplane/translator"
)

// testWorld is a World with one policy copying ppm parts per million of
// shop/entrance's requests to staging/entrance, whose ready endpoints are
// the given addresses.
func testWorld(ppm uint32, endpoints ...string) *translator.World {
	port := []translator.ServicePort{{Name: "http", Port: 8080, TargetPort: 8080, Protocol: "TCP"}}
	staging := &translator.Service{Namespace: "staging", Name: "entrance", Ports: port}
	for _, addr := range endpoints {
		staging.Endpoints = append(staging.Endpoints, translator.Endpoint{Address: addr, Ports: map[string]int32{"http": 8080}})
	}
	// The port swap: shop/entrance's targetPort is the sidecar's listener.
	shop := &translator.Service{Namespace: "shop", Name: "entrance",
		Ports:     []translator.ServicePort{{Name: "http", Port: 8080, TargetPort: 15001, Protocol: "TCP"}},
		Endpoints: []translator.Endpoint{{Address: "127.0.0.10", Ports: map[string]int32{"http": 15001}}}}
	toStaging := &policy.Policy{
		Namespace: "shop",
		Name:      "to-staging",
		Source:    policy.Source{ConfigMap: "mirrors", Key: "policies.yaml"},
		Service:   "entrance",
		Port:      policy.PortRef{Name: "http"},
		Mirrors: []policy.Mirror{{
			Name:            "staging.entrance.8080",
			Service:         "entrance",
			Namespace:       "staging",
			Port:            policy.PortRef{Number: 8080},
			PartsPerMillion: ppm,
		}},
		MarkCopies: true,
	}
	return &translator.World{
		Services: map[string]*translator.Service{
			translator.ServiceKey(shop.Namespace, shop.Name):       shop,
			translator.ServiceKey(staging.Namespace, staging.Name): staging,
		},
		Policies: []*policy.Policy{toStaging},
	}
}

// testGroup is the node group of sidecarNode.
var testGroup = nodemeta.NodeGroup{
	Namespace:     "shop",
	Service:       "entrance",
	ListenAddress: "0.0.0.0",
	Ports:         []nodemeta.PortPair{{Listen: 15001, App: 8080}},
}

// sidecarNode is a node of testGroup, as `shadowplane bootstrap` writes it.
func sidecarNode(id string) *corev3.Node {
	return nodemeta.Metadata{
		NodeID:    id,
		Namespace: testGroup.Namespace,
		Service:   testGroup.Service,
		Ports:     testGroup.Ports,
	}.Node()
}

// metadataNode is a node with any metadata, valid or not.
func metadataNode(id string, metadata map[string]any) *corev3.Node {
	md, err := structpb.NewStruct(metadata)
	if err != nil {
		panic(err)
	}
	return &corev3.Node{Id: id, Cluster: "shop", Metadata: md}
}

// fakeTranslate stands in for translator.Translate with output whose shape
// the tests know exactly: per port pair a listener and route named
// "inbound_<listen>" sending to cluster "local_<app>"; per Service mirror an
// EDS cluster and endpoints named "shadow_<ns>_<name>_<port>"; one runtime
// layer with each mirror's share. As in the real translator, the routes'
// default fraction is 0, so a share change touches the runtime alone.
func fakeTranslate(w *translator.World, g nodemeta.NodeGroup) *translator.Output {
	out := &translator.Output{}
	var mirrorClusters []string
	layer := map[string]any{}
	for _, p := range w.Policies {
		for _, m := range p.Mirrors {
			name := fmt.Sprintf("shadow_%s_%s_%d", m.Namespace, m.Service, m.Port.Number)
			mirrorClusters = append(mirrorClusters, name)
			layer[policy.RuntimeKey(p, m)] = map[string]any{"numerator": float64(m.PartsPerMillion), "denominator": "MILLION"}
			out.Clusters = append(out.Clusters, &clusterv3.Cluster{
				Name:                 name,
				ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
				EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{
					EdsConfig: &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}},
				},
			})
			cla := &endpointv3.ClusterLoadAssignment{ClusterName: name}
			if svc := w.Service(m.Namespace, m.Service); svc != nil {
				lb := &endpointv3.LocalityLbEndpoints{}
				for _, e := range svc.Endpoints {
					lb.LbEndpoints = append(lb.LbEndpoints, &endpointv3.LbEndpoint{
						HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
							Address: socketAddress(e.Address, uint32(m.Port.Number)),
						}},
					})
				}
				cla.Endpoints = []*endpointv3.LocalityLbEndpoints{lb}
			}
			out.Endpoints = append(out.Endpoints, cla)
		}
	}
	sort.Strings(mirrorClusters)

	for _, pp := range g.Ports {
		name := fmt.Sprintf("inbound_%d", pp.Listen)
		local := fmt.Sprintf("local_%d", pp.App)
		out.Listeners = append(out.Listeners, testListener(name, g.ListenAddress, pp.Listen))
		action := &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: local}}
		for _, c := range mirrorClusters {
			action.RequestMirrorPolicies = append(action.RequestMirrorPolicies, &routev3.RouteAction_RequestMirrorPolicy{
				Cluster: c,
				RuntimeFraction: &corev3.RuntimeFractionalPercent{
					DefaultValue: &typev3.FractionalPercent{Denominator: typev3.FractionalPercent_MILLION},
					RuntimeKey:   "shadowplane." + strings.TrimPrefix(c, "shadow_"),
				},
			})
		}
		out.Routes = append(out.Routes, &routev3.RouteConfiguration{
			Name: name,
			VirtualHosts: []*routev3.VirtualHost{{
				Name:    name,
				Domains: []string{"*"},
				Routes: []*routev3.Route{{
					Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
					Action: &routev3.Route_Route{Route: action},
				}},
			}},
		})
		out.Clusters = append(out.Clusters, &clusterv3.Cluster{
			Name:                 local,
			ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
			LoadAssignment: &endpointv3.ClusterLoadAssignment{
				ClusterName: local,
				Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{{
					HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: socketAddress("127.0.0.1", pp.App)}},
				}}}},
			},
		})
	}

	rt, err := structpb.NewStruct(layer)
	if err != nil {
		panic(err)
	}
	out.Runtimes = []*runtimev3.Runtime{{Name: translator.RuntimeLayerName, Layer: rt}}
	out.Versions = map[string]string{}
	for _, t := range translator.ResourceTypes {
		out.Versions[t.URL] = contenthash.Messages(out.Resources(t.URL))
	}
	return out
}

func testListener(name, address string, port uint32) *listenerv3.Listener {
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: name,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			RouteConfigName: name,
			ConfigSource:    &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}},
		}},
	}
	typed, err := anypb.New(hcm)
	if err != nil {
		panic(err)
	}
	return &listenerv3.Listener{
		Name:    name,
		Address: socketAddress(address, port),
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
			Name:       wellknown.HTTPConnectionManager,
			ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: typed},
		}}}},
	}
}

func socketAddress(addr string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address:       addr,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

// Resource names fakeTranslate gives testGroup with testWorld.
const (
	testListenerName = "inbound_15001"
	testShadowName   = "shadow_staging_entrance_8080"
)
