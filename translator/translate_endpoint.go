package translator

import (
	"sort"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
)

// buildEndpoints returns the endpoints of every shadow Service cluster,
// sorted by cluster name. A target without endpoints (Service or port
// missing, nothing ready) still gets an empty assignment, so Envoy never
// waits for one: its copies just go nowhere.
func (t *translation) buildEndpoints() []*endpointv3.ClusterLoadAssignment {
	var out []*endpointv3.ClusterLoadAssignment
	for _, target := range t.targets {
		if target.url == nil {
			out = append(out, t.serviceAssignment(target))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ClusterName < out[j].ClusterName })
	return out
}

func (t *translation) serviceAssignment(target *shadowTarget) *endpointv3.ClusterLoadAssignment {
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: target.name}
	svcKey := ServiceKey(target.namespace, target.service)
	switch {
	case target.svc == nil:
		t.warnUsers(target, "mirror target Service "+svcKey+" not found; copies go nowhere")
		return cla
	case !target.portFound:
		what := "has no port " + target.portRef.String()
		if target.portRef.IsZero() {
			what = "has several ports and the mirror names none"
		}
		t.warnUsers(target, "mirror target Service "+svcKey+" "+what+"; copies go nowhere")
		return cla
	}

	addrs, missingPort := endpointAddresses(target.svc, target.port)
	if missingPort > 0 {
		t.warnUsers(target, "mirror target Service "+svcKey+": some ready endpoints give no number for port "+
			servicePortLabel(target.port)+" and get no copies")
	}
	if len(addrs) == 0 {
		t.warnUsers(target, "mirror target Service "+svcKey+" has no ready endpoints; copies go nowhere")
		return cla
	}
	lb := make([]*endpointv3.LbEndpoint, len(addrs))
	for i, a := range addrs {
		lb[i] = lbEndpoint(a.address, a.port)
	}
	cla.Endpoints = []*endpointv3.LocalityLbEndpoints{{LbEndpoints: lb}}
	return cla
}

type hostPort struct {
	address string
	port    uint32
}

// endpointAddresses lists the Service's ready endpoints for one Service
// port, sorted and distinct. Each endpoint's port is the one its
// EndpointSlice gives for the Service port's name, else the numeric
// targetPort; endpoints with neither are counted, not used.
func endpointAddresses(svc *Service, sp ServicePort) (addrs []hostPort, missingPort int) {
	seen := map[hostPort]bool{}
	for _, ep := range svc.Endpoints {
		port, ok := ep.Ports[sp.Name]
		if !ok || port <= 0 {
			port = sp.TargetPort
		}
		if port <= 0 || ep.Address == "" {
			missingPort++
			continue
		}
		hp := hostPort{address: ep.Address, port: uint32(port)}
		if !seen[hp] {
			seen[hp] = true
			addrs = append(addrs, hp)
		}
	}
	sort.Slice(addrs, func(i, j int) bool {
		if addrs[i].address != addrs[j].address {
			return addrs[i].address < addrs[j].address
		}
		return addrs[i].port < addrs[j].port
	})
	return addrs, missingPort
}

// warnUsers records a warning for every policy that copies to the target.
func (t *translation) warnUsers(target *shadowTarget, msg string) {
	for _, id := range target.users {
		t.warnf("policy %s: %s", id, msg)
	}
}
