package translator

import (
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	bufferv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/buffer/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	upstreamhttpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"

	"github.com/shadowplane/shadowplane/internal/contenthash"
	"github.com/shadowplane/shadowplane/nodemeta"
	"github.com/shadowplane/shadowplane/policy"
)

// ---- fixtures -------------------------------------------------------------

// entranceGroup is a sidecar of default/entrance listening on 15001 and
// forwarding to the app on 8080.
var entranceGroup = nodemeta.NodeGroup{
	Namespace: "default",
	Service:   "entrance",
	Ports:     []nodemeta.PortPair{{Listen: 15001, App: 8080}},
}

// entranceService is the production Service: port http (80) targets the
// sidecar's listener.
func entranceService() *Service {
	return &Service{
		Namespace: "default", Name: "entrance",
		Ports: []ServicePort{{Name: "http", Port: 80, TargetPort: 15001, Protocol: "TCP"}},
		Endpoints: []Endpoint{
			{Address: "10.0.0.1", Ports: map[string]int32{"http": 15001}},
			{Address: "10.0.0.2", Ports: map[string]int32{"http": 15001}},
		},
	}
}

// stagingService is the test environment's copy of entrance.
func stagingService() *Service {
	return &Service{
		Namespace: "staging", Name: "entrance",
		Ports: []ServicePort{{Name: "http", Port: 8080, TargetPort: 8080, Protocol: "TCP"}},
		Endpoints: []Endpoint{
			{Address: "10.1.0.2", Ports: map[string]int32{"http": 8080}},
			{Address: "10.1.0.1", Ports: map[string]int32{"http": 8080}},
		},
	}
}

// toStaging copies every request of default/entrance to staging/entrance.
func toStaging() *policy.Policy {
	return &policy.Policy{
		Namespace: "default", Name: "to-staging",
		Source:  policy.Source{ConfigMap: "mirrors", Key: "policies.yaml"},
		Service: "entrance", Port: policy.PortRef{Name: "http"},
		Mirrors: []policy.Mirror{{
			Name: "staging.entrance.8080", Service: "entrance", Namespace: "staging",
			Port: policy.PortRef{Number: 8080}, PartsPerMillion: 1_000_000,
		}},
		MarkCopies: true,
	}
}

func newWorld(services []*Service, policies ...*policy.Policy) *World {
	w := &World{Services: map[string]*Service{}, Policies: policies}
	for _, s := range services {
		w.Services[ServiceKey(s.Namespace, s.Name)] = s
	}
	return w
}

func baseWorld() *World {
	return newWorld([]*Service{entranceService(), stagingService()}, toStaging())
}

// ---- helpers --------------------------------------------------------------

// translateValid translates and fails the test unless every resource, and
// every extension config packed in one, passes its generated validation.
func translateValid(t *testing.T, w *World, g nodemeta.NodeGroup) *Output {
	t.Helper()
	out := Translate(w, g)
	validateOutput(t, out)
	return out
}

type validator interface{ ValidateAll() error }

func validateOutput(t *testing.T, out *Output) {
	t.Helper()
	check := func(kind string, v validator) {
		t.Helper()
		if err := v.ValidateAll(); err != nil {
			t.Errorf("invalid %s: %v", kind, err)
		}
	}
	for _, l := range out.Listeners {
		check("listener "+l.Name, l)
		hcm := listenerHCM(t, l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig())
		check("http connection manager of "+l.Name, hcm)
		for _, f := range hcm.GetHttpFilters() {
			router := &routerv3.Router{}
			if err := f.GetTypedConfig().UnmarshalTo(router); err != nil {
				t.Fatalf("listener %s: filter %s: %v", l.Name, f.Name, err)
			}
			check("router filter of "+l.Name, router)
		}
	}
	for _, r := range out.Routes {
		check("route configuration "+r.Name, r)
	}
	for _, c := range out.Clusters {
		check("cluster "+c.Name, c)
		for key, a := range c.GetTypedExtensionProtocolOptions() {
			opts := &upstreamhttpv3.HttpProtocolOptions{}
			if err := a.UnmarshalTo(opts); err != nil {
				t.Fatalf("cluster %s: %s: %v", c.Name, key, err)
			}
			check("protocol options of "+c.Name, opts)
		}
		if ts := c.GetTransportSocket(); ts != nil {
			tls := &tlsv3.UpstreamTlsContext{}
			if err := ts.GetTypedConfig().UnmarshalTo(tls); err != nil {
				t.Fatalf("cluster %s: transport socket: %v", c.Name, err)
			}
			check("TLS context of "+c.Name, tls)
		}
	}
	for _, e := range out.Endpoints {
		check("endpoints "+e.ClusterName, e)
	}
	for _, s := range out.Secrets {
		check("secret "+s.Name, s)
	}
	if len(out.Runtimes) != 1 || out.Runtimes[0].GetName() != RuntimeLayerName {
		t.Fatalf("want exactly one runtime named %q, got %v", RuntimeLayerName, out.Runtimes)
	}
	check("runtime", out.Runtimes[0])
	for _, typ := range ResourceTypes {
		if v := out.Versions[typ.URL]; len(v) != contenthash.Length {
			t.Errorf("version of %s = %q, want %d hex characters", typ.Name, v, contenthash.Length)
		}
	}
}

func listenerHCM(t *testing.T, a interface {
	UnmarshalTo(proto.Message) error
}) *hcmv3.HttpConnectionManager {
	t.Helper()
	hcm := &hcmv3.HttpConnectionManager{}
	if err := a.UnmarshalTo(hcm); err != nil {
		t.Fatalf("unpacking the HTTP connection manager: %v", err)
	}
	return hcm
}

// policyRoutes are a route configuration's routes after the copy
// passthrough route (tested on its own in TestCopyPassthroughRoute).
func policyRoutes(rc *routev3.RouteConfiguration) []*routev3.Route {
	routes := rc.GetVirtualHosts()[0].GetRoutes()
	if len(routes) > 0 && routes[0].GetName() == copyPassthroughRouteName {
		return routes[1:]
	}
	return routes
}

func routeNames(rc *routev3.RouteConfiguration) []string {
	var names []string
	for _, r := range policyRoutes(rc) {
		names = append(names, r.Name)
	}
	return names
}

// routeMirrors lists, per route name, the runtime keys of its mirrors.
func routeMirrors(rc *routev3.RouteConfiguration) map[string][]string {
	out := map[string][]string{}
	for _, r := range policyRoutes(rc) {
		keys := []string{}
		for _, m := range r.GetRoute().GetRequestMirrorPolicies() {
			keys = append(keys, m.GetRuntimeFraction().GetRuntimeKey())
		}
		out[r.Name] = keys
	}
	return out
}

