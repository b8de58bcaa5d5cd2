package watcher

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
)

// bulkyMeta carries the metadata the transforms must drop.
func bulkyMeta(ns, name string, labels map[string]string) metav1.ObjectMeta {
	return metav1.ObjectMeta{
		Namespace:       ns,
		Name:            name,
		UID:             "uid-1",
		ResourceVersion: "42",
		Labels:          labels,
		Annotations:     map[string]string{"kubectl.kubernetes.io/last-applied-configuration": "{...big...}"},
		ManagedFields:   []metav1.ManagedFieldsEntry{{Manager: "kubectl"}},
		OwnerReferences: []metav1.OwnerReference{{Name: "owner"}},
	}
}

func TestTransforms(t *testing.T) {
	tests := []struct {
		name      string
		transform cache.TransformFunc
		in        runtime.Object
		want      runtime.Object
	}{
		{
			name:      "service keeps identity and ports",
			transform: stripService,
			in: &corev1.Service{
				ObjectMeta: bulkyMeta("ns", "svc", map[string]string{"app": "web"}),
				Spec: corev1.ServiceSpec{
					Ports:     []corev1.ServicePort{svcPort("http", 80, intstr.FromInt32(8080))},
					Selector:  map[string]string{"app": "web"},
					ClusterIP: "10.96.0.10",
				},
				Status: corev1.ServiceStatus{LoadBalancer: corev1.LoadBalancerStatus{Ingress: []corev1.LoadBalancerIngress{{IP: "1.2.3.4"}}}},
			},
			want: &corev1.Service{
				ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "svc", UID: "uid-1", ResourceVersion: "42"},
				Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{svcPort("http", 80, intstr.FromInt32(8080))}},
			},
		},
		{
			name:      "endpointslice keeps service label, ports, addresses and conditions",
			transform: stripEndpointSlice,
			in: &discoveryv1.EndpointSlice{
				ObjectMeta: bulkyMeta("ns", "svc-abc", map[string]string{
					discoveryv1.LabelServiceName: "svc",
					discoveryv1.LabelManagedBy:   "endpointslice-controller.k8s.io",
				}),
				AddressType: discoveryv1.AddressTypeIPv4,
				Ports:       []discoveryv1.EndpointPort{epPort("http", 8080, corev1.ProtocolTCP)},
				Endpoints: []discoveryv1.Endpoint{{
					Addresses:  []string{"10.0.0.1"},
					Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
					Hostname:   ptr.To("pod-1"),
					NodeName:   ptr.To("node-1"),
					Zone:       ptr.To("zone-a"),
					TargetRef:  &corev1.ObjectReference{Kind: "Pod", Name: "pod-1"},
				}},
			},
			want: &discoveryv1.EndpointSlice{
				ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "svc-abc", UID: "uid-1", ResourceVersion: "42",
					Labels: map[string]string{discoveryv1.LabelServiceName: "svc"}},
				AddressType: discoveryv1.AddressTypeIPv4,
				Ports:       []discoveryv1.EndpointPort{epPort("http", 8080, corev1.ProtocolTCP)},
				Endpoints: []discoveryv1.Endpoint{{
					Addresses:  []string{"10.0.0.1"},
					Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(true)},
				}},
			},
		},
		{
			name:      "configmap keeps identity, labels and policy keys",
			transform: stripConfigMap,
			in: &corev1.ConfigMap{
				ObjectMeta: bulkyMeta("ns", "policies", map[string]string{"shadowplane.io/policy": "true"}),
				Data:       map[string]string{"a.yaml": "policies: []", "b.yml": "policies: []", "README.md": "docs"},
				BinaryData: map[string][]byte{"blob": {1, 2, 3}},
			},
			want: &corev1.ConfigMap{
				ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "policies", UID: "uid-1", ResourceVersion: "42",
					Labels: map[string]string{"shadowplane.io/policy": "true"}},
				Data: map[string]string{"a.yaml": "policies: []", "b.yml": "policies: []"},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.transform(tt.in)
			if err != nil {
				t.Fatalf("transform: %v", err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("transform mismatch (-want +got):\n%s", diff)
			}
			again, err := tt.transform(got)
			if err != nil {
				t.Fatalf("second transform: %v", err)
			}
			if diff := cmp.Diff(tt.want, again); diff != "" {
				t.Errorf("transform is not idempotent (-want +got):\n%s", diff)
			}
		})
	}
}

func TestTransformsPassOtherObjectsThrough(t *testing.T) {
	tombstone := cache.DeletedFinalStateUnknown{Key: "ns/x", Obj: &corev1.Service{}}
	for name, transform := range map[string]cache.TransformFunc{
		"service":       stripService,
		"endpointslice": stripEndpointSlice,
		"configmap":     stripConfigMap,
	} {
		got, err := transform(tombstone)
		if err != nil {
			t.Errorf("%s transform of a tombstone: %v", name, err)
		}
		if diff := cmp.Diff(tombstone, got); diff != "" {
			t.Errorf("%s transform changed a tombstone (-want +got):\n%s", name, diff)
		}
	}
}
