package watcher

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/record"

	"github.com/shadowplane/shadowplane/nodemeta"
	"github.com/shadowplane/shadowplane/translator"
)

// Size of the large world: issue 11's 10,000 Services, 50,000 EndpointSlices
// and 500 policies, each policy copying from one Service to another.
const (
	worldServices       = 10_000
	worldSlicesPerSvc   = 5
	worldPolicies       = 500
	worldPoliciesPerKey = 100
)

func largeWorld() []runtime.Object {
	var objects []runtime.Object
	for i := range worldServices {
		name := fmt.Sprintf("svc-%d", i)
		objects = append(objects, &corev1.Service{
			ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, ResourceVersion: "1"},
			Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}}},
		})
		for j := range worldSlicesPerSvc {
			sl := slice("default", fmt.Sprintf("%s-%d", name, j), name, discoveryv1.AddressTypeIPv4,
				[]discoveryv1.EndpointPort{epPort("http", 8080, corev1.ProtocolTCP)}, readyEndpoint(fmt.Sprintf("10.%d.%d.%d", i/250, i%250, j+1)))
			sl.ResourceVersion = "1" // as the API server sets it; the fake does not
			objects = append(objects, sl)
		}
	}
	for cm := range worldPolicies / worldPoliciesPerKey {
		yaml := "policies:\n"
		for i := cm * worldPoliciesPerKey; i < (cm+1)*worldPoliciesPerKey; i++ {
			yaml += fmt.Sprintf("- name: p-%d\n  service: svc-%d\n  port: http\n  mirrors:\n  - service: svc-%d\n    port: http\n    percent: 10\n", i, i, worldServices/2+i)
		}
		objects = append(objects, policyConfigMap("default", fmt.Sprintf("policies-%d", cm), map[string]string{"policies.yaml": yaml}))
	}
	return objects
}

// runBenchWatcher runs a watcher over a fake client holding objects until
// the benchmark ends, and returns its first World once the fake's watches
// exist (it delivers events only then).
func runBenchWatcher(b *testing.B, objects []runtime.Object) (*fake.Clientset, *Watcher, chan *translator.World, *translator.World, context.Context) {
	client := fake.NewClientset(objects...)
	worlds := make(chan *translator.World, 16)
	w, err := New(Options{Client: client, Recorder: record.NewFakeRecorder(100_000), Logger: hclog.NewNullLogger(),
		OnWorld: func(world *translator.World) { worlds <- world }, noStoreWrites: true})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	go func() { _ = w.Run(ctx) }()
	first := <-worlds
	time.Sleep(time.Second)
	return client, w, worlds, first, ctx
}

// BenchmarkWorldEvent measures, in the world above, what one EndpointSlice
// event costs: building the World (the watcher lists its caches and reuses
// parsed policies) and translating the one node group it affects; and that
// an event of a Service no policy names costs no World at all. The API
// server is a fake here: this times the control plane's own work per event.
func BenchmarkWorldEvent(b *testing.B) {
	client, w, worlds, first, ctx := runBenchWatcher(b, largeWorld())
	if len(first.Services) != worldServices || len(first.Policies) != worldPolicies {
		b.Fatalf("world has %d services and %d policies", len(first.Services), len(first.Policies))
	}
	group := nodemeta.NodeGroup{Namespace: "default", Service: "svc-0", Ports: []nodemeta.PortPair{{Listen: 15001, App: 8080}}}
	updateSlice := func(svc, n int) {
		name := fmt.Sprintf("svc-%d", svc)
		sl := slice("default", name+"-0", name, discoveryv1.AddressTypeIPv4,
			[]discoveryv1.EndpointPort{epPort("http", 8080, corev1.ProtocolTCP)}, readyEndpoint(fmt.Sprintf("10.200.%d.%d", n/250, n%250+1)))
		sl.ResourceVersion = fmt.Sprint(n + 2)
		_, err := client.DiscoveryV1().EndpointSlices("default").Update(ctx, sl, metav1.UpdateOptions{})
		if err != nil {
			b.Fatal(err)
		}
	}

	var build, translate time.Duration
	b.ResetTimer()
	for i := range b.N {
		start := time.Now()
		updateSlice(worldServices/2, i) // svc-0's policy copies to it
		world := <-worlds
		build += time.Since(start)
		start = time.Now()
		translator.Translate(world, group)
		translate += time.Since(start)
	}
	b.StopTimer()
	b.ReportMetric(float64(build.Microseconds())/1000/float64(b.N), "ms-world/event")
	b.ReportMetric(float64(translate.Microseconds())/1000/float64(b.N), "ms-translate/event")

	// An unreferenced Service's slice: no World.
	updateSlice(worldServices-1, 0)
	select {
	case <-worlds:
		b.Error("an EndpointSlice of a Service no policy names built a World")
	case <-time.After(300 * time.Millisecond):
	}
	if got := metricValue(b, w.metrics.ignored.WithLabelValues(kindEndpointSlice)); got != 1 {
		b.Errorf("ignored EndpointSlice events = %v, want 1", got)
	}
}