func clusterByName(out *Output, name string) *clusterv3.Cluster {
	for _, c := range out.Clusters {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func clusterNames(out *Output) []string {
	var names []string
	for _, c := range out.Clusters {
		names = append(names, c.Name)
	}
	return names
}

func hasWarning(out *Output, substr string) bool {
	for _, w := range out.Warnings {
		if strings.Contains(w, substr) {
			return true
		}
	}
	return false
}

// ---- tests ----------------------------------------------------------------

func TestTranslateWithoutPoliciesOnlyForwards(t *testing.T) {
	group := nodemeta.NodeGroup{Namespace: "default", Service: "entrance",
		Ports: []nodemeta.PortPair{{Listen: 15002, App: 9090}, {Listen: 15001, App: 8080}, {Listen: 15003, App: 8080}}}
	for name, w := range map[string]*World{
		"nil world":   nil,
		"empty world": {},
		"other service's policy": newWorld([]*Service{stagingService()},
			&policy.Policy{Namespace: "default", Name: "x", Service: "other", Mirrors: toStaging().Mirrors}),
	} {
		t.Run(name, func(t *testing.T) {
			out := translateValid(t, w, group)
			var listeners []string
			for _, l := range out.Listeners {
				listeners = append(listeners, l.Name)
				addr := l.GetAddress().GetSocketAddress()
				if addr.GetAddress() != nodemeta.DefaultListenAddress {
					t.Errorf("listener %s binds %s, want %s", l.Name, addr.GetAddress(), nodemeta.DefaultListenAddress)
				}
			}
			if want := []string{"inbound|15001", "inbound|15002", "inbound|15003"}; !reflect.DeepEqual(listeners, want) {
				t.Errorf("listeners = %v, want %v", listeners, want)
			}
			if len(out.Routes) != 3 {
				t.Fatalf("got %d route configurations, want 3", len(out.Routes))
			}
			for i, wantApp := range []string{"app|8080", "app|9090", "app|8080"} {
				rc := out.Routes[i]
				routes := rc.GetVirtualHosts()[0].GetRoutes()
				if len(routes) != 1 || routes[0].GetMatch().GetPrefix() != "/" ||
					routes[0].GetRoute().GetCluster() != wantApp || len(routes[0].GetRoute().GetRequestMirrorPolicies()) != 0 {
					t.Errorf("route configuration %s: want one catch-all route to %s without mirrors, got %v", rc.Name, wantApp, routes)
				}
			}
			if want := []string{"app|8080", "app|9090"}; !reflect.DeepEqual(clusterNames(out), want) {
				t.Errorf("clusters = %v, want %v", clusterNames(out), want)
			}
			if len(out.Endpoints) != 0 || len(out.Runtimes[0].GetLayer().GetFields()) != 0 {
				t.Errorf("want no endpoints and an empty runtime layer, got %v and %v", out.Endpoints, out.Runtimes[0])
			}
		})
	}
}

func TestListenerFetchesRoutesOverADS(t *testing.T) {
	g := entranceGroup
	g.ListenAddress = "127.0.0.1"
	out := translateValid(t, baseWorld(), g)
	l := out.Listeners[0]
	if got := l.GetAddress().GetSocketAddress(); got.GetAddress() != "127.0.0.1" || got.GetPortValue() != 15001 {
		t.Errorf("listener binds %s:%d, want 127.0.0.1:15001", got.GetAddress(), got.GetPortValue())
	}
	hcm := listenerHCM(t, l.GetFilterChains()[0].GetFilters()[0].GetTypedConfig())
	if hcm.GetRouteConfig() != nil {
		t.Fatal("route configuration is inline; want RDS")
	}
	rds := hcm.GetRds()
	if rds.GetRouteConfigName() != "inbound|15001" || rds.GetConfigSource().GetAds() == nil {
		t.Errorf("RDS = %v, want route config inbound|15001 over ADS", rds)
	}
	if hcm.GetStatPrefix() != "inbound_15001" || hcm.GetCodecType() != hcmv3.HttpConnectionManager_AUTO {
		t.Errorf("stat prefix %q codec %v", hcm.GetStatPrefix(), hcm.GetCodecType())
	}
	if hcm.GetUseRemoteAddress() == nil || hcm.GetUseRemoteAddress().GetValue() {
		t.Errorf("use_remote_address = %v, want explicit false", hcm.GetUseRemoteAddress())
	}
}

func TestTranslateIsDeterministicAndPure(t *testing.T) {
	world := func() *World {
		a := toStaging()
		b := toStaging()
		b.Name = "api"
		b.Match = policy.Match{PathPrefix: "/api/", Methods: []string{"GET", "POST"}}
		b.Mirrors = append(b.Mirrors, policy.Mirror{Name: "ext", URL: &policy.URLTarget{Raw: "https://shadow.example.com", Scheme: "https", Host: "shadow.example.com", Port: 443}, PartsPerMillion: 15000})
		return newWorld([]*Service{entranceService(), stagingService()}, a, b)
	}
	w := world()
	first := Translate(w, entranceGroup)
	if !reflect.DeepEqual(w, world()) {
		t.Fatal("Translate mutated its World")
	}
	// The same input, with policies in another order, gives equal output.
	w2 := world()
	w2.Policies[0], w2.Policies[1] = w2.Policies[1], w2.Policies[0]
	for i := 0; i < 5; i++ {
		again := Translate(w2, entranceGroup)
		if !reflect.DeepEqual(first.Versions, again.Versions) || !reflect.DeepEqual(first.Warnings, again.Warnings) {
			t.Fatalf("run %d: versions or warnings differ: %v vs %v", i, first.Versions, again.Versions)
		}
		for _, pair := range [][2][]proto.Message{
			{messages(first.Listeners), messages(again.Listeners)},
			{messages(first.Routes), messages(again.Routes)},
			{messages(first.Clusters), messages(again.Clusters)},
			{messages(first.Endpoints), messages(again.Endpoints)},
			{messages(first.Runtimes), messages(again.Runtimes)},
		} {
			if len(pair[0]) != len(pair[1]) {
				t.Fatalf("run %d: resource counts differ", i)
			}
			for j := range pair[0] {
				a, _ := proto.MarshalOptions{Deterministic: true}.Marshal(pair[0][j])
				b, _ := proto.MarshalOptions{Deterministic: true}.Marshal(pair[1][j])
				if string(a) != string(b) {
					t.Fatalf("run %d: resource %d differs:\n%v\n%v", i, j, pair[0][j], pair[1][j])
				}
			}
		}
	}
}

// TestVersionsChangeOnlyForTheTypesTouched is the promise that makes
// percent changes cheap: each change re-sends only the types it touches.
func TestVersionsChangeOnlyForTheTypesTouched(t *testing.T) {
	L, R, C, E, T := resourcev3.ListenerType, resourcev3.RouteType, resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.RuntimeType
	tests := []struct {
		name    string
		group   func(*nodemeta.NodeGroup)
		change  func(*World)
		changed []string
	}{
		{name: "nothing", change: func(*World) {}},
		{name: "observation time", change: func(w *World) { w.ObservedAt = time.Unix(1e9, 0) }},
		{name: "percent", changed: []string{T},
			change: func(w *World) { w.Policies[0].Mirrors[0].PartsPerMillion = 250000 }},
		{name: "percent to zero (pause)", changed: []string{T},
			change: func(w *World) { w.Policies[0].Mirrors[0].PartsPerMillion = 0 }},
		{name: "shadow endpoint added", changed: []string{E},
			change: func(w *World) {
				s := w.Services["staging/entrance"]
				s.Endpoints = append(s.Endpoints, Endpoint{Address: "10.1.0.3", Ports: map[string]int32{"http": 8080}})
			}},
		{name: "shadow endpoint port", changed: []string{E},
			change: func(w *World) { w.Services["staging/entrance"].Endpoints[0].Ports["http"] = 8081 }},
		{name: "shadow endpoints gone", changed: []string{E},
			change: func(w *World) { w.Services["staging/entrance"].Endpoints = nil }},
		{name: "own endpoints", // only decide which listener a policy is for
			change: func(w *World) {
				w.Services["default/entrance"].Endpoints = w.Services["default/entrance"].Endpoints[:1]
			}},
		{name: "match path", changed: []string{R},
			change: func(w *World) { w.Policies[0].Match.PathPrefix = "/entrance/" }},
		{name: "match methods", changed: []string{R},
			change: func(w *World) { w.Policies[0].Match.Methods = []string{"GET"} }},
		{name: "match headers", changed: []string{R},
			change: func(w *World) { w.Policies[0].Match.Headers = []policy.HeaderMatch{{Name: "x-tenant", Exact: "beta"}} }},
		{name: "copy headers", changed: []string{R},
			change: func(w *World) { w.Policies[0].CopyHeaders.Remove = []string{"authorization"} }},
		{name: "mark copies off", changed: []string{R},
			change: func(w *World) { w.Policies[0].MarkCopies = false }},
		{name: "host suffix", changed: []string{R},
			change: func(w *World) { w.Policies[0].HostSuffix = true }},
		{name: "guard", changed: []string{C},
			change: func(w *World) { w.Policies[0].Guard.MaxRequests = 10 }},
		{name: "guard body limit", changed: []string{C},
			change: func(w *World) { w.Policies[0].Guard.MaxBodyBytes = 16 << 20 }},
		{name: "target Service", changed: []string{R, C, E},
			change: func(w *World) {
				w.Services["qa/entrance"] = &Service{Namespace: "qa", Name: "entrance",
					Ports: []ServicePort{{Name: "http", Port: 8080, TargetPort: 8080}}}
				w.Policies[0].Mirrors[0].Namespace = "qa"
			}},
		{name: "second mirror", changed: []string{R, C, T},
			change: func(w *World) {
				w.Policies[0].Mirrors = append(w.Policies[0].Mirrors, policy.Mirror{Name: "ext",
					URL: &policy.URLTarget{Raw: "http://10.16.0.147/", Scheme: "http", Host: "10.16.0.147", Port: 80}, PartsPerMillion: 15000})
			}},
		{name: "policy removed", changed: []string{R, C, E, T},
			change: func(w *World) { w.Policies = nil }},
		{name: "another Service's policy", change: func(w *World) {
			p := toStaging()
			p.Service = "checkout"
			w.Policies = append(w.Policies, p)
		}},
		{name: "listen address", changed: []string{L},
			group: func(g *nodemeta.NodeGroup) { g.ListenAddress = "127.0.0.1" }, change: func(*World) {}},
		{name: "another listener", changed: []string{L, R},
			group: func(g *nodemeta.NodeGroup) {
				g.Ports = []nodemeta.PortPair{{Listen: 15001, App: 8080}, {Listen: 15002, App: 8080}}
			},
			change: func(*World) {}},
		{name: "app port", changed: []string{R, C},
			group: func(g *nodemeta.NodeGroup) { g.Ports = []nodemeta.PortPair{{Listen: 15001, App: 8081}} }, change: func(*World) {}},
	}
	base := translateValid(t, baseWorld(), entranceGroup)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := baseWorld()
			tt.change(w)
			g := entranceGroup
			if tt.group != nil {
				tt.group(&g)
			}
			out := translateValid(t, w, g)
			var changed []string
			for _, typ := range ResourceTypes {
				if out.Versions[typ.URL] != base.Versions[typ.URL] {
					changed = append(changed, typ.URL)
				}
			}
			want := append([]string(nil), tt.changed...)
			sort.Strings(changed)
			sort.Strings(want)
			if !reflect.DeepEqual(changed, want) && !(len(changed) == 0 && len(want) == 0) {
				t.Errorf("changed versions = %v, want %v", changed, want)
			}
		})
	}
}

