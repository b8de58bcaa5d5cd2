package integration

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/shadowplane/shadowplane/integration/harness"
	"github.com/shadowplane/shadowplane/statnames"
)

// propagationChanges is how many changes each case times at least; with
// -benchtime Nx for a larger N, it times N.
const propagationChanges = 100

// percentTarget is the p99 that a percent change must reach Envoy within.
const percentTarget = 100 * time.Millisecond

// The lone percent change's goal on the 2-core test machine (issue 12),
// reported beside the table, not enforced: on a shared machine a timing
// this tight depends on what else runs.
const (
	percentGoalP50 = 6 * time.Millisecond
	percentGoalP99 = 10 * time.Millisecond
)

// propagationCase is one kind of change whose propagation is timed.
type propagationCase struct {
	name  string // sub-benchmark name
	what  string // table label
	delta bool
	// change makes the i-th change and returns when its API write was
	// made; seen reports whether Envoy shows it; pushType is the xDS type
	// whose push counter moves when the control plane has set it.
	change   func(s *benchStack, i int) time.Time
	seen     func(s *benchStack, i int) (bool, error)
	pushType string
}

// propagationResult is one case's measurements.
type propagationResult struct {
	c     propagationCase
	envoy harness.LatencySummary // API write → Envoy's admin shows the change
	// parts break each change's time into consecutive steps (propagationParts).
	parts []harness.LatencySummary
	// bareWatch is API write → a bare client-go watch in the benchmark
	// sees it: the floor under the first part.
	bareWatch harness.LatencySummary
}

// propagationParts name the consecutive steps of a change; the control
// plane's side comes from its xds.Observer, in process.
var propagationParts = []string{
	"API write → watch event seen by the control plane",
	"watch event → snapshot set (debounce, World, translation)",
	"snapshot set → response sent to the sidecar",
	"response sent → Envoy's ACK received",
	"ACK received → in force in Envoy's admin",
}

// changeSteps splits one change into propagationParts.
func changeSteps(start time.Time, cp harness.PushSteps, seen time.Time) []time.Duration {
	return []time.Duration{
		cp.Event.Sub(start),
		cp.Snapshot.Sub(cp.Event),
		cp.Response.Sub(cp.Snapshot),
		cp.Ack.Sub(cp.Response),
		seen.Sub(cp.Ack),
	}
}

var propagationCases = []propagationCase{
	{name: "percent-sotw", what: "percent (RTDS)", change: changePercent, seen: percentSeen, pushType: "runtime"},
	{name: "percent-delta", what: "percent (RTDS)", delta: true, change: changePercent, seen: percentSeen, pushType: "runtime"},
	{name: "weight-sotw", what: "split weight (RTDS)", change: changeWeight, seen: weightSeen, pushType: "runtime"},
	{name: "weight-delta", what: "split weight (RTDS)", delta: true, change: changeWeight, seen: weightSeen, pushType: "runtime"},
	{name: "route-sotw", what: "route match (RDS)", change: changeRoute, seen: routeSeen, pushType: "route"},
	{name: "endpoint-sotw", what: "shadow endpoint (EDS)", change: changeEndpoint, seen: endpointSeen, pushType: "endpoint"},
}

// BenchmarkPropagation times how long a change written to the Kubernetes
// API takes to be in force in a real Envoy: from just before the Update
// call to Envoy's admin interface showing it (polled every millisecond),
// for a percent edit (RTDS), a routeTo weight edit (RTDS, see
// bench_weight_test.go), a route-structure edit (RDS) and an
// EndpointSlice edit (EDS). It prints a markdown table; `make
// bench-propagation` runs it.
func BenchmarkPropagation(b *testing.B) {
	results := map[string]propagationResult{}
	for _, c := range propagationCases {
		b.Run(c.name, func(b *testing.B) {
			r := measurePropagation(b, c, max(propagationChanges, b.N))
			b.ReportMetric(0, "ns/op") // one op is the whole run: meaningless
			b.ReportMetric(ms(r.envoy.P50), "p50-ms")
			b.ReportMetric(ms(r.envoy.P99), "p99-ms")
			results[c.name] = r
		})
	}
	if len(results) == 0 {
		return // filtered out, or every case failed
	}
	fmt.Print(propagationTable(b, results))
	if r, ok := results["percent-sotw"]; ok && r.envoy.P99 > percentTarget {
		b.Errorf("percent change p99 %s exceeds the %s target", r.envoy.P99, percentTarget)
	}
}

