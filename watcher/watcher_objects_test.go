package watcher

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	testingclock "k8s.io/utils/clock/testing"

	"github.com/shadowplane/shadowplane/translator"
)

// withPolicyOn adds a policy that names web and the given targets, so
// changes to them are not ignored.
func withPolicyOn(objects []runtime.Object, targets ...string) []runtime.Object {
	var entries []string
	for i, target := range targets {
		entries = append(entries, mirrorEntry(fmt.Sprintf("p%02d", i), target, "1"))
	}
	return append(objects, policyConfigMap("default", "mirrors", map[string]string{"policies.yaml": policiesYAML(entries...)}))
}

func TestWatcherEndpointsFollowSlices(t *testing.T) {
	h := newHarness(t, Options{}, withPolicyOn(baseObjects("default"), "web-shadow")...)
	h.start(3)
	h.world("first", func(*translator.World) bool { return true })
	addresses := func(w *translator.World) []string {
		var out []string
		for _, ep := range w.Service("default", "web").Endpoints {
			out = append(out, ep.Address)
		}
		return out
	}
	ports := []discoveryv1.EndpointPort{epPort("http", 8080, corev1.ProtocolTCP)}
	steps := []struct {
		name   string
		change func(ctx context.Context) error
		want   []string
	}{
		{"second slice merges", func(ctx context.Context) error {
			_, err := h.client.DiscoveryV1().EndpointSlices("default").Create(ctx, slice("default", "web-def", "web", discoveryv1.AddressTypeIPv4, ports,
				readyEndpoint("10.0.0.3"), readyEndpoint("10.0.0.1")), metav1.CreateOptions{})
			return err
		}, []string{"10.0.0.1", "10.0.0.2", "10.0.0.3"}},
		{"endpoint turning unready leaves", func(ctx context.Context) error {
			_, err := h.client.DiscoveryV1().EndpointSlices("default").Update(ctx, slice("default", "web-abc", "web", discoveryv1.AddressTypeIPv4, ports,
				readyEndpoint("10.0.0.1"), endpointWith("10.0.0.2", boolPtr(false), boolPtr(true))), metav1.UpdateOptions{})
			return err
		}, []string{"10.0.0.1", "10.0.0.3"}},
		{"deleted slice leaves", func(ctx context.Context) error {
			return h.client.DiscoveryV1().EndpointSlices("default").Delete(ctx, "web-def", metav1.DeleteOptions{})
		}, []string{"10.0.0.1"}},
	}
	for _, step := range steps {
		w := h.update(step.name, step.change)
		if got := addresses(w); !slices.Equal(got, step.want) {
			t.Errorf("%s: endpoints %v, want %v", step.name, got, step.want)
		}
	}
}

func boolPtr(b bool) *bool { return &b }

func TestWatcherNamespaces(t *testing.T) {
	var objects []runtime.Object
	for _, ns := range []string{"team-a", "team-b", "team-c"} {
		objects = append(objects, baseObjects(ns)...)
		objects = append(objects, policyConfigMap(ns, "mirrors", map[string]string{
			"policies.yaml": policiesYAML(mirrorEntry("p-"+ns, "web-shadow", "1")),
		}))
	}
	h := newHarness(t, Options{Namespaces: []string{"team-c", "team-a", "team-c"}}, objects...)
	h.start(6) // three informers in each of two namespaces
	w := h.world("first", func(*translator.World) bool { return true })
	var services []string
	for key := range w.Services {
		services = append(services, key)
	}
	slices.Sort(services)
	if want := []string{"team-a/web", "team-a/web-shadow", "team-c/web", "team-c/web-shadow"}; !slices.Equal(services, want) {
		t.Errorf("services = %v, want %v", services, want)
	}
	if got, want := policyNames(w), []string{"team-a/p-team-a", "team-c/p-team-c"}; !slices.Equal(got, want) {
		t.Errorf("policies = %v, want %v (sorted by namespace)", got, want)
	}
}