// scaleWorldObjects is bench-scale's world: groups pairs of a Service and
// its shadow (one ready endpoint), one policy per pair copying 10 %, 100
// policies per ConfigMap.
func scaleWorldObjects(groups int, percent func(i int) int) []runtime.Object {
	var objects []runtime.Object
	for i := range groups {
		for _, name := range []string{fmt.Sprintf("app-%d", i), fmt.Sprintf("app-%d-shadow", i)} {
			objects = append(objects, &corev1.Service{
				ObjectMeta: metav1.ObjectMeta{Namespace: "default", Name: name, ResourceVersion: "1"},
				Spec:       corev1.ServiceSpec{Ports: []corev1.ServicePort{{Name: "http", Port: 80, TargetPort: intstr.FromInt32(8080), Protocol: corev1.ProtocolTCP}}},
			})
		}
		sl := slice("default", fmt.Sprintf("app-%d-shadow-0", i), fmt.Sprintf("app-%d-shadow", i), discoveryv1.AddressTypeIPv4,
			[]discoveryv1.EndpointPort{epPort("http", 8080, corev1.ProtocolTCP)}, readyEndpoint("10.0.0.1"))
		sl.ResourceVersion = "1"
		objects = append(objects, sl)
	}
	for cm := range groups / MaxPoliciesPerKey {
		objects = append(objects, scalePolicyConfigMap(cm, percent))
	}
	return objects
}

func scalePolicyConfigMap(cm int, percent func(i int) int) *corev1.ConfigMap {
	var b strings.Builder
	b.WriteString("policies:\n")
	for i := cm * MaxPoliciesPerKey; i < (cm+1)*MaxPoliciesPerKey; i++ {
		fmt.Fprintf(&b, "- name: p-%d\n  service: app-%d\n  port: http\n  mirrors:\n  - service: app-%d-shadow\n    port: http\n    name: shadow\n    percent: %d\n", i, i, i, percent(i))
	}
	return policyConfigMap("default", fmt.Sprintf("scale-%02d", cm), map[string]string{"policies.yaml": b.String()})
}

// BenchmarkPolicyEvent measures what one policy change costs the watcher in
// bench-scale's world of 1,000 policies in 10 ConfigMaps and 2,000
// Services: the ConfigMap holding it is rewritten with one share changed,
// until the World is handed on. The API server is a fake; this times the
// watcher's own work per policy event (the part of bench-scale's one-policy
// change that does not grow with the fleet).
func BenchmarkPolicyEvent(b *testing.B) {
	const groups = 1000
	ten := func(int) int { return 10 }
	client, _, worlds, first, ctx := runBenchWatcher(b, scaleWorldObjects(groups, ten))
	if len(first.Policies) != groups {
		b.Fatalf("world has %d policies", len(first.Policies))
	}
	b.ResetTimer()
	for i := range b.N {
		g := i % groups
		cm := scalePolicyConfigMap(g/MaxPoliciesPerKey, func(p int) int {
			if p == g {
				return 11 + i%50
			}
			return 10
		})
		cm.ResourceVersion = fmt.Sprint(i + 2)
		if _, err := client.CoreV1().ConfigMaps("default").Update(ctx, cm, metav1.UpdateOptions{}); err != nil {
			b.Fatal(err)
		}
		<-worlds
		// Let the publisher report, as between bench-scale's changes.
		time.Sleep(20 * time.Millisecond)
	}
}
