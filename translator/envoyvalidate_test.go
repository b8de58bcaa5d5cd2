package translator_test

// Test-only: turns a translation into a static Envoy bootstrap and has the
// real, pinned Envoy check it with `envoy --mode validate`.

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/shadowplane/shadowplane/internal/testtools"
	"github.com/shadowplane/shadowplane/translator"
)

// staticBootstrap builds a bootstrap Envoy can check without a control
// plane. Only for validation: each listener's route configuration is
// inlined into a copy of its HTTP connection manager (RDS cannot be
// resolved statically), EDS clusters become STATIC ones with their
// assignment inline, the RTDS layer becomes a static layer, and admin
// listens on 127.0.0.1:0.
func staticBootstrap(out *translator.Output) (*bootstrapv3.Bootstrap, error) {
	routes := map[string]*routev3.RouteConfiguration{}
	for _, r := range out.Routes {
		routes[r.Name] = r
	}
	assignments := map[string]*endpointv3.ClusterLoadAssignment{}
	for _, e := range out.Endpoints {
		assignments[e.ClusterName] = e
	}
	if len(out.Runtimes) != 1 {
		return nil, fmt.Errorf("want one runtime layer, got %d", len(out.Runtimes))
	}

	static := &bootstrapv3.Bootstrap_StaticResources{}
	for _, l := range out.Listeners {
		inlined, err := inlineRoutes(l, routes)
		if err != nil {
			return nil, err
		}
		static.Listeners = append(static.Listeners, inlined)
	}
	for _, c := range out.Clusters {
		c = proto.Clone(c).(*clusterv3.Cluster)
		if c.GetType() == clusterv3.Cluster_EDS {
			name := c.GetEdsClusterConfig().GetServiceName()
			cla, ok := assignments[name]
			if !ok {
				return nil, fmt.Errorf("cluster %s: no endpoints named %q", c.Name, name)
			}
			c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC}
			c.EdsClusterConfig = nil
			c.LoadAssignment = proto.Clone(cla).(*endpointv3.ClusterLoadAssignment)
			c.LoadAssignment.ClusterName = c.Name
		}
		if err := staticSecretRefs(c); err != nil {
			return nil, err
		}
		static.Clusters = append(static.Clusters, c)
	}
	static.Secrets = out.Secrets
	return &bootstrapv3.Bootstrap{
		Node:            &corev3.Node{Id: "validate", Cluster: "validate"},
		StaticResources: static,
		LayeredRuntime: &bootstrapv3.LayeredRuntime{Layers: []*bootstrapv3.RuntimeLayer{{
			Name:           out.Runtimes[0].GetName(),
			LayerSpecifier: &bootstrapv3.RuntimeLayer_StaticLayer{StaticLayer: out.Runtimes[0].GetLayer()},
		}}},
		Admin: &bootstrapv3.Admin{Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 0},
		}}}},
	}, nil
}

// inlineRoutes copies a listener with each HTTP connection manager's RDS
// reference replaced by the route configuration it names. Inline routes
// check their cluster references, so a mirror to a cluster that does not
// exist fails validation.
func inlineRoutes(l *listenerv3.Listener, routes map[string]*routev3.RouteConfiguration) (*listenerv3.Listener, error) {
	l = proto.Clone(l).(*listenerv3.Listener)
	for _, fc := range l.GetFilterChains() {
		for _, f := range fc.GetFilters() {
			hcm := &hcmv3.HttpConnectionManager{}
			if !f.GetTypedConfig().MessageIs(hcm) {
				continue
			}
			if err := f.GetTypedConfig().UnmarshalTo(hcm); err != nil {
				return nil, fmt.Errorf("listener %s: %w", l.Name, err)
			}
			name := hcm.GetRds().GetRouteConfigName()
			rc, ok := routes[name]
			if !ok {
				return nil, fmt.Errorf("listener %s: no route configuration named %q", l.Name, name)
			}
			rc = proto.Clone(rc).(*routev3.RouteConfiguration)
			rc.ValidateClusters = wrapperspb.Bool(true)
			hcm.RouteSpecifier = &hcmv3.HttpConnectionManager_RouteConfig{RouteConfig: rc}
			typed, err := anypb.New(hcm)
			if err != nil {
				return nil, fmt.Errorf("listener %s: %w", l.Name, err)
			}
			f.ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: typed}
		}
	}
	return l, nil
}

// envoyValidate writes the bootstrap to a file and has the pinned Envoy
// validate it (a missing Envoy fails under CI=true, skips elsewhere). It
// fails when Envoy rejects the configuration, and also when Envoy warns
// about a deprecated field, which a later Envoy would reject.
func envoyValidate(t *testing.T, bs *bootstrapv3.Bootstrap) error {
	t.Helper()
	data, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(bs)
	if err != nil {
		return fmt.Errorf("encoding the bootstrap: %w", err)
	}
	path := filepath.Join(t.TempDir(), "bootstrap.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return err
	}
	output, ok := testtools.EnvoyValidate(t, path)
	if !ok {
		return fmt.Errorf("envoy --mode validate rejected it:\n%s", output)
	}
	if strings.Contains(strings.ToLower(output), "deprecated") {
		return fmt.Errorf("envoy --mode validate warns about deprecated fields:\n%s", output)
	}
	return nil
}

// staticSecretRefs makes a cluster's SDS references name static secrets of
// the bootstrap (a reference without sds_config), since no ADS stream
// serves them during validation.
func staticSecretRefs(c *clusterv3.Cluster) error {
	ts := c.GetTransportSocket()
	if ts == nil {
		return nil
	}
	ctx := &tlsv3.UpstreamTlsContext{}
	if err := ts.GetTypedConfig().UnmarshalTo(ctx); err != nil {
		return fmt.Errorf("cluster %s: %w", c.Name, err)
	}
	common := ctx.GetCommonTlsContext()
	for _, ref := range common.GetTlsCertificateSdsSecretConfigs() {
		ref.SdsConfig = nil
	}
	if ref := common.GetCombinedValidationContext().GetValidationContextSdsSecretConfig(); ref != nil {
		ref.SdsConfig = nil
	}
	typed, err := anypb.New(ctx)
	if err != nil {
		return fmt.Errorf("cluster %s: %w", c.Name, err)
	}
	ts.ConfigType = &corev3.TransportSocket_TypedConfig{TypedConfig: typed}
	return nil
}