func TestWatcherWorldsAreNeverModified(t *testing.T) {
	objects := append(baseObjects("default"), policyConfigMap("default", "mirrors", map[string]string{
		"policies.yaml": policiesYAML(mirrorEntry("p1", "web-shadow", "25")),
	}))
	h := newHarness(t, Options{}, objects...)
	h.start(3)
	first := h.world("first", func(*translator.World) bool { return true })
	snapshot := fmt.Sprintf("%#v %#v %v", first.Services["default/web"], first.Services["default/web"].Endpoints, policyNames(first))

	h.update("add an endpoint", func(ctx context.Context) error {
		_, err := h.client.DiscoveryV1().EndpointSlices("default").Update(ctx, slice("default", "web-abc", "web", discoveryv1.AddressTypeIPv4,
			[]discoveryv1.EndpointPort{epPort("http", 9999, corev1.ProtocolTCP)}, readyEndpoint("10.0.0.9")), metav1.UpdateOptions{})
		return err
	})
	h.setPolicies("default", "mirrors", map[string]string{"policies.yaml": policiesYAML(mirrorEntry("p2", "web-shadow", "1"))})
	if got := fmt.Sprintf("%#v %#v %v", first.Services["default/web"], first.Services["default/web"].Endpoints, policyNames(first)); got != snapshot {
		t.Errorf("first World changed after later Worlds were built:\nbefore %s\nafter  %s", snapshot, got)
	}
}

