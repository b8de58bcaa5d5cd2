package translator

import (
	"fmt"

	"github.com/shadowplane/shadowplane/policy"
)

// NoReadyEndpoints is in the message of the warning CheckReferences gives
// for a routeTo backend whose Service has no ready endpoint, so the watcher
// can report it under its own Event reason and metric.
const NoReadyEndpoints = "has no ready endpoints"

// checkRouteBackends checks the routeTo backends of a policy against the
// World: a missing Service is a warning (its share stays on the stable
// version until it exists), a missing or non-TCP port an error, and a
// Service without a ready endpoint a warning, since its share also stays
// on the stable version.
func checkRouteBackends(p *policy.Policy, w *World, ownKey string, ownPort ServicePort, ownOK bool, report func(field, msg string, warning bool)) {
	for i, b := range p.RouteTo {
		path := fmt.Sprintf("routeTo[%d]", i)
		key, port, ok := resolveTarget(w, p.Namespace, b.Service, b.Port, path+".service", path+".port", report)
		if !ok {
			continue
		}
		switch {
		case !isTCPPort(port):
			report(path+".port", fmt.Sprintf("port %s of Service %q is %s: only TCP ports carry HTTP", describeServicePort(port), key, port.Protocol), false)
		case ownOK && key == ownKey && port.Port == ownPort.Port:
			report(path, fmt.Sprintf("routes to the policy's own Service %q and port %s, the stable version: route to another Service", key, describeServicePort(port)), false)
		default:
			if addrs, _ := endpointAddresses(w.Service(p.Namespace, b.Service), port); len(addrs) == 0 {
				report(path+".service", fmt.Sprintf("Service %q %s: backend %s gets no requests, its share stays on the stable version until an endpoint is ready", key, NoReadyEndpoints, b.Name), true)
			}
		}
	}
}
