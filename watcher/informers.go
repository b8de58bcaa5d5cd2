package watcher

import (
	"fmt"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"
)

// scope holds the informers of one namespace, or of all namespaces.
type scope struct {
	// factories are started and stopped together; policy ConfigMaps need a
	// factory of their own because the label selector applies factory-wide.
	factories  []informers.SharedInformerFactory
	services   corelisters.ServiceLister
	slices     discoverylisters.EndpointSliceLister
	configMaps corelisters.ConfigMapLister
	// handlersSynced report whether each event handler has seen its
	// informer's initial listing.
	handlersSynced []cache.InformerSynced
}

// newScope sets up the informers of namespace (metav1.NamespaceAll for all)
// and calls changed(kind) on every relevant event.
func newScope(client kubernetes.Interface, namespace string, selector labels.Selector, changed func(kind string)) (*scope, error) {
	objects := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(namespace))
	policies := informers.NewSharedInformerFactoryWithOptions(client, 0, informers.WithNamespace(namespace),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = selector.String() }))

	services := objects.Core().V1().Services()
	slices := objects.Discovery().V1().EndpointSlices()
	configMaps := policies.Core().V1().ConfigMaps()

	s := &scope{
		factories:  []informers.SharedInformerFactory{objects, policies},
		services:   services.Lister(),
		slices:     slices.Lister(),
		configMaps: configMaps.Lister(),
	}
	isPolicyConfigMap := func(obj any) bool {
		cm, ok := obj.(*corev1.ConfigMap)
		return ok && selector.Matches(labels.Set(cm.Labels))
	}
	for _, inf := range []struct {
		informer  cache.SharedIndexInformer
		transform cache.TransformFunc
		handler   changeHandler
	}{
		{services.Informer(), stripService, changeHandler{kind: kindService, changed: changed}},
		{slices.Informer(), stripEndpointSlice, changeHandler{kind: kindEndpointSlice, changed: changed}},
		// The API server filters by label already; checking again keeps the
		// watcher right with clients that do not (e.g. fakes).
		{configMaps.Informer(), stripConfigMap, changeHandler{kind: kindConfigMap, changed: changed, relevant: isPolicyConfigMap}},
	} {
		if err := inf.informer.SetTransform(inf.transform); err != nil {
			return nil, fmt.Errorf("watcher: set %s informer transform: %w", inf.handler.kind, err)
		}
		reg, err := inf.informer.AddEventHandler(inf.handler)
		if err != nil {
			return nil, fmt.Errorf("watcher: add %s event handler: %w", inf.handler.kind, err)
		}
		s.handlersSynced = append(s.handlersSynced, reg.HasSynced)
	}
	return s, nil
}

// changeHandler reports informer events that may change the World.
type changeHandler struct {
	kind    string
	changed func(kind string)
	// relevant filters objects; nil means all are.
	relevant func(obj any) bool
}

func (h changeHandler) OnAdd(obj any, _ bool) {
	if h.isRelevant(obj) {
		h.changed(h.kind)
	}
}

func (h changeHandler) OnUpdate(oldObj, newObj any) {
	if sameResourceVersion(oldObj, newObj) {
		return // a relist delivers unchanged objects as updates
	}
	if h.isRelevant(oldObj) || h.isRelevant(newObj) {
		h.changed(h.kind)
	}
}

func (h changeHandler) OnDelete(obj any) {
	if tombstone, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tombstone.Obj
	}
	if h.isRelevant(obj) {
		h.changed(h.kind)
	}
}

func (h changeHandler) isRelevant(obj any) bool {
	return h.relevant == nil || h.relevant(obj)
}

func sameResourceVersion(a, b any) bool {
	ma, errA := meta.Accessor(a)
	mb, errB := meta.Accessor(b)
	if errA != nil || errB != nil {
		return false
	}
	return ma.GetResourceVersion() != "" && ma.GetResourceVersion() == mb.GetResourceVersion()
}
