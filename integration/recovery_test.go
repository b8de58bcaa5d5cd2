package integration

import (
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shadowplane/shadowplane/integration/harness"
	"github.com/shadowplane/shadowplane/internal/testtools"
)

const (
	// apiServerOutage is how long the kube-apiserver stays stopped.
	apiServerOutage = 20 * time.Second
	// recoveryBound is how soon a change made after the API server's return
	// must be in force in Envoy.
	recoveryBound = 2 * time.Second
	recoveryRate  = 50 // primary requests per second throughout
)

// TestRecoveryAfterAPIServerRestart stops the real kube-apiserver under
// traffic and starts it again on the same port and etcd data. While it is
// away the control plane serves the last config and says so: the watch
// metric is 0 and /readyz stays 200 with a detail. A percent change made
// after its return is in force in Envoy within recoveryBound, the metric is
// back to 1, and no primary request fails throughout.
//
// The test has an API server of its own, so stopping it leaves the other
// tests' alone.
func TestRecoveryAfterAPIServerRestart(t *testing.T) {
	env(t)
	kube, err := harness.StartKube(testtools.BinDir(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kube.Stop() })
	f := newMirrorFixture(t, fixtureOptions{kube: kube})
	f.applyPolicy(policyYAML("50", ""))
	f.waitApplied(500_000)
	base := f.cp.HTTPURL()
	watchUp := func() []float64 {
		m := scrapeMetrics(t, base)
		var out []float64
		for _, kind := range []string{"service", "endpointslice", "configmap"} {
			v, ok := m[fmt.Sprintf(`shadowplane_kube_watch_up{kind=%q}`, kind)]
			if !ok {
				t.Fatalf("/metrics has no shadowplane_kube_watch_up{kind=%q}", kind)
			}
			out = append(out, v)
		}
		return out
	}
	all := func(vs []float64, want float64) bool {
		for _, v := range vs {
			if v != want {
				return false
			}
		}
		return true
	}
	if up := watchUp(); !all(up, 1) {
		t.Fatalf("shadowplane_kube_watch_up before the outage: %v, want all 1", up)
	}

	// Primary traffic and /readyz, watched throughout.
	traffic := f.startTraffic(recoveryRate, "entrance/recovery")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	var readyzProbes, readyzBad atomic.Int64
	var readyzDetail, readyzFirstBad atomic.Value // the last detail, the first failure
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			body, err := harness.GetJSON(f.ctx, base+"/readyz")
			readyzProbes.Add(1)
			switch {
			case err != nil:
				readyzBad.Add(1)
				readyzFirstBad.CompareAndSwap(nil, err.Error())
			case strings.Contains(string(body), "kubernetes watch down"):
				readyzDetail.Store(strings.TrimSpace(string(body)))
			}
		}
	}()
	stopLoad := sync.OnceFunc(func() { traffic.Stop(); close(stop); wg.Wait() })
	t.Cleanup(stopLoad)

	time.Sleep(2 * time.Second) // traffic before the outage
	stopped := time.Now()
	must(t, kube.StopAPIServer())
	t.Logf("kube-apiserver stopped")
	if err := harness.WaitUntil(f.ctx, apiServerOutage, func() (bool, error) { return all(watchUp(), 0), nil }); err != nil {
		t.Errorf("shadowplane_kube_watch_up during the outage: %v, want all 0", watchUp())
	}
	time.Sleep(time.Until(stopped.Add(apiServerOutage)))
	if up := watchUp(); !all(up, 0) {
		t.Errorf("shadowplane_kube_watch_up at the end of the outage: %v, want all 0", up)
	}
	must(t, kube.StartAPIServer(f.ctx, t.TempDir()))
	back := time.Now()
	t.Logf("kube-apiserver ready again after %s down", back.Sub(stopped).Round(time.Millisecond))

	// The change is made as soon as the API server takes writes again.
	must(t, harness.WaitUntil(f.ctx, 30*time.Second, func() (bool, error) {
		return kube.ApplyPolicyConfigMap(f.ctx, f.ns, "mirror-policies", "policies.yaml", policyYAML("20", "")) == nil, nil
	}))
	applied := time.Now()
	inForce := f.waitRuntime(f.runtimeKey(), 200_000)
	t.Logf("percent change in force in Envoy %s after it was applied, %s after the API server was ready again",
		inForce.Sub(applied).Round(time.Millisecond), inForce.Sub(back).Round(time.Millisecond))
	if d := inForce.Sub(applied); d > recoveryBound {
		t.Errorf("the percent change took %s to reach Envoy after the API server's return, want ≤ %s", d, recoveryBound)
	}
	if err := harness.WaitUntil(f.ctx, 10*time.Second, func() (bool, error) { return all(watchUp(), 1), nil }); err != nil {
		t.Errorf("shadowplane_kube_watch_up after the outage: %v, want all 1", watchUp())
	}

	time.Sleep(2 * time.Second) // traffic after the change
	stopLoad()
	if n := traffic.failed.Load(); n != 0 {
		t.Errorf("%d of %d primary requests failed; first: %v", n, traffic.sent.Load(), traffic.firstFailure.Load())
	}
	if f.primary.Count() != int(traffic.sent.Load()) {
		t.Errorf("primary got %d requests, want %d", f.primary.Count(), traffic.sent.Load())
	}
	if n := readyzBad.Load(); n != 0 {
		t.Errorf("/readyz failed %d of %d probes; first: %v", n, readyzProbes.Load(), readyzFirstBad.Load())
	}
	if d := readyzDetail.Load(); d == nil {
		t.Error("/readyz never said the kubernetes watch was down")
	} else {
		t.Logf("/readyz at the end of the outage: %q", d)
	}
	t.Logf("%d primary requests, %d /readyz probes", traffic.sent.Load(), readyzProbes.Load())
}
