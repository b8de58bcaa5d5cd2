package translator

import (
	"net"
	"sort"
	"strconv"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	bufferv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/buffer/v3"
	upstreamcodecv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/upstream_codec/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/shadowplane/shadowplane/policy"
)

const (
	// appConnectTimeout bounds connecting to the application on loopback.
	appConnectTimeout = time.Second
	// appCircuitLimit is high enough that the sidecar never throttles
	// production traffic to its application.
	appCircuitLimit = 1 << 20

	// shadowBufferLimit caps what Envoy buffers per shadow connection.
	shadowBufferLimit = 1 << 20
	// shadowIdleTimeout closes shadow connections left without requests.
	shadowIdleTimeout = 60 * time.Second
	// shadowMaxStreamDuration resets a copy still running after this long.
	// The route timeout is disabled (copies share it), so a stalled shadow
	// must not hold a copy, its buffered body or a request slot forever.
	shadowMaxStreamDuration = 30 * time.Second

	// shadowEDSFetchTimeout bounds how long a new or changed shadow
	// cluster waits for its endpoints; see shadowEDSConfigSource.
	shadowEDSFetchTimeout = time.Second

	// systemCABundle is the Debian/Ubuntu system trust store, which the
	// official Envoy images carry: https URL targets are verified against
	// it, and against the URL's host name.
	systemCABundle = "/etc/ssl/certs/ca-certificates.crt"

	tlsTransportSocketName  = "envoy.transport_sockets.tls"
	bufferFilterName        = "envoy.filters.http.buffer"
	upstreamCodecFilterName = "envoy.filters.http.upstream_codec"
	httpProtocolOptionsKey  = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
)

// appClusterName names the cluster of the local application port.
func appClusterName(port uint32) string { return "app|" + strconv.FormatUint(uint64(port), 10) }

// buildClusters returns one cluster per distinct application port and one
// per shadow target the routes reference, sorted by name.
func (t *translation) buildClusters() []*clusterv3.Cluster {
	var out []*clusterv3.Cluster
	seen := map[uint32]bool{}
	for _, l := range t.listeners {
		if !seen[l.port.App] {
			seen[l.port.App] = true
			out = append(out, appCluster(l.port.App))
		}
	}
	for _, target := range t.targets {
		out = append(out, t.shadowCluster(target))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// appCluster forwards to the application on 127.0.0.1 in whatever HTTP
// version the client spoke (a gRPC client keeps HTTP/2).
func appCluster(port uint32) *clusterv3.Cluster {
	name := appClusterName(port)
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		ConnectTimeout:       durationpb.New(appConnectTimeout),
		LoadAssignment:       singleHostAssignment(name, "127.0.0.1", port),
		CircuitBreakers: &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
			Priority:           corev3.RoutingPriority_DEFAULT,
			MaxConnections:     wrapperspb.UInt32(appCircuitLimit),
			MaxPendingRequests: wrapperspb.UInt32(appCircuitLimit),
			MaxRequests:        wrapperspb.UInt32(appCircuitLimit),
		}}},
		TypedExtensionProtocolOptions: httpProtocolOptions(&upstreamhttpv3.HttpProtocolOptions{
			UpstreamProtocolOptions: downstreamProtocol(),
		}),
	}
}

// shadowCluster builds the guarded cluster of one shadow target.
func (t *translation) shadowCluster(target *shadowTarget) *clusterv3.Cluster {
	c := guardedCluster(target.cluster, target.guard)
	if target.url == nil {
		c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS}
		c.EdsClusterConfig = &clusterv3.Cluster_EdsClusterConfig{
			EdsConfig:   shadowEDSConfigSource(),
			ServiceName: target.cluster,
		}
		c.TypedExtensionProtocolOptions = httpProtocolOptions(shadowProtocolOptions(target.guard, false))
		return c
	}

	u := target.url
	c.LoadAssignment = singleHostAssignment(target.cluster, u.Host, u.Port)
	if net.ParseIP(u.Host) != nil {
		c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}
	} else {
		c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STRICT_DNS}
		c.DnsLookupFamily = clusterv3.Cluster_V4_PREFERRED
	}
	if u.Scheme != "https" {
		c.TypedExtensionProtocolOptions = httpProtocolOptions(shadowProtocolOptions(target.guard, false))
		return c
	}
	c.TransportSocket = &corev3.TransportSocket{
		Name:       tlsTransportSocketName,
		ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(upstreamTLS(u.Host, target.tlsNamespace, target.tls))},
	}
	c.TypedExtensionProtocolOptions = httpProtocolOptions(shadowProtocolOptions(target.guard, true))
	return c
}

// shadowEDSConfigSource fetches a shadow cluster's endpoints over ADS, and
// gives up waiting for them after shadowEDSFetchTimeout.
//
// Why: when a cluster changes (a guard edit), Envoy warms the new version
// until it gets the cluster's endpoints, but an xDS server sends an
// unchanged ClusterLoadAssignment only once, so the new cluster waited out
// Envoy's default initial fetch timeout (15 s, checked against Envoy 1.40
// over SotW and delta) before Envoy fell back to the endpoints it already
// had. A short timeout makes that fallback, and the edit, take effect
// within a second. It also keeps a shadow cluster from ever holding up a
// starting sidecar for long.
func shadowEDSConfigSource() *corev3.ConfigSource {
	cs := adsConfigSource()
	cs.InitialFetchTimeout = durationpb.New(shadowEDSFetchTimeout)
	return cs
}

