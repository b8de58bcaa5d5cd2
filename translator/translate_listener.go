package translator

import (
	"fmt"
	"net"
	"strconv"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Names of Envoy extensions the translator configures.
const (
	hcmFilterName    = "envoy.filters.network.http_connection_manager"
	routerFilterName = "envoy.filters.http.router"
)

// listenerName names both a sidecar listener and its route configuration.
func listenerName(listen uint32) string { return "inbound|" + strconv.FormatUint(uint64(listen), 10) }

// buildListener builds the inbound listener on one port. Its content
// depends only on the address and port, so policy edits never touch it (a
// changed listener would drain connections).
func buildListener(address string, listen uint32) *listenerv3.Listener {
	name := listenerName(listen)
	return &listenerv3.Listener{
		Name: name,
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address:       address,
			PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: listen},
			// Bound to "::", Envoy would otherwise accept IPv6 only and
			// refuse the pod's IPv4 traffic.
			Ipv4Compat: isIPv6Unspecified(address),
		}}},
		TrafficDirection: corev3.TrafficDirection_INBOUND,
		FilterChains: []*listenerv3.FilterChain{{
			Filters: []*listenerv3.Filter{{
				Name:       hcmFilterName,
				ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(httpConnectionManager(listen))},
			}},
		}},
	}
}

// httpConnectionManager fetches its routes by RDS over ADS, never inline: an
// inline route table would turn every route edit into a listener drain.
//
// The sidecar sits in front of production traffic, so beyond forwarding it
// tries to change nothing the application or its clients see: no Server
// header rewrite, no x-envoy-* headers, no idle stream timeout (the route
// timeout is disabled too), WebSocket upgrades and HTTP/1.0 still accepted.
func httpConnectionManager(listen uint32) *hcmv3.HttpConnectionManager {
	return &hcmv3.HttpConnectionManager{
		StatPrefix: fmt.Sprintf("inbound_%d", listen),
		CodecType:  hcmv3.HttpConnectionManager_AUTO,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			ConfigSource:    adsConfigSource(),
			RouteConfigName: listenerName(listen),
		}},
		HttpFilters: []*hcmv3.HttpFilter{{
			Name:       routerFilterName,
			ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&routerv3.Router{SuppressEnvoyHeaders: true})},
		}},
		// Clients reach the sidecar through the Service as they reached the
		// application; the sidecar is not an edge and must not rewrite
		// X-Forwarded-For from its own point of view.
		UseRemoteAddress:           wrapperspb.Bool(false),
		ServerHeaderTransformation: hcmv3.HttpConnectionManager_PASS_THROUGH,
		StreamIdleTimeout:          durationpb.New(0),
		UpgradeConfigs:             []*hcmv3.HttpConnectionManager_UpgradeConfig{{UpgradeType: "websocket"}},
		HttpProtocolOptions:        &corev3.Http1ProtocolOptions{AcceptHttp_10: true},
	}
}

// adsConfigSource says "fetch this over the ADS stream, xDS v3".
func adsConfigSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
		ResourceApiVersion:    corev3.ApiVersion_V3,
	}
}

// mustAny packs an extension config deterministically, so equal configs
// always give equal bytes (and equal versions). Packing a message built
// here from fixed types cannot fail; a failure is a programming error.
func mustAny(m proto.Message) *anypb.Any {
	a := &anypb.Any{}
	if err := anypb.MarshalFrom(a, m, proto.MarshalOptions{Deterministic: true}); err != nil {
		panic(fmt.Sprintf("translator: packing %T: %v", m, err))
	}
	return a
}

func isIPv6Unspecified(address string) bool {
	ip := net.ParseIP(address)
	return ip != nil && ip.To4() == nil && ip.IsUnspecified()
}
