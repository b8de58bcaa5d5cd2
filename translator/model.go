package translator

import (
	"time"

	"github.com/shadowplane/shadowplane/policy"
)

// World is everything the translator needs to know about the cluster. It is
// immutable once handed over: the watcher builds a new World for every change.
type World struct {
	// Services by "namespace/name", each with its ready endpoints.
	Services map[string]*Service
	// Policies in force: the last valid version of each policy, sorted by
	// namespace then name.
	Policies []*policy.Policy

	// ClientCertificates of mirror targets, from labelled Secrets, by
	// ClientCertificateKey.
	ClientCertificates map[string]*ClientCertificate
	// CABundles of mirror targets, from labelled ConfigMaps, by
	// CABundleKey.
	CABundles map[string]*CABundle

	// ObservedAt is when the oldest Kubernetes change folded into this World
	// was seen; it feeds the event-to-snapshot latency metric. The translator
	// ignores it, so it never affects output.
	ObservedAt time.Time
}

// Service is a Kubernetes Service with the ready endpoints of its
// EndpointSlices.
type Service struct {
	Namespace string
	Name      string
	Ports     []ServicePort
	// Endpoints are the ready endpoints of all the Service's EndpointSlices,
	// sorted by address and free of duplicates.
	Endpoints []Endpoint
}

// ServicePort is one port of a Service.
type ServicePort struct {
	Name string
	Port int32
	// TargetPort is the numeric targetPort, or 0 when the Service names it
	// (TargetPortName); EndpointSlices resolve named target ports.
	TargetPort     int32
	TargetPortName string
	Protocol       string // TCP, UDP, SCTP
}

// Endpoint is one ready backend address of a Service.
type Endpoint struct {
	Address string
	// Ports maps an EndpointSlice port name (the Service port's name, "" for
	// an unnamed single port) to the port number on this endpoint.
	Ports map[string]int32
}

// ServiceKey returns the "namespace/name" key of a Service.
func ServiceKey(namespace, name string) string { return namespace + "/" + name }

// Service looks a Service up by namespace and name; nil when absent.
func (w *World) Service(namespace, name string) *Service {
	if w == nil || w.Services == nil {
		return nil
	}
	return w.Services[ServiceKey(namespace, name)]
}

// Port finds a Service port by reference: by name, or by number. An empty
// reference matches the only port of a single-port Service.
func (s *Service) Port(ref policy.PortRef) (ServicePort, bool) {
	if ref.IsZero() {
		if len(s.Ports) == 1 {
			return s.Ports[0], true
		}
		return ServicePort{}, false
	}
	for _, p := range s.Ports {
		if (ref.Name != "" && p.Name == ref.Name) || (ref.Number != 0 && p.Port == ref.Number) {
			return p, true
		}
	}
	return ServicePort{}, false
}

// RuntimeLayerName is the name of the RTDS layer in the sidecar bootstrap and
// of the one Runtime resource the translator produces.
const RuntimeLayerName = "shadowplane"