// guardedCluster holds the protections every shadow cluster has, so a slow
// or dead test environment cannot hurt production: a short connect timeout,
// circuit breakers (a copy over the limit is dropped, never queued behind
// production), no retries, outlier detection, bounded buffers, and no panic
// routing (with every host ejected, copies fail fast instead of going to
// the ejected hosts anyway).
func guardedCluster(name string, g policy.Guard) *clusterv3.Cluster {
	g = g.WithDefaults()
	return &clusterv3.Cluster{
		Name:           name,
		ConnectTimeout: durationpb.New(g.ConnectTimeout),
		CircuitBreakers: &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
			Priority:           corev3.RoutingPriority_DEFAULT,
			MaxConnections:     wrapperspb.UInt32(g.MaxConnections),
			MaxPendingRequests: wrapperspb.UInt32(g.MaxPendingRequests),
			MaxRequests:        wrapperspb.UInt32(g.MaxRequests),
			MaxRetries:         wrapperspb.UInt32(0),
			TrackRemaining:     true,
		}}},
		OutlierDetection: &clusterv3.OutlierDetection{
			Consecutive_5Xx:                wrapperspb.UInt32(5),
			ConsecutiveGatewayFailure:      wrapperspb.UInt32(5),
			Interval:                       durationpb.New(5 * time.Second),
			BaseEjectionTime:               durationpb.New(30 * time.Second),
			MaxEjectionPercent:             wrapperspb.UInt32(100),
			SplitExternalLocalOriginErrors: true,
			ConsecutiveLocalOriginFailure:  wrapperspb.UInt32(5),
		},
		PerConnectionBufferLimitBytes: wrapperspb.UInt32(shadowBufferLimit),
		CommonLbConfig: &clusterv3.Cluster_CommonLbConfig{
			HealthyPanicThreshold: &typev3.Percent{Value: 0},
		},
	}
}

// shadowProtocolOptions are the HTTP options of a shadow cluster: bounded
// stream duration, and the copy-body buffer in front of the codec.
//
// Why the buffer: since Envoy 1.33 a copy streams its body alongside the
// original and is tied to the original's flow control, so a target that
// stops reading pauses the client's upload (checked against Envoy 1.40: a
// 10 MiB POST stalled until max_stream_duration reset the copy). The
// buffer filter holds each copy's body until it is complete, so nothing
// reaches the target's connection, and nothing can back up, before the
// original has been read to its end (when Envoy detaches the copy from the
// original's flow control). A body larger than the guard's MaxBodyBytes
// makes the buffer filter end the copy: the copy is dropped, the original
// is untouched.
//
// Over TLS, ALPN picks HTTP/2 or HTTP/1.1 with the target; in clear text
// the copy keeps the HTTP version the client spoke.
func shadowProtocolOptions(g policy.Guard, tls bool) *upstreamhttpv3.HttpProtocolOptions {
	g = g.WithDefaults()
	opts := &upstreamhttpv3.HttpProtocolOptions{
		CommonHttpProtocolOptions: &corev3.HttpProtocolOptions{
			IdleTimeout:       durationpb.New(shadowIdleTimeout),
			MaxStreamDuration: durationpb.New(shadowMaxStreamDuration),
		},
		UpstreamProtocolOptions: downstreamProtocol(),
		HttpFilters: []*hcmv3.HttpFilter{
			{
				Name: bufferFilterName,
				ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&bufferv3.Buffer{
					MaxRequestBytes: wrapperspb.UInt32(g.MaxBodyBytes),
				})},
			},
			{
				Name:       upstreamCodecFilterName,
				ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&upstreamcodecv3.UpstreamCodec{})},
			},
		},
	}
	if tls {
		opts.UpstreamProtocolOptions = &upstreamhttpv3.HttpProtocolOptions_AutoConfig{
			AutoConfig: &upstreamhttpv3.HttpProtocolOptions_AutoHttpConfig{
				HttpProtocolOptions:  &corev3.Http1ProtocolOptions{},
				Http2ProtocolOptions: &corev3.Http2ProtocolOptions{},
			},
		}
	}
	return opts
}

// downstreamProtocol speaks to the upstream the HTTP version the client
// used.
func downstreamProtocol() *upstreamhttpv3.HttpProtocolOptions_UseDownstreamProtocolConfig {
	return &upstreamhttpv3.HttpProtocolOptions_UseDownstreamProtocolConfig{
		UseDownstreamProtocolConfig: &upstreamhttpv3.HttpProtocolOptions_UseDownstreamHttpConfig{
			HttpProtocolOptions:  &corev3.Http1ProtocolOptions{},
			Http2ProtocolOptions: &corev3.Http2ProtocolOptions{},
		},
	}
}

// httpProtocolOptions packs a cluster's HTTP protocol options under the key
// Envoy looks them up by.
func httpProtocolOptions(opts *upstreamhttpv3.HttpProtocolOptions) map[string]*anypb.Any {
	return map[string]*anypb.Any{httpProtocolOptionsKey: mustAny(opts)}
}

// singleHostAssignment is the inline endpoint list of a cluster with one
// host.
func singleHostAssignment(cluster, host string, port uint32) *endpointv3.ClusterLoadAssignment {
	return &endpointv3.ClusterLoadAssignment{
		ClusterName: cluster,
		Endpoints: []*endpointv3.LocalityLbEndpoints{{
			LbEndpoints: []*endpointv3.LbEndpoint{lbEndpoint(host, port)},
		}},
	}
}

func lbEndpoint(address string, port uint32) *endpointv3.LbEndpoint {
	return &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address:       address,
			PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
		}}},
	}}}
}
