package translator

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
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

// NodeGroup identifies a set of sidecars that share one xDS snapshot: all
// sidecars fronting the same Service with the same listen→app port pairs.
type NodeGroup struct {
	// Namespace and Service name the Service the sidecar fronts.
	Namespace string
	Service   string
	// ListenAddress is the address the sidecar's listeners bind to
	// (default 0.0.0.0).
	ListenAddress string
	// Ports are the sidecar's listen→app port pairs, sorted by Listen.
	Ports []PortPair
}

// PortPair is one inbound listener port of a sidecar and the application
// port on 127.0.0.1 that it forwards to.
type PortPair struct {
	Listen uint32
	App    uint32
}

// Node metadata keys written by `shadowplane bootstrap` and read by the xDS
// server to find a sidecar's node group.
const (
	MetadataNamespace     = "shadowplane.io/namespace"
	MetadataService       = "shadowplane.io/service"
	MetadataPorts         = "shadowplane.io/ports"          // "15001:8080,15002:9090"
	MetadataListenAddress = "shadowplane.io/listen-address" // optional
)

// RuntimeLayerName is the name of the RTDS layer in the sidecar bootstrap and
// of the one Runtime resource the translator produces.
const RuntimeLayerName = "shadowplane"

// DefaultListenAddress is where sidecar listeners bind unless told otherwise.
const DefaultListenAddress = "0.0.0.0"

// Key is the node group's stable identity, used as the snapshot cache key.
func (g NodeGroup) Key() string {
	var b strings.Builder
	b.WriteString(g.Namespace)
	b.WriteByte('/')
	b.WriteString(g.Service)
	b.WriteByte('@')
	addr := g.ListenAddress
	if addr == "" {
		addr = DefaultListenAddress
	}
	b.WriteString(addr)
	for i, p := range g.Ports {
		if i == 0 {
			b.WriteByte('|')
		} else {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%d:%d", p.Listen, p.App)
	}
	return b.String()
}

// FormatPorts renders port pairs as the metadata value "listen:app,...".
func FormatPorts(ports []PortPair) string {
	parts := make([]string, len(ports))
	for i, p := range ports {
		parts[i] = fmt.Sprintf("%d:%d", p.Listen, p.App)
	}
	return strings.Join(parts, ",")
}

// ParsePorts parses "listen:app,..." into sorted port pairs.
func ParsePorts(s string) ([]PortPair, error) {
	var out []PortPair
	seen := map[uint32]bool{}
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		l, a, ok := strings.Cut(part, ":")
		if !ok {
			return nil, fmt.Errorf("port pair %q: want LISTEN:APP, e.g. 15001:8080", part)
		}
		listen, err := parsePortNumber(l)
		if err != nil {
			return nil, fmt.Errorf("port pair %q: listen port: %w", part, err)
		}
		app, err := parsePortNumber(a)
		if err != nil {
			return nil, fmt.Errorf("port pair %q: app port: %w", part, err)
		}
		if seen[listen] {
			return nil, fmt.Errorf("port pair %q: listen port %d given twice", part, listen)
		}
		seen[listen] = true
		out = append(out, PortPair{Listen: listen, App: app})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no port pairs: want LISTEN:APP[,LISTEN:APP...], e.g. 15001:8080")
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Listen < out[j].Listen })
	return out, nil
}

func parsePortNumber(s string) (uint32, error) {
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 32)
	if err != nil || n == 0 || n > 65535 {
		return 0, fmt.Errorf("%q is not a port number (1-65535)", s)
	}
	return uint32(n), nil
}
