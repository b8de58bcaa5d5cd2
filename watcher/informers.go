package watcher

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"strings"
	"sync"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	discoverylisters "k8s.io/client-go/listers/discovery/v1"
	"k8s.io/client-go/tools/cache"

	"github.com/shadowplane/shadowplane/translator"
)

// scope holds the informers of one namespace, or of all namespaces.
type scope struct {
	// namespace is the scope's namespace; "" for all.
	namespace string
	informers []cache.SharedIndexInformer
	services  corelisters.ServiceLister
	slices    discoverylisters.EndpointSliceLister
	// sliceIndexer indexes EndpointSlices by their Service's key
	// (sliceServiceIndex).
	sliceIndexer cache.Indexer
	configMaps   corelisters.ConfigMapLister
	// tlsSecrets and caConfigMaps hold the labelled client certificates
	// and CA bundles of mirror targets.
	tlsSecrets   corelisters.SecretLister
	caConfigMaps corelisters.ConfigMapLister
	// handlersSynced report whether each event handler has seen its
	// informer's initial listing.
	handlersSynced []cache.InformerSynced
}

// newScope sets up the informers of namespace (metav1.NamespaceAll for all),
// reports their requests to health and calls changed(kind, objects) on every
// relevant event.
func newScope(client kubernetes.Interface, namespace string, selector labels.Selector, health *watchHealth, changed func(kind string, objs ...any)) (*scope, error) {
	services := client.CoreV1().Services(namespace)
	slices := client.DiscoveryV1().EndpointSlices(namespace)
	configMaps := client.CoreV1().ConfigMaps(namespace)
	// The API server filters policy ConfigMaps by label.
	policyOptions := func(o metav1.ListOptions) metav1.ListOptions {
		o.LabelSelector = selector.String()
		return o
	}
	newInformer := func(kind string, object runtime.Object, lw *cache.ListWatch) cache.SharedIndexInformer {
		return cache.NewSharedIndexInformer(&trackedListWatch{inner: lw, kind: kind, health: health}, object, 0,
			cache.Indexers{cache.NamespaceIndex: cache.MetaNamespaceIndexFunc})
	}
	serviceInformer := newInformer(kindService, &corev1.Service{}, &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return services.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return services.Watch(ctx, o)
		},
	})
	sliceInformer := newInformer(kindEndpointSlice, &discoveryv1.EndpointSlice{}, &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return slices.List(ctx, o)
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return slices.Watch(ctx, o)
		},
	})
	configMapInformer := newInformer(kindConfigMap, &corev1.ConfigMap{}, &cache.ListWatch{
		ListWithContextFunc: func(ctx context.Context, o metav1.ListOptions) (runtime.Object, error) {
			return configMaps.List(ctx, policyOptions(o))
		},
		WatchFuncWithContext: func(ctx context.Context, o metav1.ListOptions) (watch.Interface, error) {
			return configMaps.Watch(ctx, policyOptions(o))
		},
	})

	secrets := client.CoreV1().Secrets(namespace)
	tlsSecretInformer := newInformer(kindSecret, &corev1.Secret{}, labelledListWatch(tlsSelector, secrets.List, secrets.Watch))
	caConfigMapInformer := newInformer(kindCAConfigMap, &corev1.ConfigMap{}, labelledListWatch(tlsSelector, configMaps.List, configMaps.Watch))

	if err := sliceInformer.AddIndexers(cache.Indexers{sliceServiceIndex: sliceServiceKey}); err != nil {
		return nil, fmt.Errorf("watcher: index endpointslices by service: %w", err)
	}
	s := &scope{
		namespace:    namespace,
		sliceIndexer: sliceInformer.GetIndexer(),
		informers:    []cache.SharedIndexInformer{serviceInformer, sliceInformer, configMapInformer, tlsSecretInformer, caConfigMapInformer},
		services:     corelisters.NewServiceLister(serviceInformer.GetIndexer()),
		slices:       discoverylisters.NewEndpointSliceLister(sliceInformer.GetIndexer()),
		configMaps:   corelisters.NewConfigMapLister(configMapInformer.GetIndexer()),
		tlsSecrets:   corelisters.NewSecretLister(tlsSecretInformer.GetIndexer()),
		caConfigMaps: corelisters.NewConfigMapLister(caConfigMapInformer.GetIndexer()),
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
		{serviceInformer, stripService, changeHandler{kind: kindService, changed: changed}},
		{sliceInformer, stripEndpointSlice, changeHandler{kind: kindEndpointSlice, changed: changed}},
		// The API server filters by label already; checking again keeps the
		// watcher right with clients that do not (e.g. fakes).
		{configMapInformer, stripConfigMap, changeHandler{kind: kindConfigMap, changed: changed, relevant: isPolicyConfigMap, changedUpdate: configMapChanged}},
		{tlsSecretInformer, stripTLSSecret, changeHandler{kind: kindSecret, changed: changed, relevant: isTLSObject}},
		{caConfigMapInformer, stripCAConfigMap, changeHandler{kind: kindCAConfigMap, changed: changed, relevant: isTLSObject}},
	} {
		if err := inf.informer.SetWatchErrorHandlerWithContext(logAPIErrors); err != nil {
			return nil, fmt.Errorf("watcher: set %s watch error handler: %w", inf.handler.kind, err)
		}
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

// sliceServiceIndex indexes EndpointSlices by "namespace/name" of their
// Service, so the watcher converts one Service again without listing every
// slice.
const sliceServiceIndex = "service"

func sliceServiceKey(obj any) ([]string, error) {
	sl, ok := obj.(*discoveryv1.EndpointSlice)
	if !ok {
		return nil, nil
	}
	name := sl.Labels[discoveryv1.LabelServiceName]
	if name == "" {
		return nil, nil
	}
	return []string{translator.ServiceKey(sl.Namespace, name)}, nil
}

// serviceAndSlices looks a Service and its EndpointSlices up in the scopes
// that cover its namespace; svc is nil when no scope holds it.
func serviceAndSlices(scopes []*scope, key string) (*corev1.Service, []*discoveryv1.EndpointSlice, error) {
	namespace, name, ok := strings.Cut(key, "/")
	if !ok {
		return nil, nil, fmt.Errorf("bad service key %q", key)
	}
	for _, s := range scopes {
		if s.namespace != metav1.NamespaceAll && s.namespace != namespace {
			continue
		}
		svc, err := s.services.Services(namespace).Get(name)
		if apierrors.IsNotFound(err) {
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("get service %s: %w", key, err)
		}
		objs, err := s.sliceIndexer.ByIndex(sliceServiceIndex, key)
		if err != nil {
			return nil, nil, fmt.Errorf("endpointslices of %s: %w", key, err)
		}
		own := make([]*discoveryv1.EndpointSlice, 0, len(objs))
		for _, o := range objs {
			if sl, ok := o.(*discoveryv1.EndpointSlice); ok {
				own = append(own, sl)
			}
		}
		return svc, own, nil
	}
	return nil, nil, nil
}

// informerSet is one set of scopes, started and stopped together. After an
// API server outage a fresh set replaces the old one: new informers list at
// once, while the old ones' reflectors may still wait out a backoff of
// several seconds.
type informerSet struct {
	scopes []*scope
	cancel context.CancelFunc
	done   sync.WaitGroup
}

func newInformerSet(client kubernetes.Interface, namespaces []string, selector labels.Selector, health *watchHealth, changed func(kind string, objs ...any)) (*informerSet, error) {
	set := &informerSet{}
	for _, ns := range namespaces {
		s, err := newScope(client, ns, selector, health, changed)
		if err != nil {
			return nil, err
		}
		set.scopes = append(set.scopes, s)
	}
	return set, nil
}

// start runs the informers until stop or until ctx is done.
func (set *informerSet) start(ctx context.Context) {
	ctx, set.cancel = context.WithCancel(ctx)
	for _, s := range set.scopes {
		for _, inf := range s.informers {
			set.done.Add(1)
			go func() {
				defer set.done.Done()
				inf.RunWithContext(ctx)
			}()
		}
	}
}

// stop stops the informers and waits for them.
func (set *informerSet) stop() {
	if set.cancel != nil {
		set.cancel()
	}
	set.done.Wait()
}

// synced reports whether every event handler has seen its initial listing.
func (set *informerSet) synced() []cache.InformerSynced {
	var synced []cache.InformerSynced
	for _, s := range set.scopes {
		synced = append(synced, s.handlersSynced...)
	}
	return synced
}

// logAPIErrors passes errors the API server answered (e.g. 403 Forbidden) to
// client-go's default handler, which logs them. An unreachable API server is
// not logged on every retry: watchHealth logs once when it goes down and once
// when it is back.
func logAPIErrors(ctx context.Context, r *cache.Reflector, err error) {
	var status apierrors.APIStatus
	if errors.As(err, &status) {
		cache.DefaultWatchErrorHandler(ctx, r, err)
	}
}

// changeHandler reports informer events that may change the World.
type changeHandler struct {
	kind    string
	changed func(kind string, objs ...any)
	// relevant filters objects; nil means all are.
	relevant func(obj any) bool
	// changedUpdate, when set, says whether an update changed anything the
	// World depends on.
	changedUpdate func(oldObj, newObj any) bool
}

func (h changeHandler) OnAdd(obj any, _ bool) {
	if h.isRelevant(obj) {
		h.changed(h.kind, obj)
	}
}

func (h changeHandler) OnUpdate(oldObj, newObj any) {
	if sameResourceVersion(oldObj, newObj) {
		return // a relist delivers unchanged objects as updates
	}
	if h.changedUpdate != nil && !h.changedUpdate(oldObj, newObj) {
		return
	}
	if h.isRelevant(oldObj) || h.isRelevant(newObj) {
		h.changed(h.kind, oldObj, newObj)
	}
}

func (h changeHandler) OnDelete(obj any) {
	if tombstone, ok := obj.(cache.DeletedFinalStateUnknown); ok {
		obj = tombstone.Obj
	}
	if h.isRelevant(obj) {
		h.changed(h.kind, obj)
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

// configMapChanged reports whether a policy ConfigMap update changed its
// labels, policy keys or stored last valid versions: the leader's status
// writes (sidecar counts) change nothing the World depends on.
func configMapChanged(oldObj, newObj any) bool {
	a, okA := oldObj.(*corev1.ConfigMap)
	b, okB := newObj.(*corev1.ConfigMap)
	if !okA || !okB {
		return true
	}
	return !maps.Equal(a.Labels, b.Labels) || !maps.Equal(a.Data, b.Data) ||
		a.Annotations[AnnotationLastValid] != b.Annotations[AnnotationLastValid]
}