// measurePropagation makes n changes of one kind, one at a time, each
// after the previous one is in force in Envoy.
func measurePropagation(b *testing.B, c propagationCase, n int) propagationResult {
	s := newBenchStack(b, c.delta)
	var toEnvoy, toBareWatch []time.Duration
	parts := make([][]time.Duration, len(propagationParts))
	for i := 1; i <= n; i++ {
		start := c.change(s, i)
		// Look at Envoy when its ACK arrives, and every 50 ms in case none
		// does, never before: no polling interval is added to the time, and
		// Envoy's main thread (which also applies xDS) answers no probe
		// while the change is on its way.
		check, err := harness.PollOn(s.ctx, s.trace.Acked(), 50*time.Millisecond, 10*time.Second, func() (bool, error) {
			return c.seen(s, i)
		})
		if err != nil {
			b.Fatalf("%s change %d never reached Envoy: %v", c.name, i, err)
		}
		// Envoy applies a change before it ACKs, so the ACK may still be
		// on its way.
		var steps harness.PushSteps
		if _, err := harness.PollUntil(s.ctx, time.Millisecond, 5*time.Second, func() (bool, error) {
			var ok bool
			steps, ok = s.trace.After(c.pushType, start)
			return ok, nil
		}); err != nil {
			b.Fatalf("%s change %d: the control plane reported no %s snapshot, response and ACK: %v", c.name, i, c.pushType, err)
		}
		seenAt := inForceAt(check, steps.Ack)
		if at, ok := s.watchClock.After(start); ok {
			toBareWatch = append(toBareWatch, at.Sub(start))
		}
		toEnvoy = append(toEnvoy, seenAt.Sub(start))
		for j, d := range changeSteps(start, steps, seenAt) {
			parts[j] = append(parts[j], d)
		}
		// Let stragglers settle, with a varying gap so changes do not
		// phase-lock with anything periodic.
		time.Sleep(20*time.Millisecond + time.Duration(i%7)*time.Millisecond)
	}
	r := propagationResult{c: c, envoy: harness.SummarizeLatencies(toEnvoy), bareWatch: harness.SummarizeLatencies(toBareWatch)}
	for _, p := range parts {
		r.parts = append(r.parts, harness.SummarizeLatencies(p))
	}
	return r
}

// inForceAt is when a change was in force in Envoy, given the admin read
// that first showed it. Envoy applies an update before it ACKs it, so a
// read that started after the ACK arrived proves the change was in force
// by that read's start; an earlier read proves it only by its end.
func inForceAt(read harness.Check, ack time.Time) time.Time {
	if !read.Start.Before(ack) {
		return read.Start
	}
	return read.End
}

// benchPercent is the percent of the i-th percent change: 1..99, never the
// same twice in a row.
func benchPercent(i int) int { return i%99 + 1 }

func changePercent(s *benchStack, i int) time.Time {
	return s.writePolicy(policyYAML(fmt.Sprint(benchPercent(i)), ""))
}

func percentSeen(s *benchStack, i int) (bool, error) {
	v, ok, err := s.sidecar.RuntimeValue(s.ctx, s.runtimeKey())
	return ok && harness.RuntimeShareIs(v, uint32(benchPercent(i))*10_000), err
}

// benchPrefix is the match path prefix of the i-th route change.
func benchPrefix(i int) string { return fmt.Sprintf("/bench/%d/", i) }

func changeRoute(s *benchStack, i int) time.Time {
	return s.writePolicy(policyYAML("50", "pathPrefix: "+benchPrefix(i)+"\n"))
}

func routeSeen(s *benchStack, i int) (bool, error) {
	dump, err := s.sidecar.ConfigDump(s.ctx, "dynamic_route_configs")
	return err == nil && strings.Contains(string(dump), `"`+benchPrefix(i)+`"`), err
}

// benchEndpointPort is the shadow endpoint's port after the i-th endpoint
// change; nothing listens there, and no copy is sent.
func benchEndpointPort(i int) int32 { return int32(40000 + i%10000) }

