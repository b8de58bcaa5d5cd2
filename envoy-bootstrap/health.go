package bootstrap

import (
	"fmt"
	"strings"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	faultcommonv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/common/fault/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	luav3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/lua/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
)

// The health listener lets the kubelet reach the two admin functions a
// rollout needs without exposing the admin interface, which can change
// runtime values and so stays on loopback (Istio's 15021 does the same).
const (
	// HealthListenerName and HealthClusterName name the static listener and
	// the loopback cluster to the admin interface behind it.
	HealthListenerName = "shadowplane_health"
	HealthClusterName  = "shadowplane_admin"
	// ReadyPath answers as the admin /ready does: 200 once Envoy has its
	// first listeners and clusters from the control plane, 503 before.
	ReadyPath = "/ready"
	// DrainPath starts a graceful drain of every listener (HTTP/1.1
	// responses get "Connection: close", HTTP/2 connections a GOAWAY, so
	// keep-alive clients move to other endpoints while new connections are
	// still accepted) and answers only after the drain delay, so a preStop
	// httpGet on it holds the pod's termination that long.
	DrainPath = "/drain"
	// DrainTokenHeader must carry Health.DrainToken for DrainPath to
	// answer; without it the path is not found. The health listener binds
	// the pod's address so the kubelet can probe it, which lets every pod
	// that can reach this one reach it too: without the token any of them
	// could drain this sidecar, which then stops taking connections for
	// good. The kubelet sends the token from the preStop hook's
	// httpHeaders.
	DrainTokenHeader = "x-shadowplane-drain-token"
	// MinDrainTokenLength is the shortest token accepted (16 random
	// bytes in hex are 32 characters).
	MinDrainTokenLength = 16
	// PlaceholderDrainToken starts the token of the example manifests,
	// which is refused: it is public.
	PlaceholderDrainToken = "REPLACE-WITH-RANDOM"
	// DefaultDrainDelay outlasts the usual endpoint propagation delay (the
	// EndpointSlice controller, then every kube-proxy or client balancer).
	DefaultDrainDelay = 5 * time.Second
)

// drainScript asks the admin interface, over the loopback cluster, for a
// graceful drain; the admin endpoint takes POST only, which a kubelet
// httpGet cannot send.
const drainScript = `function envoy_on_request(handle)
  local headers, body = handle:httpCall("` + HealthClusterName + `", {
    [":method"] = "POST",
    [":path"] = "/drain_listeners?graceful",
    [":authority"] = "envoy-admin",
  }, "", 2000)
  handle:logInfo("shadowplane: graceful drain requested: " .. (headers[":status"] or "no answer"))
end
`

// Health describes the health listener; a zero Port leaves it out.
type Health struct {
	Address string // where it binds: the listeners' address
	Port    uint32
	// DrainDelay is how long DrainPath holds the request; 0 means
	// DefaultDrainDelay.
	DrainDelay time.Duration
	// DrainToken is the secret DrainPath requires in DrainTokenHeader;
	// required with a Port.
	DrainToken string
}

// checkDrainToken accepts a token of at least MinDrainTokenLength
// characters that a header carries unchanged.
func checkDrainToken(token string) error {
	if len(token) < MinDrainTokenLength {
		return fmt.Errorf("the drain token must be at least %d characters (e.g. openssl rand -hex 16), the same value as the preStop httpGet header %s; without it any pod that reaches the health port could drain the sidecar", MinDrainTokenLength, DrainTokenHeader)
	}
	if strings.HasPrefix(token, PlaceholderDrainToken) {
		return fmt.Errorf("the drain token is the example's placeholder: replace it with a random value of your own (openssl rand -hex 16), in --drain-token and the preStop httpGet header %s", DrainTokenHeader)
	}
	for _, r := range token {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
			return fmt.Errorf("the drain token may hold only letters, digits, '-' and '_'")
		}
	}
	return nil
}

