package integration

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/shadowplane/shadowplane/integration/harness"
	"github.com/shadowplane/shadowplane/internal/copystats"
)

// copyStack is two real Envoy sidecars of one node group (same Service,
// same ports: the listeners share the port through SO_REUSEPORT, so the
// kernel spreads connections over both), a primary app, a shadow backend,
// and a secure control plane the sidecars report copy stats to every
// second.
type copyStack struct {
	*mirrorFixture
	sidecars   []*harness.Sidecar
	listenPort uint32
	dir        string
}

const copyFlushInterval = time.Second

func newCopyStack(t *testing.T) *copyStack {
	t.Helper()
	e := env(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	// A new connection per request, so the kernel spreads the requests
	// over both sidecars' listeners (a few kept-alive connections could
	// all land on one).
	f := &mirrorFixture{t: t, ctx: ctx, kube: e.kube, client: &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}}
	f.ns = newNamespace(t, ctx)
	listenPort := f.startBackends()
	var err error
	if f.cp, err = harness.StartControlPlane(ctx, f.kube, harness.ControlPlaneOptions{Namespaces: []string{f.ns}, Logger: testLogger(t)}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := f.cp.Stop(); err != nil {
			t.Errorf("control plane: %v", err)
		}
	})
	s := &copyStack{mirrorFixture: f, listenPort: listenPort, dir: t.TempDir()}
	for i := range 2 {
		s.sidecars = append(s.sidecars, s.startSidecar(i))
	}
	t.Cleanup(func() {
		for _, sc := range s.sidecars {
			if t.Failed() {
				stats, err := sc.Stats(context.Background(), `^(cluster\.copy|vhost)`)
				t.Logf("sidecar stats: %v %v", stats, err)
			}
			sc.Stop()
		}
	})
	return s
}

func (s *copyStack) startSidecar(i int) *harness.Sidecar {
	s.t.Helper()
	sc, err := s.cp.StartSidecar(s.ctx, s.kube, harness.SidecarOptions{
		Shadowplane: env(s.t).shadowplane, Envoy: env(s.t).envoy, Dir: s.dir,
		NodeID: fmt.Sprintf("entrance-%d-%s", i, s.ns), Namespace: s.ns, Service: "entrance",
		ListenPort: s.listenPort, AppPort: uint32(s.primary.Port),
		StatsFlushInterval: copyFlushInterval,
	})
	if err != nil {
		s.t.Fatal(err)
	}
	return sc
}

// waitApplied waits until every sidecar runs the policy at ppm with the
// shadow endpoint, and reports its copy stats.
func (s *copyStack) waitApplied(ppm uint32) {
	s.t.Helper()
	for _, sc := range s.sidecars {
		s.sidecar = sc
		s.waitRuntime(s.runtimeKey(), ppm)
		s.waitClusterHosts(s.shadowCluster(), 1)
	}
	err := harness.WaitUntil(s.ctx, 20*time.Second, func() (bool, error) {
		body, err := harness.GetJSON(s.ctx, s.cp.HTTPURL()+"/metrics")
		return err == nil && bytes.Contains(body, []byte(fmt.Sprintf("\nshadowplane_copy_stats_streams %d\n", len(s.sidecars)))), nil
	})
	if err != nil {
		s.t.Fatalf("the sidecars' stats streams never opened: %v", err)
	}
}

// metrics reads the standard mirror's copy metrics from the control plane.
func (s *copyStack) metrics() (copystats.Mirror, error) {
	body, err := harness.GetJSON(s.ctx, s.cp.HTTPURL()+"/metrics")
	if err != nil {
		return copystats.Mirror{}, err
	}
	mirrors, err := copystats.ReadMetrics(bytes.NewReader(body))
	if err != nil {
		return copystats.Mirror{}, err
	}
	for _, m := range mirrors {
		if m.Namespace == s.ns && m.Policy == "entrance-to-staging" && m.Mirror == "staging" {
			return m, nil
		}
	}
	return copystats.Mirror{}, fmt.Errorf("no copy metrics for %s/entrance-to-staging/staging", s.ns)
}

// waitMetrics polls the control plane's metrics until cond holds, checking
// on every reading that no counter went down.
func (s *copyStack) waitMetrics(what string, cond func(copystats.Mirror) bool) copystats.Mirror {
	s.t.Helper()
	var last copystats.Mirror
	var prev *copystats.Mirror
	err := harness.WaitUntil(s.ctx, 30*time.Second, func() (bool, error) {
		m, err := s.metrics()
		if err != nil {
			return false, nil
		}
		if prev != nil {
			if down := wentDown(*prev, m); down != "" {
				s.t.Errorf("%s went down: %v then %v", down, *prev, m)
			}
		}
		prev, last = &m, m
		return cond(m), nil
	})
	if err != nil {
		s.t.Fatalf("copy metrics never showed %s; last: %+v", what, last)
	}
	return last
}

