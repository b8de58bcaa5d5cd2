package watcher

import (
	"cmp"
	"maps"
	"slices"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/shadowplane/shadowplane/translator"
)

// buildServices converts Services and their EndpointSlices into the
// translator's model. Everything it returns is freshly allocated, so a World
// handed out earlier is never touched.
func buildServices(services []*corev1.Service, endpointSlices []*discoveryv1.EndpointSlice) map[string]*translator.Service {
	out := make(map[string]*translator.Service, len(services))
	for _, s := range services {
		out[translator.ServiceKey(s.Namespace, s.Name)] = convertService(s)
	}
	// Slices in a fixed order, so that endpoints merge the same way every
	// time.
	endpointSlices = slices.Clone(endpointSlices)
	slices.SortFunc(endpointSlices, func(a, b *discoveryv1.EndpointSlice) int {
		return cmp.Or(strings.Compare(a.Namespace, b.Namespace), strings.Compare(a.Name, b.Name))
	})
	// service key → address → the endpoints at that address, each a port
	// name → port map, merged over all slices.
	ready := map[string]map[string][]map[string]int32{}
	for _, slice := range endpointSlices {
		name := slice.Labels[discoveryv1.LabelServiceName]
		if name == "" {
			continue
		}
		key := translator.ServiceKey(slice.Namespace, name)
		if out[key] == nil {
			continue // slices outlive or precede their Service; nothing to attach to
		}
		byAddress := ready[key]
		if byAddress == nil {
			byAddress = map[string][]map[string]int32{}
			ready[key] = byAddress
		}
		addReadyEndpoints(byAddress, slice)
	}
	for key, byAddress := range ready {
		out[key].Endpoints = sortedEndpoints(byAddress)
	}
	return out
}

// convertService copies the ports of a Service.
func convertService(s *corev1.Service) *translator.Service {
	svc := &translator.Service{Namespace: s.Namespace, Name: s.Name}
	for _, p := range s.Spec.Ports {
		port := translator.ServicePort{
			Name:     p.Name,
			Port:     p.Port,
			Protocol: string(p.Protocol),
		}
		if port.Protocol == "" {
			port.Protocol = string(corev1.ProtocolTCP)
		}
		switch {
		case p.TargetPort.Type == intstr.String:
			port.TargetPortName = p.TargetPort.StrVal
		case p.TargetPort.IntVal != 0:
			port.TargetPort = p.TargetPort.IntVal
		default:
			// The API server defaults an absent targetPort to the port.
			port.TargetPort = p.Port
		}
		svc.Ports = append(svc.Ports, port)
	}
	return svc
}

// addReadyEndpoints adds the ready IP endpoints of one slice, with the slice's
// TCP ports, to byAddress.
func addReadyEndpoints(byAddress map[string][]map[string]int32, slice *discoveryv1.EndpointSlice) {
	if slice.AddressType != discoveryv1.AddressTypeIPv4 && slice.AddressType != discoveryv1.AddressTypeIPv6 {
		return // FQDN slices name hosts, not addresses Envoy can use by EDS
	}
	ports := tcpPorts(slice.Ports)
	if len(ports) == 0 {
		return
	}
	for _, ep := range slice.Endpoints {
		if !endpointReady(ep.Conditions) || len(ep.Addresses) == 0 {
			continue
		}
		// Like kube-proxy, only the first address is used; the API reserves
		// the others.
		address := ep.Addresses[0]
		byAddress[address] = mergePorts(byAddress[address], ports)
	}
}

// mergePorts adds the ports of one slice endpoint to the endpoints already
// known at its address. They join the first endpoint that gives none of
// their names another number (one pod's ports spread over several slices);
// otherwise they are another endpoint at the same address: host-network
// pods share the node's address, and pods whose named target port resolves
// to different numbers land in different slices, each served on its own.
func mergePorts(known []map[string]int32, ports map[string]int32) []map[string]int32 {
	for _, existing := range known {
		if portsAgree(existing, ports) {
			maps.Copy(existing, ports)
			return known
		}
	}
	return append(known, maps.Clone(ports))
}

// portsAgree reports whether no port name has different numbers in a and b.
func portsAgree(a, b map[string]int32) bool {
	for name, port := range b {
		if other, ok := a[name]; ok && other != port {
			return false
		}
	}
	return true
}

// endpointReady follows the EndpointSlice API: an unknown ready condition
// means ready, except for an endpoint that is terminating.
func endpointReady(c discoveryv1.EndpointConditions) bool {
	if c.Ready != nil {
		return *c.Ready
	}
	return c.Terminating == nil || !*c.Terminating
}

// tcpPorts maps the slice's TCP port names to numbers. A port without a
// number means "all ports" in the API and cannot be addressed, so it is
// skipped.
func tcpPorts(ports []discoveryv1.EndpointPort) map[string]int32 {
	out := make(map[string]int32, len(ports))
	for _, p := range ports {
		if p.Port == nil {
			continue
		}
		if p.Protocol != nil && *p.Protocol != corev1.ProtocolTCP {
			continue
		}
		name := ""
		if p.Name != nil {
			name = *p.Name
		}
		out[name] = *p.Port
	}
	return out
}

// sortedEndpoints turns merged endpoints into a list sorted by address, and
// endpoints sharing an address by their ports.
func sortedEndpoints(byAddress map[string][]map[string]int32) []translator.Endpoint {
	out := make([]translator.Endpoint, 0, len(byAddress))
	for address, endpoints := range byAddress {
		for _, ports := range endpoints {
			out = append(out, translator.Endpoint{Address: address, Ports: ports})
		}
	}
	slices.SortFunc(out, func(a, b translator.Endpoint) int {
		return cmp.Or(strings.Compare(a.Address, b.Address), comparePorts(a.Ports, b.Ports))
	})
	return out
}

// comparePorts orders port maps by their names, then their numbers.
func comparePorts(a, b map[string]int32) int {
	an, bn := slices.Sorted(maps.Keys(a)), slices.Sorted(maps.Keys(b))
	if c := slices.Compare(an, bn); c != 0 {
		return c
	}
	for _, name := range an {
		if c := cmp.Compare(a[name], b[name]); c != 0 {
			return c
		}
	}
	return 0
}