// TestWatcherCoalescesBurst: the first change of a burst is handed on at
// once (leading edge); the rest, arriving while it is handed on and before
// the debounce has been quiet, become one more World with the final state.
func TestWatcherCoalescesBurst(t *testing.T) {
	fc := testingclock.NewFakeClock(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	const n = 20
	var burst []string
	for i := range n {
		burst = append(burst, fmt.Sprintf("burst-%02d", i))
	}
	h := newHarness(t, Options{Debounce: 100 * time.Millisecond, MaxDelay: time.Second, clock: fc}, withPolicyOn(baseObjects("default"), burst...)...)
	h.start(3)
	h.world("first", func(*translator.World) bool { return true })
	h.events()
	burstStart := fc.Now()

	for i := range n {
		if _, err := h.client.CoreV1().Services("default").Create(context.Background(),
			httpService("default", fmt.Sprintf("burst-%02d", i)), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	serviceEvents := h.watcher.metrics.events.WithLabelValues(kindService)
	h.eventually("all service events seen", func() bool { return metricValue(t, serviceEvents) >= 2+n })
	// The fake clock has not moved, yet the burst's first change is handed
	// on: no waiting for a lone change.
	leading := h.world("leading edge of the burst", func(*translator.World) bool { return true })
	if len(leading.Services) < 3 {
		t.Fatalf("leading World has %d services, want at least the first of the burst", len(leading.Services))
	}
	if !leading.ObservedAt.Equal(burstStart) {
		t.Errorf("leading ObservedAt = %v, want the burst's first change at %v", leading.ObservedAt, burstStart)
	}
	worlds := 2.0
	if len(leading.Services) < 2+n {
		// The rest is pending until the debounce has been quiet.
		select {
		case w := <-h.worlds:
			t.Fatalf("a second burst World handed on before the debounce elapsed (%d services)", len(w.Services))
		default:
		}
		h.eventually("trailing World after the quiet time", func() bool {
			if fc.HasWaiters() {
				fc.Step(100 * time.Millisecond)
			}
			return len(h.worlds) > 0
		})
		trailing := h.world("trailing edge of the burst", func(*translator.World) bool { return true })
		if len(trailing.Services) != 2+n {
			t.Errorf("World after the burst has %d services, want %d", len(trailing.Services), 2+n)
		}
		if !trailing.ObservedAt.Equal(burstStart) {
			t.Errorf("trailing ObservedAt = %v, want the first change it folds in, at %v", trailing.ObservedAt, burstStart)
		}
		worlds++
	}
	time.Sleep(50 * time.Millisecond)
	select {
	case w := <-h.worlds:
		t.Errorf("another World followed the burst (%d services)", len(w.Services))
	default:
	}
	if got := metricValue(t, h.watcher.metrics.worlds); got != worlds {
		t.Errorf("shadowplane_worlds_total = %v, want %v", got, worlds)
	}
}

// TestWatcherIgnoresUnreferencedServices: a Service or EndpointSlice no
// policy names costs no World; once a policy names it, it counts.
func TestWatcherIgnoresUnreferencedServices(t *testing.T) {
	h := newHarness(t, Options{}, withPolicyOn(baseObjects("default"), "web-shadow")...)
	h.start(3)
	h.world("first", func(*translator.World) bool { return true })
	worlds := metricValue(t, h.watcher.metrics.worlds)

	ctx := context.Background()
	if _, err := h.client.CoreV1().Services("default").Create(ctx, httpService("default", "lonely"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.client.DiscoveryV1().EndpointSlices("default").Create(ctx, slice("default", "lonely-1", "lonely", discoveryv1.AddressTypeIPv4,
		[]discoveryv1.EndpointPort{epPort("http", 8080, corev1.ProtocolTCP)}, readyEndpoint("10.0.0.7")), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, kind := range []string{kindService, kindEndpointSlice} {
		ignored := h.watcher.metrics.ignored.WithLabelValues(kind)
		h.eventually(kind+" event ignored", func() bool { return metricValue(t, ignored) == 1 })
	}
	time.Sleep(50 * time.Millisecond)
	if got := metricValue(t, h.watcher.metrics.worlds); got != worlds {
		t.Errorf("shadowplane_worlds_total went from %v to %v for Services no policy names", worlds, got)
	}

	// A policy naming it makes its changes count again.
	w := h.setPolicies("default", "mirrors", map[string]string{"policies.yaml": policiesYAML(mirrorEntry("p1", "lonely", "1"))})
	if got := len(w.Service("default", "lonely").Endpoints); got != 1 {
		t.Fatalf("lonely has %d endpoints in the World, want 1", got)
	}
	w = h.update("lonely's slice changes", func(ctx context.Context) error {
		_, err := h.client.DiscoveryV1().EndpointSlices("default").Update(ctx, slice("default", "lonely-1", "lonely", discoveryv1.AddressTypeIPv4,
			[]discoveryv1.EndpointPort{epPort("http", 8080, corev1.ProtocolTCP)}, readyEndpoint("10.0.0.7"), readyEndpoint("10.0.0.8")), metav1.UpdateOptions{})
		return err
	})
	if got := len(w.Service("default", "lonely").Endpoints); got != 2 {
		t.Errorf("lonely has %d endpoints after its slice changed, want 2", got)
	}
}

// TestWatcherPolicyEditSharesServices: a World built for a policy edit
// shares the previous World's Services map (nothing was listed or
// converted again); one built after an EndpointSlice event does not, and
// holds the new endpoints.
func TestWatcherPolicyEditSharesServices(t *testing.T) {
	h := newHarness(t, Options{}, withPolicyOn(baseObjects("default"), "web-shadow")...)
	h.start(3)
	first := h.world("first", func(*translator.World) bool { return true })
	sameMap := func(a, b *translator.World) bool {
		return reflect.ValueOf(a.Services).UnsafePointer() == reflect.ValueOf(b.Services).UnsafePointer()
	}

	edited := h.setPolicies("default", "mirrors", map[string]string{"policies.yaml": policiesYAML(mirrorEntry("p1", "web-shadow", "7"))})
	if !sameMap(first, edited) {
		t.Error("a policy edit built a new Services map")
	}
	moved := h.update("web's slice changes", func(ctx context.Context) error {
		_, err := h.client.DiscoveryV1().EndpointSlices("default").Update(ctx, slice("default", "web-abc", "web", discoveryv1.AddressTypeIPv4,
			[]discoveryv1.EndpointPort{epPort("http", 8080, corev1.ProtocolTCP)}, readyEndpoint("10.0.0.9")), metav1.UpdateOptions{})
		return err
	})
	if sameMap(edited, moved) {
		t.Fatal("an EndpointSlice event reused the previous Services map")
	}
	if eps := moved.Service("default", "web").Endpoints; len(eps) != 1 || eps[0].Address != "10.0.0.9" {
		t.Errorf("web's endpoints after its slice changed: %+v", eps)
	}
	if got := edited.Service("default", "web").Endpoints; len(got) == 1 && got[0].Address == "10.0.0.9" {
		t.Error("the earlier World's Services changed")
	}
}

// TestWatcherIncrementalServicesMatchFullConversion: over random creates,
// updates and deletes of Services and EndpointSlices (slices moving between
// Services, slices without a Service, Services no policy names), every
// World's Services, converted again only where events said so, equal a
// conversion of every object the API holds.
func TestWatcherIncrementalServicesMatchFullConversion(t *testing.T) {
	h := newHarness(t, Options{}, withPolicyOn(baseObjects("default"), "web-shadow")...)
	h.start(3)
	h.world("first", func(*translator.World) bool { return true })
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(42, 1))
	serviceNames := []string{"web", "web-shadow", "lonely", "extra"}
	sliceNames := []string{"web-abc", "web-def", "shadow-1", "lonely-1", "stray-1"}
	full := func() map[string]*translator.Service {
		svcs, err := h.client.CoreV1().Services("default").List(ctx, metav1.ListOptions{})
		must(t, err)
		sls, err := h.client.DiscoveryV1().EndpointSlices("default").List(ctx, metav1.ListOptions{})
		must(t, err)
		var services []*corev1.Service
		for i := range svcs.Items {
			services = append(services, &svcs.Items[i])
		}
		var endpointSlices []*discoveryv1.EndpointSlice
		for i := range sls.Items {
			endpointSlices = append(endpointSlices, &sls.Items[i])
		}
		return buildServices(services, endpointSlices)
	}
	percent := 1
	for step := range 60 {
		switch rng.IntN(3) {
		case 0: // a Service appears or goes
			name := serviceNames[2+rng.IntN(2)]
			if _, err := h.client.CoreV1().Services("default").Get(ctx, name, metav1.GetOptions{}); err == nil {
				must(t, h.client.CoreV1().Services("default").Delete(ctx, name, metav1.DeleteOptions{}))
			} else {
				_, err := h.client.CoreV1().Services("default").Create(ctx, httpService("default", name), metav1.CreateOptions{})
				must(t, err)
			}
		default: // a slice is written (for some Service, or none) or deleted
			name := sliceNames[rng.IntN(len(sliceNames))]
			if rng.IntN(4) == 0 {
				err := h.client.DiscoveryV1().EndpointSlices("default").Delete(ctx, name, metav1.DeleteOptions{})
				if err != nil && !apierrors.IsNotFound(err) {
					t.Fatal(err)
				}
				break
			}
			sl := slice("default", name, serviceNames[rng.IntN(len(serviceNames))], discoveryv1.AddressTypeIPv4,
				[]discoveryv1.EndpointPort{epPort("http", 8080, corev1.ProtocolTCP)}, readyEndpoint(fmt.Sprintf("10.1.0.%d", 1+rng.IntN(200))))
			if rng.IntN(6) == 0 {
				delete(sl.Labels, discoveryv1.LabelServiceName)
			}
			_, err := h.client.DiscoveryV1().EndpointSlices("default").Update(ctx, sl, metav1.UpdateOptions{})
			if apierrors.IsNotFound(err) {
				_, err = h.client.DiscoveryV1().EndpointSlices("default").Create(ctx, sl, metav1.CreateOptions{})
			}
			must(t, err)
		}
		// A policy edit forces a World even when the change touched only
		// Services no policy names; the World follows every event of the
		// informers once they have caught up.
		want := full()
		for attempt := 0; ; attempt++ {
			// Quiet, so each edit is a World of its own (not coalesced).
			time.Sleep(30 * time.Millisecond)
			percent = percent%50 + 1
			w := h.setPolicies("default", "mirrors", map[string]string{"policies.yaml": policiesYAML(mirrorEntry("p00", "web-shadow", fmt.Sprint(percent)))})
			if reflect.DeepEqual(w.Services, want) {
				break
			}
			if attempt == 20 {
				t.Fatalf("step %d: the World's Services never matched a full conversion:\ngot  %s\nwant %s", step, describeServices(w.Services), describeServices(want))
			}
		}
	}
}

func describeServices(m map[string]*translator.Service) string {
	keys := slices.Sorted(maps.Keys(m))
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%+v ", k, m[k])
	}
	return b.String()
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