// wentDown names a counter that is lower in now than in before.
func wentDown(before, now copystats.Mirror) string {
	d := now.Sub(before)
	if d.Matched < 0 {
		return "matched"
	}
	if d.Copies < 0 {
		return "copies"
	}
	for name, m := range map[string]map[string]float64{"responses": d.Responses, "dropped": d.Dropped, "failures": d.Failures} {
		for k, v := range m {
			if v < 0 {
				return name + "/" + k
			}
		}
	}
	return ""
}

// send sends n GETs through the sidecars and fails on any primary error.
func (s *copyStack) send(n int) {
	s.t.Helper()
	res := harness.SendN(s.ctx, s.client, n, 8, func(ctx context.Context, i int) *http.Request {
		return s.get(ctx, fmt.Sprintf("/entrance/%d", i))
	})
	if res.Errors() != 0 {
		s.t.Fatalf("%d of %d primary requests failed; first: %s", res.Errors(), n, res.FirstError())
	}
}

// get builds a GET that carries W3C trace context, its trace id derived
// from the path, so a copy's trace context can be checked against it.
func (s *copyStack) get(ctx context.Context, path string) *http.Request {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d%s", s.listenPort, path), nil)
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("traceparent", traceparentFor(path))
	return req
}

func traceparentFor(path string) string {
	return fmt.Sprintf("00-%032x-%016x-01", fnv32(path), fnv32("span"+path))
}

func fnv32(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h = (h ^ uint32(s[i])) * 16777619
	}
	return h
}

// binomialBound is the half-width of the two-sided interval of a binomial
// count of n trials at share p (normal approximation, z for
// harness.ShareAlpha).
func binomialBound(n int, p float64) float64 {
	return harness.ShareZ * math.Sqrt(float64(n)*p*(1-p))
}

