package integration

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/shadowplane/shadowplane/internal/controlplane"
)

// unlabelledConfigMaps is how many ConfigMaps that are not policies the
// memory benchmark puts in the cluster, spread over configMapNamespaces.
const (
	unlabelledConfigMaps = 5000
	configMapNamespaces  = 10
)

// BenchmarkConfigMapMemory measures what the server-side label selector of
// the policy ConfigMap informer saves. With 5,000 ConfigMaps that are not
// policies (1–2 KiB of data each, in 10 namespaces) and one policy in the
// cluster, it starts an in-process control plane in cluster mode twice:
// as shipped, and with the label selector stripped from its ConfigMap
// requests, so that the API server sends every ConfigMap and only the
// watcher's own check filters them (what an informer without a selector
// holds). For each it reports the heap the control plane added (HeapInuse
// after GC, minus the same before it started) and the bytes the API server
// sent it. Run it alone, in the network namespace of the integration tests:
//
//	go test -run '^$' -bench ConfigMapMemory -benchtime 1x ./integration/
func BenchmarkConfigMapMemory(b *testing.B) {
	e := env(b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	createUnlabelledConfigMaps(b, ctx, e.kube.Client)
	policyNS := newNamespace(b, ctx)
	must(b, e.kube.ApplyPolicyConfigMap(ctx, policyNS, "mirror-policies", "policies.yaml", `
policies:
- name: to-staging
  service: entrance
  port: http
  mirrors:
  - {service: entrance, namespace: staging, port: 8080, percent: 10}
`))

	type result struct {
		name         string
		heap, apiRcv uint64
	}
	var results []result
	for range b.N {
		for _, withSelector := range []bool{true, false} {
			heap, received := controlPlaneHeap(b, ctx, e.kube.Config, withSelector)
			name := "with the label selector (as shipped)"
			if !withSelector {
				name = "without it (client-side filter only)"
			}
			results = append(results, result{name, heap, received})
		}
	}
	b.ReportMetric(0, "ns/op") // one op is the whole run: meaningless
	b.ReportMetric(mib(results[0].heap), "MiB-heap-selector")
	b.ReportMetric(mib(results[1].heap), "MiB-heap-no-selector")
	fmt.Printf("\n%d unlabelled ConfigMaps of 1-2 KiB, one policy ConfigMap, cluster mode\n\n", unlabelledConfigMaps)
	fmt.Println("| ConfigMap informer | control plane heap (HeapInuse after GC) | received from the API server |")
	fmt.Println("|---|---:|---:|")
	for _, r := range results {
		fmt.Printf("| %s | %.2f MiB | %.0f KiB |\n", r.name, mib(r.heap), float64(r.apiRcv)/1024)
	}
}

func mib(n uint64) float64 { return float64(n) / (1 << 20) }

// createUnlabelledConfigMaps creates the ConfigMaps that are not policies,
// with data shaped like an application's: a properties file, a YAML or JSON
// config (a quarter have a .yaml key, which the watcher's transform keeps
// when it sees them) and an nginx config, 1–2 KiB in all.
func createUnlabelledConfigMaps(b *testing.B, ctx context.Context, c kubernetes.Interface) {
	b.Helper()
	namespaces := make([]string, configMapNamespaces)
	for i := range namespaces {
		namespaces[i] = newNamespace(b, ctx)
	}
	jobs := make(chan int)
	var wg sync.WaitGroup
	var failed atomic.Value
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				cm := appConfigMap(i)
				cm.Namespace = namespaces[i%len(namespaces)]
				if _, err := c.CoreV1().ConfigMaps(cm.Namespace).Create(ctx, cm, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
					failed.Store(err)
				}
			}
		}()
	}
	start := time.Now()
	var dataBytes int
	for i := range unlabelledConfigMaps {
		for _, v := range appConfigMap(i).Data {
			dataBytes += len(v)
		}
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatalf("create ConfigMaps: %v", err)
	}
	b.Logf("created %d ConfigMaps (%d bytes of data on average) in %s", unlabelledConfigMaps, dataBytes/unlabelledConfigMaps, time.Since(start).Round(time.Millisecond))
}

func appConfigMap(i int) *corev1.ConfigMap {
	app := fmt.Sprintf("app-%04d", i)
	var props strings.Builder
	for j := range 12 + i%24 { // 12-35 lines of about 30 bytes
		fmt.Fprintf(&props, "%s.feature.flag%d=enabled\n", app, j)
	}
	config := map[bool]string{true: "config.yaml", false: "config.json"}[i%4 == 0]
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{
			Name:   app + "-config",
			Labels: map[string]string{"app.kubernetes.io/name": app, "app.kubernetes.io/part-of": "shop"},
		},
		Data: map[string]string{
			"application.properties": props.String(),
			config:                   fmt.Sprintf("server:\n  port: 8080\n  name: %s\ndatabase:\n  host: db.%s.svc\n  pool: 10\n", app, app),
			"nginx.conf":             fmt.Sprintf("server {\n  listen 80;\n  location / { proxy_pass http://127.0.0.1:8080; }\n  # %s\n}\n", strings.Repeat("x", 400+i%400)),
		},
	}
}

// controlPlaneHeap runs a control plane until ready and returns the heap it
// added and the response bytes it read from the API server.
func controlPlaneHeap(b *testing.B, ctx context.Context, base *rest.Config, withSelector bool) (heap, received uint64) {
	b.Helper()
	var counted atomic.Uint64
	cfg := rest.CopyConfig(base)
	cfg.Wrap(func(next http.RoundTripper) http.RoundTripper {
		return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
			if !withSelector && strings.HasSuffix(req.URL.Path, "/configmaps") {
				req = req.Clone(req.Context())
				q := req.URL.Query()
				q.Del("labelSelector")
				req.URL.RawQuery = q.Encode()
			}
			resp, err := next.RoundTrip(req)
			if err == nil {
				resp.Body = &countingBody{ReadCloser: resp.Body, n: &counted}
			}
			return resp, err
		})
	})
	client, err := kubernetes.NewForConfig(cfg)
	must(b, err)

	before := heapInuse()
	cp, err := controlplane.New(controlplane.Config{
		Client:      client,
		XDSAddress:  "127.0.0.1:0",
		HTTPAddress: "127.0.0.1:0",
		Logger:      testLogger(b),
	})
	must(b, err)
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- cp.Run(runCtx) }()
	for !cp.Ready() {
		select {
		case err := <-done:
			b.Fatalf("control plane stopped: %v", err)
		case <-ctx.Done():
			b.Fatal(ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
	// The initial listing is in; let the watches settle before measuring.
	time.Sleep(time.Second)
	after := heapInuse()
	stop()
	must(b, <-done)
	// Keep the control plane reachable until measured.
	runtime.KeepAlive(cp)
	if after < before {
		return 0, counted.Load()
	}
	return after - before, counted.Load()
}

// heapInuse is the heap in use after a full collection.
func heapInuse() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Uint64
}

func (c *countingBody) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	c.n.Add(uint64(n))
	return n, err
}
