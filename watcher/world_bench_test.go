package watcher

import (
	"context"
	"fmt"
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

// BenchmarkWorldEvent measures, in the world above, what one EndpointSlice
// event costs: building the World (the watcher lists its caches and reuses
// parsed policies) and translating the one node group it affects; and that
// an event of a Service no policy names costs no World at all. The API
// server is a fake here: this times the control plane's own work per event.
func BenchmarkWorldEvent(b *testing.B) {
	client := fake.NewClientset(largeWorld()...)
	worlds := make(chan *translator.World, 16)
	w, err := New(Options{Client: client, Recorder: record.NewFakeRecorder(10 * worldPolicies), Logger: hclog.NewNullLogger(),
		OnWorld: func(world *translator.World) { worlds <- world }, noStoreWrites: true})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = w.Run(ctx) }()
	first := <-worlds
	time.Sleep(time.Second) // the fake delivers events only once watches exist
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