func TestPolicySelection(t *testing.T) {
	twoPorts := []nodemeta.PortPair{{Listen: 15001, App: 8080}, {Listen: 15002, App: 9090}}
	named := func() *Service {
		s := entranceService()
		s.Ports = []ServicePort{{Name: "http", Port: 80, TargetPortName: "proxy"}}
		s.Endpoints = nil
		return s
	}
	tests := []struct {
		name     string
		services []*Service
		port     policy.PortRef
		ports    []nodemeta.PortPair
		want     []string // listeners carrying the policy's mirror
		warning  string
	}{
		{name: "numeric target port", services: []*Service{entranceService()}, port: policy.PortRef{Name: "http"},
			ports: twoPorts, want: []string{"inbound|15001"}},
		{name: "by Service port number", services: []*Service{entranceService()}, port: policy.PortRef{Number: 80},
			ports: twoPorts, want: []string{"inbound|15001"}},
		{name: "only port implied", services: []*Service{entranceService()},
			ports: twoPorts, want: []string{"inbound|15001"}},
		{name: "target port bypasses the sidecar",
			services: []*Service{func() *Service { s := entranceService(); s.Ports[0].TargetPort = 8080; return s }()},
			ports:    twoPorts, warning: "targets port 8080, which is not one of this sidecar's listen ports (15001, 15002)"},
		{name: "unknown Service port", services: []*Service{entranceService()}, port: policy.PortRef{Name: "grpc"},
			ports: twoPorts, warning: "Service default/entrance has no port grpc"},
		{name: "several Service ports, none named",
			services: []*Service{func() *Service {
				s := entranceService()
				s.Ports = append(s.Ports, ServicePort{Name: "grpc", Port: 90, TargetPort: 15002})
				return s
			}()},
			ports: twoPorts, warning: "has 2 ports and the policy names none"},
		{name: "named target port resolved by endpoints",
			services: []*Service{func() *Service {
				s := named()
				s.Endpoints = []Endpoint{{Address: "10.0.0.1", Ports: map[string]int32{"http": 15002}}}
				return s
			}()},
			ports: twoPorts, want: []string{"inbound|15002"}},
		{name: "named target port resolved elsewhere",
			services: []*Service{func() *Service {
				s := named()
				s.Endpoints = []Endpoint{{Address: "10.0.0.1", Ports: map[string]int32{"http": 8080}}}
				return s
			}()},
			ports: twoPorts, warning: `named port "proxy", which resolves to 8080`},
		{name: "named target port unresolved, one listener", services: []*Service{named()},
			ports: entranceGroup.Ports, want: []string{"inbound|15001"}},
		{name: "named target port unresolved, two listeners", services: []*Service{named()},
			ports: twoPorts, warning: "which no ready endpoint resolves yet"},
		{name: "no Service, port number is a listen port", port: policy.PortRef{Number: 15002},
			ports: twoPorts, want: []string{"inbound|15002"}},
		{name: "no Service, port number is not a listen port", port: policy.PortRef{Number: 80},
			ports: twoPorts, warning: "Service default/entrance not found and port 80 is not one of this sidecar's listen ports"},
		{name: "no Service, no port, one listener",
			ports: entranceGroup.Ports, want: []string{"inbound|15001"}},
		{name: "no Service, no port, two listeners",
			ports: twoPorts, warning: "names no port"},
		{name: "no Service, port name", port: policy.PortRef{Name: "http"},
			ports: entranceGroup.Ports, warning: "port http is not one of this sidecar's listen ports"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := toStaging()
			p.Port = tt.port
			w := newWorld(append(tt.services, stagingService()), p)
			g := entranceGroup
			g.Ports = tt.ports
			out := translateValid(t, w, g)
			var got []string
			for _, rc := range out.Routes {
				if len(routeMirrors(rc)["mirror:to-staging"]) > 0 {
					got = append(got, rc.Name)
				}
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("policy applies to %v, want %v (warnings %q)", got, tt.want, out.Warnings)
			}
			if tt.warning != "" && !hasWarning(out, tt.warning) {
				t.Errorf("warnings %q lack %q", out.Warnings, tt.warning)
			}
			if len(tt.want) == 0 && (len(out.Endpoints) != 0 || len(out.Runtimes[0].GetLayer().GetFields()) != 0) {
				t.Errorf("a policy that applies nowhere left clusters %v or runtime keys", clusterNames(out))
			}
		})
	}
}