// healthResources are the listener and the admin cluster behind it.
func healthResources(h Health, adminAddress string, adminPort uint32) (*listenerv3.Listener, *clusterv3.Cluster, error) {
	delay := h.DrainDelay
	if delay == 0 {
		delay = DefaultDrainDelay
	}
	drainLua, err := anypb.New(&luav3.LuaPerRoute{Override: &luav3.LuaPerRoute_SourceCode{
		SourceCode: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: drainScript}},
	}})
	if err != nil {
		return nil, nil, err
	}
	drainDelay, err := anypb.New(&faultv3.HTTPFault{Delay: &faultcommonv3.FaultDelay{
		FaultDelaySecifier: &faultcommonv3.FaultDelay_FixedDelay{FixedDelay: durationpb.New(delay)},
		Percentage:         &typev3.FractionalPercent{Numerator: 100, Denominator: typev3.FractionalPercent_HUNDRED},
	}})
	if err != nil {
		return nil, nil, err
	}
	routes := &routev3.RouteConfiguration{
		Name: HealthListenerName,
		VirtualHosts: []*routev3.VirtualHost{{
			Name:    HealthListenerName,
			Domains: []string{"*"},
			Routes: []*routev3.Route{
				{
					Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: ReadyPath}},
					Action: &routev3.Route_Route{Route: &routev3.RouteAction{
						ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: HealthClusterName},
						Timeout:          durationpb.New(2 * time.Second),
					}},
				},
				{
					Match: &routev3.RouteMatch{
						PathSpecifier: &routev3.RouteMatch_Path{Path: DrainPath},
						Headers: []*routev3.HeaderMatcher{{
							Name: DrainTokenHeader,
							HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
								MatchPattern: &matcherv3.StringMatcher_Exact{Exact: h.DrainToken},
							}},
						}},
					},
					Action: &routev3.Route_DirectResponse{DirectResponse: &routev3.DirectResponseAction{
						Status: 200,
						Body:   &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "draining\n"}},
					}},
					TypedPerFilterConfig: map[string]*anypb.Any{
						"envoy.filters.http.lua":   drainLua,
						"envoy.filters.http.fault": drainDelay,
					},
				},
			},
		}},
	}
	filters, err := healthFilters()
	if err != nil {
		return nil, nil, err
	}
	hcm, err := anypb.New(&hcmv3.HttpConnectionManager{
		StatPrefix:     HealthListenerName,
		RouteSpecifier: &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: routes},
		HttpFilters:    filters,
		// The drain request waits out the delay; nothing else is slow.
		StreamIdleTimeout: durationpb.New(delay + 10*time.Second),
	})
	if err != nil {
		return nil, nil, err
	}
	listener := &listenerv3.Listener{
		Name:    HealthListenerName,
		Address: socketAddress(h.Address, h.Port),
		FilterChains: []*listenerv3.FilterChain{{
			Filters: []*listenerv3.Filter{{
				Name:       "envoy.filters.network.http_connection_manager",
				ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: hcm},
			}},
		}},
	}
	cluster := &clusterv3.Cluster{
		Name:                 HealthClusterName,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		ConnectTimeout:       durationpb.New(time.Second),
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: HealthClusterName,
			Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: socketAddress(adminAddress, adminPort)}},
			}}}},
		},
	}
	return listener, cluster, nil
}

// healthFilters: Lua and fault do nothing unless a route configures them
// (only the drain route does), then the router.
func healthFilters() ([]*hcmv3.HttpFilter, error) {
	var filters []*hcmv3.HttpFilter
	for _, f := range []struct {
		name   string
		config proto.Message
	}{
		{"envoy.filters.http.lua", &luav3.Lua{}},
		{"envoy.filters.http.fault", &faultv3.HTTPFault{}},
		{"envoy.filters.http.router", &routerv3.Router{}},
	} {
		config, err := anypb.New(f.config)
		if err != nil {
			return nil, fmt.Errorf("health listener filter %s: %w", f.name, err)
		}
		filters = append(filters, &hcmv3.HttpFilter{Name: f.name, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: config}})
	}
	return filters, nil
}
