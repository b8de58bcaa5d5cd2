package watcher

import (
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/shadowplane/shadowplane/policy"
)

// The informer transforms below drop everything the watcher never reads
// before objects enter the informer caches, which keeps memory low in large
// clusters (managedFields and last-applied annotations are often most of an
// object). They modify objects in place, which client-go allows for
// transforms, and are idempotent. Anything else (e.g. a deletion tombstone)
// passes through untouched.

// stripService keeps a Service's identity and ports.
func stripService(obj any) (any, error) {
	s, ok := obj.(*corev1.Service)
	if !ok {
		return obj, nil
	}
	s.ManagedFields = nil
	s.Annotations = nil
	s.Labels = nil
	s.OwnerReferences = nil
	s.Spec = corev1.ServiceSpec{Ports: s.Spec.Ports}
	s.Status = corev1.ServiceStatus{}
	return s, nil
}

// stripEndpointSlice keeps a slice's service label, address type, ports and
// the addresses and conditions of its endpoints.
func stripEndpointSlice(obj any) (any, error) {
	s, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return obj, nil
	}
	s.ManagedFields = nil
	s.Annotations = nil
	s.OwnerReferences = nil
	if name, ok := s.Labels[discoveryv1.LabelServiceName]; ok {
		s.Labels = map[string]string{discoveryv1.LabelServiceName: name}
	} else {
		s.Labels = nil
	}
	for i := range s.Endpoints {
		s.Endpoints[i] = discoveryv1.Endpoint{
			Addresses:  s.Endpoints[i].Addresses,
			Conditions: s.Endpoints[i].Conditions,
		}
	}
	return s, nil
}

// stripConfigMap keeps a ConfigMap's identity (Events refer to it), its
// labels (to re-check the selector), its policy keys and the annotations
// the leader writes (store.go).
func stripConfigMap(obj any) (any, error) {
	c, ok := obj.(*corev1.ConfigMap)
	if !ok {
		return obj, nil
	}
	c.ManagedFields = nil
	c.Annotations = storeAnnotations(c.Annotations)
	c.OwnerReferences = nil
	c.BinaryData = nil
	for key := range c.Data {
		if !policy.IsPolicyKey(key) {
			delete(c.Data, key)
		}
	}
	return c, nil
}

// storeAnnotations keeps only the leader's annotations.
func storeAnnotations(in map[string]string) map[string]string {
	var out map[string]string
	for _, name := range []string{AnnotationLastValid, AnnotationStatus} {
		if v, ok := in[name]; ok {
			if out == nil {
				out = map[string]string{}
			}
			out[name] = v
		}
	}
	return out
}
