// Package bootstrap renders the Envoy bootstrap of a shadowplane sidecar:
// node identity (which Service it fronts and its listen→app port pairs, as
// package nodemeta defines and checks them), the ADS cluster pointing at the
// control plane, an admin interface on loopback, and a layered runtime whose
// RTDS layer carries the mirror percentages.
package bootstrap

import (
	"fmt"
	"net"
	"strconv"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"sigs.k8s.io/yaml"

	"github.com/shadowplane/shadowplane/nodemeta"
	"github.com/shadowplane/shadowplane/translator"
)

// XDSClusterName is the static cluster through which the sidecar reaches the
// control plane.
const XDSClusterName = "shadowplane_xds"

// Defaults for Options.
const (
	DefaultAdminAddress = "127.0.0.1"
	DefaultAdminPort    = 15000
)

// Options describe one sidecar.
type Options struct {
	// Node is the sidecar's identity: which Service it fronts and its
	// listen→app port pairs. Render refuses metadata the control plane
	// would refuse, with the control plane's message.
	Node nodemeta.Metadata
	// XDSAddress is the control plane's gRPC address, host:port. A host name
	// is resolved by DNS (e.g. shadowplane.shadowplane-system.svc).
	XDSAddress string
	// AdminAddress and AdminPort place Envoy's admin interface; it stays on
	// loopback by default because it can change runtime values.
	AdminAddress string
	AdminPort    uint32
	// Delta selects incremental (delta) xDS instead of state-of-the-world.
	Delta bool
	// TLS secures the xDS connection and authenticates the sidecar; nil
	// means plain text, which only a control plane run with
	// --insecure-xds accepts.
	TLS *TLSOptions
	// StatsFlushInterval is how often the sidecar reports its copy stats
	// to the control plane (default DefaultStatsFlushInterval).
	StatsFlushInterval time.Duration
	// NoCopyStats turns the report off; Envoy still keeps only
	// shadowplane's stats.
	NoCopyStats bool
	// Health, when its Port is set, adds the listener the kubelet probes
	// (ReadyPath) and drains through (DrainPath).
	Health Health
}

// Render builds and validates the bootstrap.
func Render(o Options) (*bootstrapv3.Bootstrap, error) {
	if err := o.check(); err != nil {
		return nil, err
	}
	xdsHost, xdsPortText, _ := net.SplitHostPort(o.XDSAddress)
	xdsPort, _ := strconv.ParseUint(xdsPortText, 10, 32)
	adminAddress := o.AdminAddress
	if adminAddress == "" {
		adminAddress = DefaultAdminAddress
	}
	adminPort := o.AdminPort
	if adminPort == 0 {
		adminPort = DefaultAdminPort
	}

	apiType := corev3.ApiConfigSource_GRPC
	if o.Delta {
		apiType = corev3.ApiConfigSource_DELTA_GRPC
	}
	ads := &corev3.ConfigSource{
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
		ResourceApiVersion:    corev3.ApiVersion_V3,
	}

	xdsCluster, err := renderXDSCluster(xdsHost, uint32(xdsPort))
	if err != nil {
		return nil, err
	}
	if o.TLS != nil {
		if err := secureXDSCluster(xdsCluster, *o.TLS); err != nil {
			return nil, err
		}
	}

	clusters := []*clusterv3.Cluster{xdsCluster}
	var listeners []*listenerv3.Listener
	if o.Health.Port != 0 {
		if o.Health.Address == "" {
			o.Health.Address = o.Node.ListenAddress
		}
		if o.Health.Address == "" {
			o.Health.Address = nodemeta.DefaultListenAddress
		}
		listener, cluster, err := healthResources(o.Health, adminAddress, adminPort)
		if err != nil {
			return nil, fmt.Errorf("health listener: %w", err)
		}
		listeners, clusters = append(listeners, listener), append(clusters, cluster)
	}

	b := &bootstrapv3.Bootstrap{
		Node: o.Node.Node(),
		Admin: &bootstrapv3.Admin{
			Address: socketAddress(adminAddress, adminPort),
		},
		StaticResources: &bootstrapv3.Bootstrap_StaticResources{
			Clusters:  clusters,
			Listeners: listeners,
		},
		DynamicResources: &bootstrapv3.Bootstrap_DynamicResources{
			AdsConfig: &corev3.ApiConfigSource{
				ApiType:             apiType,
				TransportApiVersion: corev3.ApiVersion_V3,
				GrpcServices: []*corev3.GrpcService{{
					TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{
						EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: XDSClusterName},
					},
				}},
				SetNodeOnFirstMessageOnly: true,
			},
			LdsConfig: ads,
			CdsConfig: ads,
		},
		LayeredRuntime: &bootstrapv3.LayeredRuntime{
			Layers: []*bootstrapv3.RuntimeLayer{
				{
					// The RTDS layer holds every mirror's share; a percent
					// change is an update of this layer only.
					Name: translator.RuntimeLayerName,
					LayerSpecifier: &bootstrapv3.RuntimeLayer_RtdsLayer_{
						RtdsLayer: &bootstrapv3.RuntimeLayer_RtdsLayer{
							Name:       translator.RuntimeLayerName,
							RtdsConfig: ads,
						},
					},
				},
				{
					// Last, so an operator can override a value by hand with
					// the admin endpoint /runtime_modify while debugging.
					Name: "admin",
					LayerSpecifier: &bootstrapv3.RuntimeLayer_AdminLayer_{
						AdminLayer: &bootstrapv3.RuntimeLayer_AdminLayer{},
					},
				},
			},
		},
	}
	if err := addCopyStats(b, o); err != nil {
		return nil, err
	}
	if err := b.ValidateAll(); err != nil {
		return nil, fmt.Errorf("rendered bootstrap is invalid: %w", err)
	}
	return b, nil
}