// TestCopyMetrics: the control plane's /metrics sums the copy stats of two
// real sidecars of one group. The copies are within the binomial
// interval (harness.ShareAlpha) of the configured share, the 5xx counter is exactly what the
// shadow answered, counters stay monotonic across a sidecar restart, and a
// dead shadow shows as drops and failures while the primary is untouched.
func TestCopyMetrics(t *testing.T) {
	s := newCopyStack(t)
	const percent, share = "30", 0.3
	s.applyPolicy(policyYAML(percent, ""))
	s.waitApplied(300_000)
	s.shadow.FailEvery(10)

	// Share and 5xx.
	const n = 2000
	s.send(n)
	copied := s.shadow.WaitCount(s.ctx, 1, 2*time.Second)
	m := s.waitMetrics(fmt.Sprintf("%d matched and %d copies", n, copied), func(m copystats.Mirror) bool {
		return m.Matched == n && m.Copies == float64(copied)
	})
	// Envoy sends a histogram's totals as of the merge before the flush, so
	// the latency count trails the counters by the last interval's samples.
	if m.LatencyCount <= 0 || m.LatencyCount > m.Copies {
		t.Errorf("latency samples = %v, want some and at most the %v copies", m.LatencyCount, m.Copies)
	}
	if bound := binomialBound(n, share); math.Abs(m.Copies-n*share) > bound {
		t.Errorf("copies = %v, want %v ± %.0f (binomial %s)", m.Copies, n*share, bound, harness.ShareConfidence)
	}
	if observed := m.Copies / m.Matched; math.Abs(observed-m.Configured) > binomialBound(n, share)/n {
		t.Errorf("observed share %.4f, configured %.4f: outside the interval", observed, m.Configured)
	}
	if m.Configured != share {
		t.Errorf("configured ratio = %v, want %v", m.Configured, share)
	}
	if m.Sidecars != 2 || m.InSync != 2 {
		t.Errorf("%d sidecars reporting, %d in sync; want 2 and 2", m.Sidecars, m.InSync)
	}
	if got, want := m.Responses["5xx"], float64(s.shadow.Failed()); got != want || want == 0 {
		t.Errorf("5xx counter = %v, the shadow answered %v with 503", got, want)
	}
	if got, want := m.Responses["2xx"], float64(copied-s.shadow.Failed()); got != want {
		t.Errorf("2xx counter = %v, want %v", got, want)
	}
	for i, sc := range s.sidecars {
		if v, err := sc.Stat(s.ctx, "cluster."+s.shadowCluster()+".upstream_rq_total"); err != nil || v == 0 {
			t.Errorf("sidecar %d sent %d copies (%v): the kernel gave it no connections, so the sum covers one sidecar only", i, v, err)
		}
	}
	// Copies carry the primary's trace context unchanged, so the shadow's
	// spans join the primary's trace.
	for _, r := range s.shadow.Requests() {
		if got, want := r.Header.Get("traceparent"), traceparentFor(r.Path); got != want {
			t.Errorf("copy of %s carries traceparent %q, want the primary's %q", r.Path, got, want)
			break
		}
	}
	t.Logf("after %d requests at %s %%: %v copies (%d answered 503), p99 %.4fs", n, percent, m.Copies, s.shadow.Failed(),
		copystats.Quantile(0.99, m.LatencyBuckets, m.LatencyCount))

	// A sidecar restarts: its Envoy counters start again from zero, the
	// fleet's must not.
	before := m
	s.sidecars[0].Stop()
	s.sidecars[0] = s.startSidecar(0)
	s.waitApplied(300_000)
	s.send(n)
	copied = s.shadow.WaitCount(s.ctx, copied+1, 2*time.Second)
	m = s.waitMetrics("the requests after the restart", func(m copystats.Mirror) bool {
		return m.Matched == 2*n && m.Copies == float64(copied)
	})
	if down := wentDown(before, m); down != "" {
		t.Errorf("%s went down across the restart", down)
	}

	// The shadow goes away: copies are dropped or fail, the primary is
	// untouched (send fails the test on any primary error).
	before = m
	s.shadow.Stop()
	s.send(n)
	m = s.waitMetrics("the copies to the dead shadow", func(m copystats.Mirror) bool {
		d := m.Sub(before)
		return d.Matched == n && d.Copies > 0 && d.Errors() == d.Copies
	})
	d := m.Sub(before)
	if bound := binomialBound(n, share); math.Abs(d.Copies-n*share) > bound {
		t.Errorf("copies to the dead shadow = %v, want %v ± %.0f", d.Copies, n*share, bound)
	}
	for class, v := range d.Responses {
		if v != 0 {
			t.Errorf("%v %s responses from a dead shadow", v, class)
		}
	}
	t.Logf("dead shadow: %v copies, dropped %v, failed %v", d.Copies, d.Dropped, d.Failures)
}

// TestCopyMetricsBodyTooLarge: a copy whose body exceeds the guard's
// maxBodyBytes is dropped by the sidecar and counted as such; the others
// are sent and answered.
func TestCopyMetricsBodyTooLarge(t *testing.T) {
	s := newCopyStack(t)
	s.applyPolicy(policyYAML("100", "") + "  guard: {maxBodyBytes: 1Ki}\n")
	s.waitApplied(1_000_000)
	const each = 20
	for i := range 2 * each {
		size := 100
		if i%2 == 0 {
			size = 8 << 10
		}
		req, err := http.NewRequestWithContext(s.ctx, http.MethodPost, fmt.Sprintf("http://127.0.0.1:%d/upload/%d", s.listenPort, i), bytes.NewReader(make([]byte, size)))
		must(t, err)
		res := harness.Do(s.client, req)
		if res.Err != nil || res.Status != http.StatusOK {
			t.Fatalf("primary POST %d: %v %d", i, res.Err, res.Status)
		}
	}
	got := s.shadow.WaitCount(s.ctx, each, time.Second)
	stats := map[string]uint64{}
	for _, sc := range s.sidecars {
		st, _ := sc.Stats(s.ctx, `^cluster\.copy\|.*`)
		for k, v := range st {
			if v != 0 && !strings.Contains(k, "circuit_breakers") && !strings.Contains(k, "version") && !strings.Contains(k, "update_time") {
				stats[k] += v
			}
		}
	}
	t.Logf("non-zero copy cluster stats over both sidecars: %v", stats)
	m := s.waitMetrics("every copy accounted for", func(m copystats.Mirror) bool {
		return m.Matched == 2*each && m.Copies == 2*each
	})
	if got != each || m.Responses["2xx"] != each || m.Dropped[copystats.DropBodyTooLarge] != each {
		t.Errorf("shadow got %d copies, 2xx %v, dropped for size %v; want %d each", got, m.Responses["2xx"], m.Dropped[copystats.DropBodyTooLarge], each)
	}
}