func changeEndpoint(s *benchStack, i int) time.Time {
	start, err := s.kube.UpdateEndpointSliceTimed(s.ctx, s.ns, "entrance-shadow-1", "http", benchEndpointPort(i),
		harness.SliceEndpoint{Address: s.endpointHost, Ready: true})
	if err != nil {
		s.tb.Fatal(err)
	}
	return start
}

func endpointSeen(s *benchStack, i int) (bool, error) {
	hosts, err := s.sidecar.ClusterHosts(s.ctx, s.shadowCluster())
	want := fmt.Sprintf("%s:%d", s.endpointHost, benchEndpointPort(i))
	return len(hosts) == 1 && hosts[0] == want, err
}

// benchStack is the mirror fixture's setup for benchmarks: Services
// entrance (sidecar-fronted) and entrance-shadow with its EndpointSlice, a
// policy at 50 %, the control plane and a real Envoy. No traffic is sent.
type benchStack struct {
	tb           testing.TB
	ctx          context.Context
	kube         *harness.Kube
	ns           string
	endpointHost string
	cp           *harness.ControlPlane
	trace        *harness.PushTrace
	sidecar      *harness.Sidecar
	watchClock   *harness.WatchClock
}

func newBenchStack(tb testing.TB, delta bool) *benchStack {
	tb.Helper()
	e := env(tb)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	tb.Cleanup(cancel)
	s := &benchStack{tb: tb, ctx: ctx, kube: e.kube, endpointHost: e.endpointHost, trace: &harness.PushTrace{}}
	s.ns = newNamespace(tb, ctx)

	primary, err := harness.StartBackend("primary", "127.0.0.1")
	must(tb, err)
	tb.Cleanup(primary.Stop)
	shadowPort, err := harness.ClosedPort(e.endpointHost)
	must(tb, err)
	listenPort, err := harness.FreePort()
	must(tb, err)
	must(tb, e.kube.ApplyService(ctx, s.ns, "entrance", harness.ServicePort{Name: "http", Port: 80, TargetPort: int32(listenPort)}))
	must(tb, e.kube.ApplyService(ctx, s.ns, "entrance-shadow", harness.ServicePort{Name: "http", Port: 8080, TargetPort: shadowPort}))
	must(tb, e.kube.ApplyEndpointSlice(ctx, s.ns, "entrance-shadow", "http", shadowPort, harness.SliceEndpoint{Address: e.endpointHost, Ready: true}))
	must(tb, e.kube.ApplyPolicyConfigMap(ctx, s.ns, "mirror-policies", "policies.yaml", policyYAML("50", "")))
	s.watchClock, err = e.kube.StartWatchClock(ctx, s.ns)
	must(tb, err)
	tb.Cleanup(s.watchClock.Stop)

	// Warnings only: the control plane logs every snapshot at info, and a
	// benchmark's log is always printed.
	logger := hclog.New(&hclog.LoggerOptions{Name: "shadowplane", Level: hclog.Warn, Output: testWriter{tb}})
	if s.cp, err = harness.StartControlPlane(ctx, e.kube, harness.ControlPlaneOptions{Namespaces: []string{s.ns}, Logger: logger, Observer: s.trace.Observer()}); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := s.cp.Stop(); err != nil {
			tb.Errorf("control plane: %v", err)
		}
	})
	s.sidecar, err = s.cp.StartSidecar(ctx, e.kube, harness.SidecarOptions{
		Shadowplane: e.shadowplane, Envoy: e.envoy, Dir: tb.TempDir(),
		NodeID: "entrance-" + s.ns, Namespace: s.ns, Service: "entrance",
		ListenPort: listenPort, AppPort: uint32(primary.Port),
		Delta: delta,
		// As the injected sidecar runs: Envoy's debug lines cost its main
		// thread time before the ACK.
		Logs: harness.ProductionLogs,
	})
	must(tb, err)
	tb.Cleanup(s.sidecar.Stop)

	_, err = harness.PollUntil(ctx, 10*time.Millisecond, 20*time.Second, func() (bool, error) {
		v, ok, err := s.sidecar.RuntimeValue(ctx, s.runtimeKey())
		return ok && harness.RuntimeShareIs(v, 500_000), err
	})
	must(tb, err)
	return s
}