// renderXDSCluster is the HTTP/2 cluster to the control plane: STATIC for an
// IP, STRICT_DNS for a name, with keepalives so a dead control plane is
// noticed and the stream re-established.
func renderXDSCluster(host string, port uint32) (*clusterv3.Cluster, error) {
	protocolOptions, err := anypb.New(&httpv3.HttpProtocolOptions{
		UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{
			ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
				ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{
					Http2ProtocolOptions: &corev3.Http2ProtocolOptions{
						ConnectionKeepalive: &corev3.KeepaliveSettings{
							Interval: durationpb.New(30 * time.Second),
							Timeout:  durationpb.New(5 * time.Second),
						},
					},
				},
			},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("xds cluster protocol options: %w", err)
	}
	discovery := clusterv3.Cluster_STATIC
	if net.ParseIP(host) == nil {
		discovery = clusterv3.Cluster_STRICT_DNS
	}
	return &clusterv3.Cluster{
		Name:                 XDSClusterName,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: discovery},
		ConnectTimeout:       durationpb.New(time.Second),
		TypedExtensionProtocolOptions: map[string]*anypb.Any{
			"envoy.extensions.upstreams.http.v3.HttpProtocolOptions": protocolOptions,
		},
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: XDSClusterName,
			Endpoints: []*endpointv3.LocalityLbEndpoints{{
				LbEndpoints: []*endpointv3.LbEndpoint{{
					HostIdentifier: &endpointv3.LbEndpoint_Endpoint{
						Endpoint: &endpointv3.Endpoint{Address: socketAddress(host, port)},
					},
				}},
			}},
		},
	}, nil
}

func (o Options) check() error {
	// The control plane's own check, so it never turns this sidecar away.
	if err := o.Node.Validate(); err != nil {
		return err
	}
	host, port, err := net.SplitHostPort(o.XDSAddress)
	if err != nil || host == "" {
		return fmt.Errorf("xds address %q: want HOST:PORT", o.XDSAddress)
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
		return fmt.Errorf("xds address %q: %q is not a port number", o.XDSAddress, port)
	}
	if o.Health.Port > 65535 {
		return fmt.Errorf("health port %d is not a port number", o.Health.Port)
	}
	for _, pair := range o.Node.Ports {
		if o.Health.Port != 0 && (pair.Listen == o.Health.Port || pair.App == o.Health.Port) {
			return fmt.Errorf("health port %d is also in the port pair %d:%d", o.Health.Port, pair.Listen, pair.App)
		}
	}
	if o.Health.Port != 0 {
		if err := checkDrainToken(o.Health.DrainToken); err != nil {
			return fmt.Errorf("health port %d: %w", o.Health.Port, err)
		}
	}
	return nil
}

func socketAddress(host string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address:       host,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

// Marshal renders the bootstrap as "yaml" or "json".
func Marshal(b *bootstrapv3.Bootstrap, format string) ([]byte, error) {
	js, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(proto.Message(b))
	if err != nil {
		return nil, fmt.Errorf("marshal bootstrap: %w", err)
	}
	switch format {
	case "json":
		return append(js, '\n'), nil
	case "yaml", "":
		y, err := yaml.JSONToYAML(js)
		if err != nil {
			return nil, fmt.Errorf("bootstrap to yaml: %w", err)
		}
		return y, nil
	default:
		return nil, fmt.Errorf("unknown format %q: want yaml or json", format)
	}
}
