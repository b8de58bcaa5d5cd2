package watcher

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/shadowplane/shadowplane/translator"
)

func TestBuildServicesPorts(t *testing.T) {
	tests := []struct {
		name string
		port corev1.ServicePort
		want translator.ServicePort
	}{
		{
			name: "numeric target port",
			port: svcPort("http", 80, intstr.FromInt32(8080)),
			want: translator.ServicePort{Name: "http", Port: 80, TargetPort: 8080, Protocol: "TCP"},
		},
		{
			name: "named target port",
			port: svcPort("web", 80, intstr.FromString("web-port")),
			want: translator.ServicePort{Name: "web", Port: 80, TargetPortName: "web-port", Protocol: "TCP"},
		},
		{
			name: "absent target port defaults to the port",
			port: corev1.ServicePort{Port: 9090, Protocol: corev1.ProtocolTCP},
			want: translator.ServicePort{Port: 9090, TargetPort: 9090, Protocol: "TCP"},
		},
		{
			name: "absent protocol defaults to TCP",
			port: corev1.ServicePort{Name: "grpc", Port: 50051, TargetPort: intstr.FromInt32(50051)},
			want: translator.ServicePort{Name: "grpc", Port: 50051, TargetPort: 50051, Protocol: "TCP"},
		},
		{
			name: "UDP port is kept with its protocol",
			port: corev1.ServicePort{Name: "dns", Port: 53, TargetPort: intstr.FromInt32(5353), Protocol: corev1.ProtocolUDP},
			want: translator.ServicePort{Name: "dns", Port: 53, TargetPort: 5353, Protocol: "UDP"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := buildServices([]*corev1.Service{service("ns", "svc", tt.port)}, nil)
			want := map[string]*translator.Service{
				"ns/svc": {Namespace: "ns", Name: "svc", Ports: []translator.ServicePort{tt.want}},
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("buildServices() mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBuildServicesEndpoints(t *testing.T) {
	httpPorts := []discoveryv1.EndpointPort{epPort("http", 8080, corev1.ProtocolTCP)}
	tests := []struct {
		name   string
		slices []*discoveryv1.EndpointSlice
		want   []translator.Endpoint
	}{
		{
			name: "ready conditions",
			slices: []*discoveryv1.EndpointSlice{slice("ns", "s1", "svc", discoveryv1.AddressTypeIPv4, httpPorts,
				endpointWith("10.0.0.1", ptr.To(true), nil),
				endpointWith("10.0.0.2", nil, nil),                    // unknown means ready
				endpointWith("10.0.0.3", ptr.To(false), nil),          // not ready
				endpointWith("10.0.0.4", nil, ptr.To(true)),           // terminating, readiness unknown
				endpointWith("10.0.0.5", ptr.To(false), ptr.To(true)), // terminating and not ready
				endpointWith("10.0.0.6", ptr.To(true), ptr.To(true)),  // terminating but still ready
			)},
			want: []translator.Endpoint{
				{Address: "10.0.0.1", Ports: map[string]int32{"http": 8080}},
				{Address: "10.0.0.2", Ports: map[string]int32{"http": 8080}},
				{Address: "10.0.0.6", Ports: map[string]int32{"http": 8080}},
			},
		},
		{
			name: "slices merged, deduplicated and sorted by address",
			slices: []*discoveryv1.EndpointSlice{
				slice("ns", "s2", "svc", discoveryv1.AddressTypeIPv4, httpPorts, readyEndpoint("10.0.0.9"), readyEndpoint("10.0.0.3")),
				slice("ns", "s1", "svc", discoveryv1.AddressTypeIPv4, httpPorts, readyEndpoint("10.0.0.3"), readyEndpoint("10.0.0.1")),
				slice("ns", "s3", "svc", discoveryv1.AddressTypeIPv6, httpPorts, readyEndpoint("fd00::1")),
			},
			want: []translator.Endpoint{
				{Address: "10.0.0.1", Ports: map[string]int32{"http": 8080}},
				{Address: "10.0.0.3", Ports: map[string]int32{"http": 8080}},
				{Address: "10.0.0.9", Ports: map[string]int32{"http": 8080}},
				{Address: "fd00::1", Ports: map[string]int32{"http": 8080}},
			},
		},
		{
			name: "ports of one address merged across slices",
			slices: []*discoveryv1.EndpointSlice{
				slice("ns", "s1", "svc", discoveryv1.AddressTypeIPv4, httpPorts, readyEndpoint("10.0.0.1")),
				slice("ns", "s2", "svc", discoveryv1.AddressTypeIPv4,
					[]discoveryv1.EndpointPort{epPort("metrics", 9090, corev1.ProtocolTCP)}, readyEndpoint("10.0.0.1")),
			},
			want: []translator.Endpoint{{Address: "10.0.0.1", Ports: map[string]int32{"http": 8080, "metrics": 9090}}},
		},
		{
			// Host-network pods share the node's address; the EndpointSlice
			// controller puts pods whose named target port resolves to
			// different numbers into different slices, and kube-proxy
			// serves both address:port pairs.
			name: "one address with different numbers for one port name stays two endpoints",
			slices: []*discoveryv1.EndpointSlice{
				slice("ns", "s2", "svc", discoveryv1.AddressTypeIPv4,
					[]discoveryv1.EndpointPort{epPort("http", 8081, corev1.ProtocolTCP)}, readyEndpoint("10.0.0.1")),
				slice("ns", "s1", "svc", discoveryv1.AddressTypeIPv4, httpPorts, readyEndpoint("10.0.0.1"), readyEndpoint("10.0.0.2")),
				slice("ns", "s3", "svc", discoveryv1.AddressTypeIPv4,
					[]discoveryv1.EndpointPort{epPort("metrics", 9090, corev1.ProtocolTCP)}, readyEndpoint("10.0.0.1")),
				slice("ns", "s4", "svc", discoveryv1.AddressTypeIPv4, httpPorts, readyEndpoint("10.0.0.1")),
			},
			want: []translator.Endpoint{
				{Address: "10.0.0.1", Ports: map[string]int32{"http": 8081}}, // fewer port names first
				{Address: "10.0.0.1", Ports: map[string]int32{"http": 8080, "metrics": 9090}},
				{Address: "10.0.0.2", Ports: map[string]int32{"http": 8080}},
			},
		},
		{
			name: "only TCP ports, unnamed port keyed by empty name",
			slices: []*discoveryv1.EndpointSlice{slice("ns", "s1", "svc", discoveryv1.AddressTypeIPv4,
				[]discoveryv1.EndpointPort{
					{Port: ptr.To[int32](8080)}, // no name, no protocol: TCP
					epPort("dns", 53, corev1.ProtocolUDP),
					{Name: ptr.To("any")}, // no number: cannot be addressed
				},
				readyEndpoint("10.0.0.1"))},
			want: []translator.Endpoint{{Address: "10.0.0.1", Ports: map[string]int32{"": 8080}}},
		},
		{
			name: "slices without usable endpoints are skipped",
			slices: []*discoveryv1.EndpointSlice{
				slice("ns", "fqdn", "svc", discoveryv1.AddressTypeFQDN, httpPorts, readyEndpoint("backend.example.com")),
				slice("ns", "udp", "svc", discoveryv1.AddressTypeIPv4,
					[]discoveryv1.EndpointPort{epPort("dns", 53, corev1.ProtocolUDP)}, readyEndpoint("10.0.0.7")),
				slice("ns", "unlabelled", "", discoveryv1.AddressTypeIPv4, httpPorts, readyEndpoint("10.0.0.8")),
				slice("ns", "other", "other-svc", discoveryv1.AddressTypeIPv4, httpPorts, readyEndpoint("10.0.0.9")),
				slice("other-ns", "s1", "svc", discoveryv1.AddressTypeIPv4, httpPorts, readyEndpoint("10.0.0.10")),
				slice("ns", "noaddr", "svc", discoveryv1.AddressTypeIPv4, httpPorts, discoveryv1.Endpoint{}),
			},
			want: nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := buildServices([]*corev1.Service{httpService("ns", "svc")}, tt.slices)
			svc := got["ns/svc"]
			if svc == nil {
				t.Fatalf("buildServices() has no ns/svc: %v", got)
			}
			if diff := cmp.Diff(tt.want, svc.Endpoints, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("endpoints mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBuildServicesAllocatesFreshValues(t *testing.T) {
	svcs := []*corev1.Service{httpService("ns", "svc")}
	slices := []*discoveryv1.EndpointSlice{slice("ns", "s1", "svc", discoveryv1.AddressTypeIPv4,
		[]discoveryv1.EndpointPort{epPort("http", 8080, corev1.ProtocolTCP)}, readyEndpoint("10.0.0.1"))}
	first := buildServices(svcs, slices)
	second := buildServices(svcs, slices)
	first["ns/svc"].Endpoints[0].Ports["http"] = 1
	first["ns/svc"].Ports[0].Port = 1
	if got := second["ns/svc"].Endpoints[0].Ports["http"]; got != 8080 {
		t.Errorf("second build shares endpoint ports with the first: port = %d, want 8080", got)
	}
	if got := second["ns/svc"].Ports[0].Port; got != 80 {
		t.Errorf("second build shares service ports with the first: port = %d, want 80", got)
	}
}