func TestPoliciesOfOtherServicesAndDuplicatesAreIgnored(t *testing.T) {
	other := toStaging()
	other.Namespace = "prod" // same Service name, other namespace
	dup := toStaging()
	dup.Source = policy.Source{ConfigMap: "zz-later", Key: "a.yaml"}
	dup.Mirrors = []policy.Mirror{{Name: "other", Service: "other", Port: policy.PortRef{Number: 1}, PartsPerMillion: 1}}
	out := translateValid(t, newWorld([]*Service{entranceService(), stagingService()}, dup, other, toStaging()), entranceGroup)
	got := routeMirrors(out.Routes[0])
	want := map[string][]string{ // to-staging matches all: it is the catch-all
		"mirror:to-staging": {"shadowplane.default.to-staging.staging.entrance.8080"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("routes = %v, want %v", got, want)
	}
	if !hasWarning(out, "policy default/to-staging is defined twice (ConfigMap mirrors key policies.yaml and ConfigMap zz-later key a.yaml)") {
		t.Errorf("no warning about the duplicate: %q", out.Warnings)
	}
}

func TestRoutesOrderAndShareMirrors(t *testing.T) {
	matchPolicy := func(name string, m policy.Match) *policy.Policy {
		p := toStaging()
		p.Name = name
		p.Match = m
		p.Mirrors[0].Name = "m"
		return p
	}
	key := func(name string) string { return "shadowplane.default." + name + ".m" }
	tests := []struct {
		name      string
		policies  []*policy.Policy
		routes    []string
		mirrors   map[string][]string
		catchAll  string
		routeSpec map[string]string // route name -> expected match, rendered
	}{
		{
			name: "specificity order",
			policies: []*policy.Policy{
				matchPolicy("all-get", policy.Match{Methods: []string{"GET"}}),
				matchPolicy("api", policy.Match{PathPrefix: "/api/"}),
				matchPolicy("api-v1", policy.Match{PathPrefix: "/api/v1/"}),
				matchPolicy("tenant", policy.Match{PathPrefix: "/api/", Headers: []policy.HeaderMatch{{Name: "x-tenant", Exact: "beta"}}}),
				matchPolicy("api-read", policy.Match{PathPrefix: "/api/", Methods: []string{"GET", "HEAD"}}),
				matchPolicy("api-get", policy.Match{PathPrefix: "/api/", Methods: []string{"GET"}}),
			},
			routes: []string{"mirror:api-v1", "mirror:tenant", "mirror:api-get", "mirror:api-read", "mirror:api", "mirror:all-get", "forward"},
			mirrors: map[string][]string{
				"mirror:api-v1":   {key("api"), key("api-v1")},
				"mirror:tenant":   {key("api"), key("tenant")},
				"mirror:api-get":  {key("all-get"), key("api"), key("api-get"), key("api-read")},
				"mirror:api-read": {key("api"), key("api-read")},
				"mirror:api":      {key("api")},
				"mirror:all-get":  {key("all-get")},
				"forward":         {},
			},
		},
		{
			name: "identical matches share a route",
			policies: []*policy.Policy{
				matchPolicy("b", policy.Match{PathPrefix: "/x", Methods: []string{"POST", "GET"}}),
				matchPolicy("a", policy.Match{PathPrefix: "/x", Methods: []string{"GET", "POST"}}),
			},
			routes:  []string{"mirror:a,b", "forward"},
			mirrors: map[string][]string{"mirror:a,b": {key("a"), key("b")}, "forward": {}},
		},
		{
			name: "match-all policy is the catch-all and copies everything",
			policies: []*policy.Policy{
				matchPolicy("all", policy.Match{}),
				matchPolicy("api", policy.Match{PathPrefix: "/api/"}),
			},
			routes:  []string{"mirror:api", "mirror:all"},
			mirrors: map[string][]string{"mirror:api": {key("all"), key("api")}, "mirror:all": {key("all")}},
		},
		{
			name: "partial overlaps are not merged",
			policies: []*policy.Policy{
				matchPolicy("api", policy.Match{PathPrefix: "/api/"}),
				matchPolicy("posts", policy.Match{Methods: []string{"POST"}}),
				matchPolicy("beta", policy.Match{Headers: []policy.HeaderMatch{{Name: "x-tenant", Exact: "beta"}}}),
				matchPolicy("beta-prefix", policy.Match{Headers: []policy.HeaderMatch{{Name: "x-tenant", Prefix: "beta"}}}),
			},
			routes: []string{"mirror:api", "mirror:beta", "mirror:beta-prefix", "mirror:posts", "forward"},
			mirrors: map[string][]string{
				"mirror:api": {key("api")}, "mirror:beta": {key("beta")}, "mirror:beta-prefix": {key("beta-prefix")},
				"mirror:posts": {key("posts")}, "forward": {},
			},
		},
		{
			name: "path prefix is a string prefix",
			policies: []*policy.Policy{
				matchPolicy("short", policy.Match{PathPrefix: "/api"}),
				matchPolicy("long", policy.Match{PathPrefix: "/apiv2"}),
			},
			routes:  []string{"mirror:long", "mirror:short", "forward"},
			mirrors: map[string][]string{"mirror:long": {key("long"), key("short")}, "mirror:short": {key("short")}, "forward": {}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := translateValid(t, newWorld([]*Service{entranceService(), stagingService()}, tt.policies...), entranceGroup)
			rc := out.Routes[0]
			if got := routeNames(rc); !reflect.DeepEqual(got, tt.routes) {
				t.Errorf("routes = %v, want %v", got, tt.routes)
			}
			got := routeMirrors(rc)
			for name := range got {
				sort.Strings(got[name])
				sort.Strings(tt.mirrors[name])
			}
			if !reflect.DeepEqual(got, tt.mirrors) {
				t.Errorf("mirrors = %v, want %v", got, tt.mirrors)
			}
			for _, r := range rc.GetVirtualHosts()[0].GetRoutes() {
				if r.GetRoute().GetCluster() != "app|8080" || r.GetRoute().GetTimeout().AsDuration() != 0 || r.GetRoute().GetTimeout() == nil {
					t.Errorf("route %s: cluster %q timeout %v; want app|8080 and an explicit 0s", r.Name, r.GetRoute().GetCluster(), r.GetRoute().GetTimeout())
				}
			}
		})
	}
}

func TestRouteMatchShape(t *testing.T) {
	p := toStaging()
	p.Match = policy.Match{
		PathPrefix: "/entrance/",
		Methods:    []string{"GET", "POST"},
		Headers: []policy.HeaderMatch{
			{Name: "host", Exact: "shop.example.com"},
			{Name: "x-debug", Present: true},
			{Name: "x-tenant", Exact: "beta"},
			{Name: "x-user", Regex: "[0-9]+"},
			{Name: "x-zone", Prefix: "eu-"},
		},
	}
	single := toStaging()
	single.Name = "single"
	single.Match = policy.Match{PathPrefix: "/", Methods: []string{"DELETE"}}
	out := translateValid(t, newWorld([]*Service{entranceService(), stagingService()}, p, single), entranceGroup)
	routes := policyRoutes(out.Routes[0])
	m := routes[0].GetMatch()
	if m.GetPrefix() != "/entrance/" {
		t.Errorf("prefix = %q", m.GetPrefix())
	}
	type hm struct{ name, kind, value string }
	var got []hm
	for _, h := range m.GetHeaders() {
		sm := h.GetStringMatch()
		switch {
		case h.GetPresentMatch():
			got = append(got, hm{h.Name, "present", ""})
		case sm.GetExact() != "":
			got = append(got, hm{h.Name, "exact", sm.GetExact()})
		case sm.GetPrefix() != "":
			got = append(got, hm{h.Name, "prefix", sm.GetPrefix()})
		case sm.GetSafeRegex() != nil:
			got = append(got, hm{h.Name, "regex", sm.GetSafeRegex().GetRegex()})
		default:
			got = append(got, hm{h.Name, "?", h.String()})
		}
	}
	want := []hm{
		{":method", "regex", "^(GET|POST)$"},
		{":authority", "exact", "shop.example.com"},
		{"x-debug", "present", ""},
		{"x-tenant", "exact", "beta"},
		{"x-user", "regex", "[0-9]+"},
		{"x-zone", "prefix", "eu-"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("header matchers = %v, want %v", got, want)
	}
	one := routes[1].GetMatch().GetHeaders()
	if len(one) != 1 || one[0].GetName() != ":method" || one[0].GetStringMatch().GetExact() != "DELETE" {
		t.Errorf("single method matcher = %v, want :method exact DELETE", one)
	}
}

func TestMirrorPolicyShape(t *testing.T) {
	p := toStaging()
	p.CopyHeaders = policy.CopyHeaders{
		Remove: []string{"authorization", "cookie"},
		Set:    []policy.HeaderValue{{Name: "x-env", Value: "100% test"}},
	}
	p.Mirrors = append(p.Mirrors,
		policy.Mirror{Name: "ext", URL: &policy.URLTarget{Raw: "http://shadow.example.com:8080/x", Scheme: "http", Host: "shadow.example.com", Port: 8080}, PartsPerMillion: 15000},
		policy.Mirror{Name: "tls", URL: &policy.URLTarget{Raw: "https://shadow.example.com", Scheme: "https", Host: "shadow.example.com", Port: 443}, PartsPerMillion: 1},
		policy.Mirror{Name: "v6", URL: &policy.URLTarget{Raw: "http://[fd00::1]:81", Scheme: "http", Host: "fd00::1", Port: 81}, PartsPerMillion: 1},
	)
	suffixed := toStaging()
	suffixed.Name = "suffixed"
	suffixed.Match.PathPrefix = "/s"
	suffixed.HostSuffix = true
	suffixed.MarkCopies = false
	out := translateValid(t, newWorld([]*Service{entranceService(), stagingService()}, p, suffixed), entranceGroup)
	routes := policyRoutes(out.Routes[0])

	mirrors := routes[1].GetRoute().GetRequestMirrorPolicies()
	if len(mirrors) != 4 {
		t.Fatalf("got %d mirror policies on %s, want 4", len(mirrors), routes[1].Name)
	}
	wantClusters := []string{"shadow|staging|entrance|8080", "shadow-url|http|shadow.example.com|8080", "shadow-url|https|shadow.example.com|443", "shadow-url|http|fd00::1|81"}
	wantHosts := []string{"", "shadow.example.com:8080", "shadow.example.com", "[fd00::1]:81"}
	for i, m := range mirrors {
		if m.GetCluster() != wantClusters[i] || m.GetHostRewriteLiteral() != wantHosts[i] {
			t.Errorf("mirror %d: cluster %q host %q, want %q %q", i, m.GetCluster(), m.GetHostRewriteLiteral(), wantClusters[i], wantHosts[i])
		}
		rf := m.GetRuntimeFraction()
		if rf.GetDefaultValue() == nil || rf.GetDefaultValue().GetNumerator() != 0 || rf.GetDefaultValue().GetDenominator().String() != "MILLION" {
			t.Errorf("mirror %d: default value %v, want 0/MILLION (the percent lives in RTDS only)", i, rf.GetDefaultValue())
		}
		if want := policy.RuntimeKey(p, p.Mirrors[i]); rf.GetRuntimeKey() != want {
			t.Errorf("mirror %d: runtime key %q, want %q", i, rf.GetRuntimeKey(), want)
		}
		if !m.GetDisableShadowHostSuffixAppend() || m.GetTraceSampled() != nil {
			t.Errorf("mirror %d: suffix disabled %t, trace_sampled %v; want true and unset", i, m.GetDisableShadowHostSuffixAppend(), m.GetTraceSampled())
		}
		var edits []string
		for _, hm := range m.GetRequestHeadersMutations() {
			if r := hm.GetRemove(); r != "" {
				edits = append(edits, "-"+r)
			} else {
				a := hm.GetAppend()
				edits = append(edits, a.GetHeader().GetKey()+"="+a.GetHeader().GetValue()+" "+a.GetAppendAction().String())
			}
		}
		wantEdits := []string{"-authorization", "-cookie", "x-env=100%% test OVERWRITE_IF_EXISTS_OR_ADD",
			"x-shadowplane-copy=default/to-staging OVERWRITE_IF_EXISTS_OR_ADD"}
		if !reflect.DeepEqual(edits, wantEdits) {
			t.Errorf("mirror %d: header edits %q, want %q", i, edits, wantEdits)
		}
	}
	if !hasWarning(out, `policy default/to-staging: mirror ext: the URL path "/x" is ignored`) {
		t.Errorf("no warning about the URL path: %q", out.Warnings)
	}

	// routes[0] is "suffixed" (longer prefix); it also carries to-staging's
	// mirrors, since to-staging matches everything.
	own := routes[0].GetRoute().GetRequestMirrorPolicies()
	var ownMirror *routev3.RouteAction_RequestMirrorPolicy
	for _, m := range own {
		if strings.Contains(m.GetRuntimeFraction().GetRuntimeKey(), ".suffixed.") {
			ownMirror = m
		}
	}
	if ownMirror == nil || ownMirror.GetDisableShadowHostSuffixAppend() || len(ownMirror.GetRequestHeadersMutations()) != 0 {
		t.Errorf("hostSuffix, markCopies off: got %v, want suffix kept and no header edits", ownMirror)
	}
	if len(own) != 5 {
		t.Errorf("route %s has %d mirrors, want 5 (its own and to-staging's four)", routes[0].Name, len(own))
	}
}

func TestShadowClusters(t *testing.T) {
	p := toStaging()
	p.Guard = policy.Guard{MaxRequests: 10, ConnectTimeout: time.Second, MaxBodyBytes: 8 << 20}
	p.Mirrors = append(p.Mirrors,
		policy.Mirror{Name: "gone", Service: "gone", Namespace: "qa", Port: policy.PortRef{Name: "http"}, PartsPerMillion: 1},
		policy.Mirror{Name: "noport", Service: "entrance", Namespace: "staging", Port: policy.PortRef{Name: "grpc"}, PartsPerMillion: 1},
		policy.Mirror{Name: "ip", URL: &policy.URLTarget{Raw: "http://10.16.0.147", Scheme: "http", Host: "10.16.0.147", Port: 80}, PartsPerMillion: 1},
		policy.Mirror{Name: "tls", URL: &policy.URLTarget{Raw: "https://shadow.example.com", Scheme: "https", Host: "shadow.example.com", Port: 443}, PartsPerMillion: 1},
	)
	// A second policy shares the staging cluster with a tighter guard.
	q := toStaging()
	q.Name = "other"
	q.Match.PathPrefix = "/other"
	q.Guard = policy.Guard{MaxConnections: 3, MaxRequests: 50, ConnectTimeout: 2 * time.Second, MaxBodyBytes: 1 << 20}
	out := translateValid(t, newWorld([]*Service{entranceService(), stagingService()}, p, q), entranceGroup)

	want := []string{
		"app|8080",
		"shadow-url|https|shadow.example.com|443",
		"shadow-url|http|10.16.0.147|80",
		"shadow|qa|gone|http",
		"shadow|staging|entrance|8080",
		"shadow|staging|entrance|grpc",
	}
	if !reflect.DeepEqual(clusterNames(out), want) {
		t.Fatalf("clusters = %v, want %v", clusterNames(out), want)
	}

	app := clusterByName(out, "app|8080")
	if app.GetType() != clusterv3.Cluster_STATIC || app.GetConnectTimeout().AsDuration() != time.Second ||
		app.GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress().GetAddress() != "127.0.0.1" ||
		app.GetCircuitBreakers().GetThresholds()[0].GetMaxRequests().GetValue() != 1<<20 {
		t.Errorf("app cluster = %v", app)
	}

	staging := clusterByName(out, "shadow|staging|entrance|8080")
	if staging.GetType() != clusterv3.Cluster_EDS || staging.GetEdsClusterConfig().GetServiceName() != staging.Name ||
		staging.GetEdsClusterConfig().GetEdsConfig().GetAds() == nil {
		t.Errorf("staging cluster is not EDS over ADS: %v", staging)
	}
	if got := staging.GetEdsClusterConfig().GetEdsConfig().GetInitialFetchTimeout().AsDuration(); got != time.Second {
		t.Errorf("staging cluster waits %v for its endpoints, want 1s: a changed cluster must not warm for Envoy's default 15s", got)
	}
	th := staging.GetCircuitBreakers().GetThresholds()[0]
	if th.GetMaxConnections().GetValue() != 3 || th.GetMaxRequests().GetValue() != 10 ||
		th.GetMaxPendingRequests().GetValue() != policy.DefaultMaxPendingRequests || th.GetMaxRetries() == nil ||
		th.GetMaxRetries().GetValue() != 0 || !th.GetTrackRemaining() {
		t.Errorf("shared cluster thresholds = %v, want the tightest of both guards", th)
	}
	if staging.GetConnectTimeout().AsDuration() != time.Second {
		t.Errorf("shared cluster connect timeout = %v, want the shorter 1s", staging.GetConnectTimeout().AsDuration())
	}
	od := staging.GetOutlierDetection()
	if od.GetConsecutive_5Xx().GetValue() != 5 || !od.GetSplitExternalLocalOriginErrors() || od.GetMaxEjectionPercent().GetValue() != 100 {
		t.Errorf("outlier detection = %v", od)
	}
	gone := clusterByName(out, "shadow|qa|gone|http")
	if gone.GetConnectTimeout().AsDuration() != time.Second ||
		gone.GetCircuitBreakers().GetThresholds()[0].GetMaxRequests().GetValue() != 10 {
		t.Errorf("cluster of one policy should carry its guard over the defaults: %v", gone)
	}

	// Every shadow cluster holds copies' bodies in a buffer filter in front
	// of the codec, sized by the tightest guard of the policies using it.
	for name, wantLimit := range map[string]uint32{
		"shadow|staging|entrance|8080":            1 << 20,
		"shadow|qa|gone|http":                     8 << 20,
		"shadow-url|http|10.16.0.147|80":          8 << 20,
		"shadow-url|https|shadow.example.com|443": 8 << 20,
	} {
		names, limit := upstreamBodyFilters(t, clusterByName(out, name))
		if !reflect.DeepEqual(names, []string{"envoy.filters.http.buffer", "envoy.filters.http.upstream_codec"}) || limit != wantLimit {
			t.Errorf("cluster %s upstream filters %v with body limit %d, want buffer (%d) then upstream_codec", name, names, limit, wantLimit)
		}
	}
	if names, _ := upstreamBodyFilters(t, app); len(names) != 0 {
		t.Errorf("app cluster has upstream filters %v, want none: production bodies stream untouched", names)
	}

	ip := clusterByName(out, "shadow-url|http|10.16.0.147|80")
	if ip.GetType() != clusterv3.Cluster_STATIC || ip.GetTransportSocket() != nil {
		t.Errorf("IP URL cluster = %v, want STATIC without TLS", ip)
	}
	tlsCluster := clusterByName(out, "shadow-url|https|shadow.example.com|443")
	if tlsCluster.GetType() != clusterv3.Cluster_STRICT_DNS || tlsCluster.GetDnsLookupFamily() != clusterv3.Cluster_V4_PREFERRED {
		t.Errorf("https cluster = %v, want STRICT_DNS V4_PREFERRED", tlsCluster)
	}
	tls := &tlsv3.UpstreamTlsContext{}
	if err := tlsCluster.GetTransportSocket().GetTypedConfig().UnmarshalTo(tls); err != nil {
		t.Fatal(err)
	}
	vc := tls.GetCommonTlsContext().GetValidationContext()
	if tls.GetSni() != "shadow.example.com" || vc.GetTrustedCa().GetFilename() != systemCABundle ||
		vc.GetMatchTypedSubjectAltNames()[0].GetMatcher().GetExact() != "shadow.example.com" {
		t.Errorf("TLS context = %v, want SNI, system CAs and the host's SAN", tls)
	}

	for _, w := range []string{
		"policy default/to-staging: mirror target Service qa/gone not found; copies go nowhere",
		"policy default/to-staging: mirror target Service staging/entrance has no port grpc; copies go nowhere",
	} {
		if !hasWarning(out, w) {
			t.Errorf("warnings %q lack %q", out.Warnings, w)
		}
	}
}

// upstreamBodyFilters returns the names of a cluster's upstream HTTP filters
// and the body limit of its buffer filter (0 without one).
func upstreamBodyFilters(t *testing.T, c *clusterv3.Cluster) (names []string, limit uint32) {
	t.Helper()
	opts := &upstreamhttpv3.HttpProtocolOptions{}
	if err := c.GetTypedExtensionProtocolOptions()[httpProtocolOptionsKey].UnmarshalTo(opts); err != nil {
		t.Fatalf("cluster %s protocol options: %v", c.GetName(), err)
	}
	for _, f := range opts.GetHttpFilters() {
		names = append(names, f.GetName())
		if f.GetName() == bufferFilterName {
			b := &bufferv3.Buffer{}
			if err := f.GetTypedConfig().UnmarshalTo(b); err != nil {
				t.Fatalf("cluster %s buffer filter: %v", c.GetName(), err)
			}
			limit = b.GetMaxRequestBytes().GetValue()
		}
	}
	return names, limit
}

func TestShadowEndpoints(t *testing.T) {
	named := &Service{Namespace: "staging", Name: "entrance",
		Ports: []ServicePort{{Name: "http", Port: 8080, TargetPortName: "web"}, {Name: "admin", Port: 9000, TargetPort: 9001}},
		Endpoints: []Endpoint{
			{Address: "10.1.0.3", Ports: map[string]int32{"http": 8082}},
			{Address: "10.1.0.1", Ports: map[string]int32{"http": 8081, "admin": 9001}},
			{Address: "10.1.0.1", Ports: map[string]int32{"http": 8081}}, // duplicate
			{Address: "10.1.0.2", Ports: map[string]int32{}},             // no number for http
		}}
	p := toStaging()
	p.Mirrors = []policy.Mirror{
		{Name: "http", Service: "entrance", Namespace: "staging", Port: policy.PortRef{Name: "http"}, PartsPerMillion: 1},
		{Name: "admin", Service: "entrance", Namespace: "staging", Port: policy.PortRef{Number: 9000}, PartsPerMillion: 1},
		{Name: "empty", Service: "empty", Namespace: "staging", Port: policy.PortRef{Number: 80}, PartsPerMillion: 1},
	}
	empty := &Service{Namespace: "staging", Name: "empty", Ports: []ServicePort{{Port: 80, TargetPort: 8080}}}
	out := translateValid(t, newWorld([]*Service{entranceService(), named, empty}, p), entranceGroup)

	got := map[string][]string{}
	for _, cla := range out.Endpoints {
		eps := []string{}
		for _, l := range cla.GetEndpoints() {
			for _, e := range l.GetLbEndpoints() {
				a := e.GetEndpoint().GetAddress().GetSocketAddress()
				eps = append(eps, a.GetAddress()+":"+strconv.FormatUint(uint64(a.GetPortValue()), 10))
			}
		}
		got[cla.ClusterName] = eps
	}
	want := map[string][]string{
		"shadow|staging|empty|80":      {},
		"shadow|staging|entrance|8080": {"10.1.0.1:8081", "10.1.0.3:8082"},
		"shadow|staging|entrance|9000": {"10.1.0.1:9001", "10.1.0.2:9001", "10.1.0.3:9001"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("endpoints = %v, want %v", got, want)
	}
	for _, w := range []string{
		"mirror target Service staging/empty has no ready endpoints; copies go nowhere",
		"mirror target Service staging/entrance: some ready endpoints give no number for port http (8080)",
	} {
		if !hasWarning(out, w) {
			t.Errorf("warnings %q lack %q", out.Warnings, w)
		}
	}
}

func TestRuntimeLayer(t *testing.T) {
	p := toStaging()
	p.Mirrors = append(p.Mirrors, policy.Mirror{Name: "ext", URL: &policy.URLTarget{Raw: "http://10.0.9.9", Scheme: "http", Host: "10.0.9.9", Port: 80}, PartsPerMillion: 15000})
	paused := toStaging()
	paused.Name = "paused"
	paused.Match.PathPrefix = "/p"
	paused.Mirrors[0].PartsPerMillion = 0
	// A policy that applies to two listeners still has one key per mirror.
	g := entranceGroup
	g.Ports = []nodemeta.PortPair{{Listen: 15001, App: 8080}, {Listen: 15002, App: 8080}}
	both := toStaging()
	both.Name = "both"
	both.Port = policy.PortRef{}
	svc := entranceService()
	svc.Ports[0].TargetPort = 0
	svc.Ports[0].TargetPortName = "proxy"
	svc.Endpoints = []Endpoint{{Address: "10.0.0.1", Ports: map[string]int32{"http": 15001}}, {Address: "10.0.0.2", Ports: map[string]int32{"http": 15002}}}
	out := translateValid(t, newWorld([]*Service{svc, stagingService()}, p, paused, both), g)

	fields := out.Runtimes[0].GetLayer().GetFields()
	want := map[string]float64{
		"shadowplane.default.to-staging.staging.entrance.8080": 1_000_000,
		"shadowplane.default.to-staging.ext":                   15000,
		"shadowplane.default.paused.staging.entrance.8080":     0,
		"shadowplane.default.both.staging.entrance.8080":       1_000_000,
	}
	if len(fields) != len(want) {
		t.Errorf("runtime keys = %v, want %v", fields, want)
	}
	for key, ppm := range want {
		v := fields[key].GetStructValue().GetFields()
		if v["numerator"].GetNumberValue() != ppm || v["denominator"].GetStringValue() != "MILLION" || len(v) != 2 {
			t.Errorf("runtime %s = %v, want {numerator: %v, denominator: MILLION}", key, fields[key], ppm)
		}
	}
	for _, rc := range out.Routes {
		if got := routeMirrors(rc)["mirror:both,to-staging"]; len(got) != 3 {
			t.Errorf("route configuration %s: catch-all mirrors %v, want both's and to-staging's", rc.Name, got)
		}
	}
}

func TestDuplicateListenPortsKeepTheFirst(t *testing.T) {
	g := entranceGroup
	g.Ports = []nodemeta.PortPair{{Listen: 15001, App: 8080}, {Listen: 15001, App: 9090}}
	out := translateValid(t, nil, g)
	if len(out.Listeners) != 1 || !reflect.DeepEqual(clusterNames(out), []string{"app|8080"}) {
		t.Errorf("listeners %d clusters %v, want one listener to app|8080", len(out.Listeners), clusterNames(out))
	}
	if !hasWarning(out, "listen port 15001 is given twice") {
		t.Errorf("warnings = %q", out.Warnings)
	}
}

func TestSelfMirrorWarns(t *testing.T) {
	p := toStaging()
	p.Mirrors[0].Namespace = ""
	p.Mirrors[0].Port = policy.PortRef{Name: "http"}
	out := translateValid(t, newWorld([]*Service{entranceService()}, p), entranceGroup)
	if !hasWarning(out, "targets Service default/entrance, the Service the policy copies from") {
		t.Errorf("warnings = %q", out.Warnings)
	}
	if clusterByName(out, "shadow|default|entrance|80") == nil {
		t.Errorf("clusters = %v, want the mirror kept (named by Service port 80)", clusterNames(out))
	}
}

// TestCopyPassthroughRoute: with policies, requests carrying the copy marker
// are forwarded first and never copied again (no mirror loops); without
// policies there is nothing to guard.
func TestCopyPassthroughRoute(t *testing.T) {
	out := translateValid(t, newWorld([]*Service{entranceService(), stagingService()}, toStaging()), entranceGroup)
	routes := out.Routes[0].GetVirtualHosts()[0].GetRoutes()
	first := routes[0]
	if first.GetName() != copyPassthroughRouteName || len(first.GetRoute().GetRequestMirrorPolicies()) != 0 {
		t.Fatalf("first route = %v, want %s without mirrors", first, copyPassthroughRouteName)
	}
	hs := first.GetMatch().GetHeaders()
	if first.GetMatch().GetPrefix() != "/" || len(hs) != 1 || hs[0].GetName() != policy.CopyMarkerHeader || !hs[0].GetPresentMatch() {
		t.Errorf("passthrough match = %v, want prefix / and %s present", first.GetMatch(), policy.CopyMarkerHeader)
	}
	if first.GetRoute().GetCluster() != "app|8080" {
		t.Errorf("passthrough goes to %q, want the app", first.GetRoute().GetCluster())
	}
	if len(routes) < 2 || len(routes[1].GetRoute().GetRequestMirrorPolicies()) == 0 {
		t.Errorf("the policy route must follow the passthrough: %v", routeNames(out.Routes[0]))
	}

	none := translateValid(t, newWorld([]*Service{entranceService(), stagingService()}), entranceGroup)
	if names := routeNames(none.Routes[0]); !reflect.DeepEqual(names, []string{forwardRouteName}) {
		t.Errorf("without policies routes = %v, want only %s", names, forwardRouteName)
	}
}
