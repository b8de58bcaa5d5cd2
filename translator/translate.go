package translator

import (
	"fmt"
	"sort"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	runtimev3 "github.com/envoyproxy/go-control-plane/envoy/service/runtime/v3"

	"github.com/shadowplane/shadowplane/nodemeta"
	"github.com/shadowplane/shadowplane/policy"
)

// Output is the xDS resources for one node group, with a version per type.
type Output struct {
	Listeners []*listenerv3.Listener
	Routes    []*routev3.RouteConfiguration
	Clusters  []*clusterv3.Cluster
	Endpoints []*endpointv3.ClusterLoadAssignment
	// Runtimes holds exactly one Runtime, named RuntimeLayerName.
	Runtimes []*runtimev3.Runtime
	// Secrets are the CA bundles and client certificates the shadow
	// clusters fetch by SDS.
	Secrets []*tlsv3.Secret

	// Versions maps the URL of each of ResourceTypes to a hash of that
	// type's resources, so a change re-sends only the types it touches.
	Versions map[string]string

	// Warnings about the translation, sorted and free of duplicates, e.g. a
	// mirror target Service that does not exist.
	Warnings []string
}

// Translate turns the World into the xDS resources of one node group. It is
// pure and deterministic: it never mutates w, and the same input yields
// byte-identical resources and versions. A nil World is valid and yields a
// sidecar that only forwards.
func Translate(w *World, g nodemeta.NodeGroup) *Output {
	t := &translation{world: w, group: g, targets: map[string]*shadowTarget{}, warned: map[string]bool{}}
	t.listeners = t.planListeners()

	out := &Output{}
	for _, l := range t.listeners {
		mirrors := t.resolveMirrors(l.policies)
		out.Listeners = append(out.Listeners, buildListener(t.listenAddress(), l.port.Listen))
		out.Routes = append(out.Routes, buildRouteConfiguration(l.port, l.policies, mirrors))
	}
	out.Clusters = t.buildClusters()
	out.Endpoints = t.buildEndpoints()
	out.Secrets = t.buildSecrets()
	out.Runtimes = []*runtimev3.Runtime{t.buildRuntime()}
	out.Versions = versions(out)
	out.Warnings = t.sortedWarnings()
	return out
}

// translation carries the state of one Translate call.
type translation struct {
	world *World
	group nodemeta.NodeGroup

	listeners []listenerPlan
	// targets are the shadow clusters referenced by this group's routes,
	// by cluster name.
	targets map[string]*shadowTarget

	warned   map[string]bool
	warnings []string
}

// listenerPlan is one inbound port of the sidecar and the policies that
// apply to the requests it receives.
type listenerPlan struct {
	port     nodemeta.PortPair
	policies []*policy.Policy
}

func (t *translation) listenAddress() string {
	if t.group.ListenAddress == "" {
		return nodemeta.DefaultListenAddress
	}
	return t.group.ListenAddress
}

// warnf records a warning once.
func (t *translation) warnf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if t.warned[msg] {
		return
	}
	t.warned[msg] = true
	t.warnings = append(t.warnings, msg)
}

func (t *translation) sortedWarnings() []string {
	out := append([]string(nil), t.warnings...)
	sort.Strings(out)
	return out
}

// policyID names a policy in messages: "<namespace>/<name>".
func policyID(p *policy.Policy) string { return p.Namespace + "/" + p.Name }
