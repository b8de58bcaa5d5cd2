package watcher

import (
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
)

// Builders of the Kubernetes objects the tests feed the watcher.

func service(ns, name string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name},
		Spec:       corev1.ServiceSpec{Ports: ports},
	}
}

func svcPort(name string, port int32, target intstr.IntOrString) corev1.ServicePort {
	return corev1.ServicePort{Name: name, Port: port, TargetPort: target, Protocol: corev1.ProtocolTCP}
}

// httpService is a Service with one port "http" 80 → 8080.
func httpService(ns, name string) *corev1.Service {
	return service(ns, name, svcPort("http", 80, intstr.FromInt32(8080)))
}

func slice(ns, name, svc string, addressType discoveryv1.AddressType, ports []discoveryv1.EndpointPort, endpoints ...discoveryv1.Endpoint) *discoveryv1.EndpointSlice {
	labels := map[string]string{}
	if svc != "" {
		labels[discoveryv1.LabelServiceName] = svc
	}
	return &discoveryv1.EndpointSlice{
		ObjectMeta:  metav1.ObjectMeta{Namespace: ns, Name: name, Labels: labels},
		AddressType: addressType,
		Ports:       ports,
		Endpoints:   endpoints,
	}
}

func epPort(name string, port int32, protocol corev1.Protocol) discoveryv1.EndpointPort {
	return discoveryv1.EndpointPort{Name: ptr.To(name), Port: ptr.To(port), Protocol: ptr.To(protocol)}
}

func readyEndpoint(address string) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{Addresses: []string{address}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)}}
}

func endpointWith(address string, ready, terminating *bool) discoveryv1.Endpoint {
	return discoveryv1.Endpoint{Addresses: []string{address}, Conditions: discoveryv1.EndpointConditions{Ready: ready, Terminating: terminating}}
}

func policyConfigMap(ns, name string, data map[string]string) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, Labels: map[string]string{"shadowplane.io/policy": "true"}},
		Data:       data,
	}
}

// baseObjects are the Services web and web-shadow, and a slice of web.
func baseObjects(ns string) []runtime.Object {
	return []runtime.Object{
		httpService(ns, "web"),
		httpService(ns, "web-shadow"),
		slice(ns, "web-abc", "web", discoveryv1.AddressTypeIPv4,
			[]discoveryv1.EndpointPort{epPort("http", 8080, corev1.ProtocolTCP)},
			readyEndpoint("10.0.0.2"), readyEndpoint("10.0.0.1")),
	}
}

// mirrorEntry is one policy copying percent of web:http to target:http.
func mirrorEntry(name, target, percent string) string {
	return fmt.Sprintf(`- name: %s
  service: web
  port: http
  mirrors:
  - service: %s
    port: http
    percent: %s
`, name, target, percent)
}

func policiesYAML(entries ...string) string {
	return "policies:\n" + strings.Join(entries, "")
}