func (s *benchStack) runtimeKey() string {
	return "shadowplane." + s.ns + ".entrance-to-staging.staging"
}
func (s *benchStack) shadowCluster() string {
	return statnames.ShadowCluster(statnames.Mirror{Namespace: s.ns, Policy: "entrance-to-staging", Mirror: "staging"})
}

// writePolicy replaces the policy ConfigMap's YAML and returns when the
// API write was made.
func (s *benchStack) writePolicy(yaml string) time.Time {
	start, err := s.kube.UpdatePolicyConfigMapTimed(s.ctx, s.ns, "mirror-policies", "policies.yaml", yaml)
	if err != nil {
		s.tb.Fatal(err)
	}
	return start
}

// propagationTable renders the results as markdown, with the machine they
// were measured on.
func propagationTable(b *testing.B, results map[string]propagationResult) string {
	var t strings.Builder
	fmt.Fprintf(&t, "\n### Propagation: API write → in force in Envoy (ms)\n\n")
	fmt.Fprintf(&t, "| change | xDS | changes | p50 | p90 | p99 | max |\n")
	fmt.Fprintf(&t, "|---|---|---:|---:|---:|---:|---:|\n")
	for _, c := range propagationCases {
		r, ok := results[c.name]
		if !ok {
			continue
		}
		fmt.Fprintf(&t, "| %s | %s | %d | %s | %s | %s | %s |\n", c.what, xdsMode(c), r.envoy.N,
			harness.Millis(r.envoy.P50), harness.Millis(r.envoy.P90), harness.Millis(r.envoy.P99), harness.Millis(r.envoy.Max))
	}
	for _, c := range propagationCases {
		r, ok := results[c.name]
		if !ok {
			continue
		}
		fmt.Fprintf(&t, "\n#### Where the time goes: %s, %s (ms)\n\n", c.what, xdsMode(c))
		fmt.Fprintf(&t, "| part | p50 | p90 | p99 |\n|---|---:|---:|---:|\n")
		for i, name := range propagationParts {
			p := r.parts[i]
			fmt.Fprintf(&t, "| %s | %s | %s | %s |\n", name, harness.Millis(p.P50), harness.Millis(p.P90), harness.Millis(p.P99))
		}
		fmt.Fprintf(&t, "| **total: API write → in force** | %s | %s | %s |\n",
			harness.Millis(r.envoy.P50), harness.Millis(r.envoy.P90), harness.Millis(r.envoy.P99))
		fmt.Fprintf(&t, "| *floor of the first part: API write → a bare client-go watch in the benchmark sees it* | %s | %s | %s |\n",
			harness.Millis(r.bareWatch.P50), harness.Millis(r.bareWatch.P90), harness.Millis(r.bareWatch.P99))
	}
	fmt.Fprintf(&t, "\nEach part's percentiles are its own, so they need not add up to the total's.\n")
	fmt.Fprintf(&t, "The control plane's times come from its xds.Observer, in process. Envoy's admin is read when its ACK arrives\n")
	fmt.Fprintf(&t, "(and every 50 ms besides, never before); Envoy applies a change before it ACKs, so a read started after the ACK that shows\n")
	fmt.Fprintf(&t, "the change dates it to the read's start, and the last part is only the probe's own wake-up.\n")
	fmt.Fprintf(&t, "Target: percent change p99 ≤ %s.\n", percentTarget)
	if r, ok := results["percent-sotw"]; ok {
		verdict := "met"
		if r.envoy.P50 > percentGoalP50 || r.envoy.P99 > percentGoalP99 {
			verdict = "NOT met"
		}
		fmt.Fprintf(&t, "Goal for a lone percent change (SotW), p50 ≤ %s and p99 ≤ %s: %s (p50 %s, p99 %s ms).\n",
			percentGoalP50, percentGoalP99, verdict, harness.Millis(r.envoy.P50), harness.Millis(r.envoy.P99))
	}
	fmt.Fprintf(&t, "\n")
	fmt.Fprintf(&t, "Machine: %s\n", harness.MachineDescription(env(b).envoy))
	return t.String()
}

func xdsMode(c propagationCase) string {
	if c.delta {
		return "delta"
	}
	return "SotW"
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
