package peers

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/go-logr/logr"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	ctrllog "sigs.k8s.io/controller-runtime/pkg/log"

	"github.com/shadowplane/shadowplane/integration/harness"
	"github.com/shadowplane/shadowplane/internal/testtools"
)

// peerChanges is how many percent changes each control plane is timed on
// (more with -benchtime Nx for N > peerChanges).
const peerChanges = 100

// peerNamespace holds the one workload every control plane configures.
const peerNamespace = "peers"

// istioVersion is the proxy version the Istio-style sidecar announces: the
// minor release of the pinned istio.io/istio module (its VERSION file).
const istioVersion = "1.31.0"

// istioShadowCluster is Istio's name for the mirror target's cluster.
const istioShadowCluster = "outbound|8080||entrance-shadow." + peerNamespace + ".svc.cluster.local"

// peerRuns are the control planes, in the order they run. Each runs alone,
// with its own sidecar, against the same API server and objects.
var peerRuns = []peerRun{
	{name: "istiod (defaults)", istiodEnv: []string{}},
	{name: "istiod (PILOT_DEBOUNCE_AFTER=10ms)", istiodEnv: []string{"PILOT_DEBOUNCE_AFTER=10ms"}},
	{name: "shadowplane (plain-text xDS, like istiod's 15010)"},
	{name: "shadowplane (TLS + verified identity, as deployed)", shadowplaneTLS: true},
}

type peerRun struct {
	name string
	// istiodEnv is non-nil for an istiod run: what it adds to istiod's
	// environment.
	istiodEnv      []string
	shadowplaneTLS bool
}

func (p peerRun) istiod() bool { return p.istiodEnv != nil }

// peerResult is one control plane's measurements.
type peerResult struct {
	run            peerRun
	latency        harness.LatencySummary // API write → in force in Envoy
	bytesPerChange float64                // received by Envoy on its xDS connection
	cpuPerChange   time.Duration          // control plane user+system CPU
	idleCPU        float64                // control plane CPU ms per second before the changes
	rss            int64                  // control plane resident memory after the changes
	configDump     int                    // bytes of Envoy's /config_dump after the changes
	// updates is, per Envoy subscription stat prefix (e.g.
	// listener_manager.lds), how many updates Envoy accepted per change.
	updates map[string]float64
}

// BenchmarkPeers makes the same percent changes (1..99 %, one at a time)
// to a mirror of Service entrance with istiod (through a VirtualService's
// mirrors[].percentage) and with shadowplane (through its policy
// ConfigMap), each serving one real Envoy, against one kube-apiserver, and
// prints a side-by-side table with ratios against istiod. `make
// bench-peers` runs it; without istiod it fails, it never skips.
func BenchmarkPeers(b *testing.B) {
	istiodBin, crds, err := LocateIstiod(testtools.BinDir(), os.Getenv)
	if err != nil {
		b.Fatal(err)
	}
	for _, tool := range []string{"envoy", "kube-apiserver", "etcd"} {
		if testtools.Path(tool) == "" {
			b.Fatalf("%s not found in %s: run `make tools`", tool, testtools.BinDir())
		}
	}
	ctrllog.SetLogger(logr.Discard()) // envtest's start-up chatter
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	f := newPeerFixture(b, ctx, istiodBin, crds)
	n := max(peerChanges, b.N)
	var results []peerResult
	for _, run := range peerRuns {
		b.Run(run.name, func(b *testing.B) {
			r := measurePeer(b, f, run, n)
			b.ReportMetric(0, "ns/op") // one op is the whole run: meaningless
			b.ReportMetric(ms(r.latency.P50), "p50-ms")
			b.ReportMetric(ms(r.latency.P99), "p99-ms")
			results = append(results, r)
		})
	}
	if len(results) != len(peerRuns) {
		b.Fatalf("only %d of %d control planes measured: no table", len(results), len(peerRuns))
	}
	fmt.Print(peersTable(f, results))
}

// peerFixture is what every run shares: the API server with Istio's CRDs,
// Services entrance (the sidecar's) and entrance-shadow (the copies'
// target) with EndpointSlices, the policy ConfigMap and the VirtualService.
type peerFixture struct {
	tb                         testing.TB
	ctx                        context.Context
	kube                       *harness.Kube
	dynamic                    dynamic.Interface
	istiod, envoy, shadowplane string
	endpointHost               string
	listenPort                 uint32
}

var virtualServices = schema.GroupVersionResource{Group: "networking.istio.io", Version: "v1", Resource: "virtualservices"}

func newPeerFixture(tb testing.TB, ctx context.Context, istiod, crds string) *peerFixture {
	tb.Helper()
	dir := tb.TempDir()
	f := &peerFixture{tb: tb, ctx: ctx, istiod: istiod, envoy: testtools.Path("envoy")}
	var err error
	if f.endpointHost, err = harness.EndpointHost(); err != nil {
		tb.Fatal(err)
	}
	if f.shadowplane, err = harness.BuildShadowplane(testtools.RepoRoot(), dir); err != nil {
		tb.Fatal(err)
	}
	if f.kube, err = harness.StartKube(testtools.BinDir(), dir); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = f.kube.Stop() })
	if f.dynamic, err = dynamic.NewForConfig(f.kube.Config); err != nil {
		tb.Fatal(err)
	}
	must(tb, InstallIstioCRDs(f.kube.Config, crds))
	for _, ns := range []string{IstioNamespace, peerNamespace} {
		must(tb, f.kube.EnsureNamespace(ctx, ns))
	}
	if f.listenPort, err = harness.FreePort(); err != nil {
		tb.Fatal(err)
	}
	shadowPort, err := harness.ClosedPort(f.endpointHost)
	must(tb, err)
	// entrance's targetPort is the shadowplane sidecar's listener; Istio
	// only needs the Service to exist.
	must(tb, f.kube.ApplyService(ctx, peerNamespace, "entrance", harness.ServicePort{Name: "http", Port: 80, TargetPort: int32(f.listenPort)}))
	must(tb, f.kube.ApplyService(ctx, peerNamespace, "entrance-shadow", harness.ServicePort{Name: "http", Port: 8080, TargetPort: shadowPort}))
	must(tb, f.kube.ApplyEndpointSlice(ctx, peerNamespace, "entrance-shadow", "http", shadowPort, harness.SliceEndpoint{Address: f.endpointHost, Ready: true}))
	must(tb, f.kube.ApplyPolicyConfigMap(ctx, peerNamespace, "mirror-policies", "policies.yaml", peerPolicyYAML(50)))
	vs := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "networking.istio.io/v1",
		"kind":       "VirtualService",
		"metadata":   map[string]any{"name": "entrance", "namespace": peerNamespace},
		"spec": map[string]any{
			"hosts": []any{"entrance"},
			"http": []any{map[string]any{
				"route": []any{map[string]any{"destination": map[string]any{"host": "entrance", "port": map[string]any{"number": int64(80)}}}},
				"mirrors": []any{map[string]any{
					"destination": map[string]any{"host": "entrance-shadow", "port": map[string]any{"number": int64(8080)}},
					"percentage":  map[string]any{"value": float64(50)},
				}},
			}},
		},
	}}
	if _, err := f.dynamic.Resource(virtualServices).Namespace(peerNamespace).Create(ctx, vs, metav1.CreateOptions{}); err != nil {
		tb.Fatalf("create VirtualService: %v", err)
	}
	return f
}

// peerPolicyYAML is shadowplane's policy: copy percent of entrance's
// requests to entrance-shadow.
func peerPolicyYAML(percent int) string {
	return fmt.Sprintf("policies:\n- name: entrance-to-staging\n  service: entrance\n  port: http\n"+
		"  mirrors:\n  - service: entrance-shadow\n    port: http\n    name: staging\n    percent: %d\n", percent)
}

const peerRuntimeKey = "shadowplane." + peerNamespace + ".entrance-to-staging.staging"

// writeVirtualServicePercent sets the mirror percentage of the
// VirtualService and returns when the Update call was made (after the read,
// as harness.UpdatePolicyConfigMapTimed does for shadowplane).
func (f *peerFixture) writeVirtualServicePercent(percent int) (time.Time, error) {
	api := f.dynamic.Resource(virtualServices).Namespace(peerNamespace)
	vs, err := api.Get(f.ctx, "entrance", metav1.GetOptions{})
	if err != nil {
		return time.Time{}, fmt.Errorf("get VirtualService: %w", err)
	}
	http, _, _ := unstructured.NestedSlice(vs.Object, "spec", "http")
	mirrors, _, _ := unstructured.NestedSlice(http[0].(map[string]any), "mirrors")
	mirrors[0].(map[string]any)["percentage"] = map[string]any{"value": float64(percent)}
	if err := unstructured.SetNestedSlice(http[0].(map[string]any), mirrors, "mirrors"); err != nil {
		return time.Time{}, err
	}
	if err := unstructured.SetNestedSlice(vs.Object, http, "spec", "http"); err != nil {
		return time.Time{}, err
	}
	start := time.Now()
	if _, err := api.Update(f.ctx, vs, metav1.UpdateOptions{}); err != nil {
		return start, fmt.Errorf("update VirtualService: %w", err)
	}
	return start, nil
}

func (f *peerFixture) writePolicyPercent(percent int) (time.Time, error) {
	return f.kube.UpdatePolicyConfigMapTimed(f.ctx, peerNamespace, "mirror-policies", "policies.yaml", peerPolicyYAML(percent))
}

// runningPeer is one control plane with its sidecar.
type runningPeer struct {
	cp         *harness.Process
	envoy      *harness.Envoy
	adsCluster string
	write      func(percent int) (time.Time, error)
	// share is the mirror share (ppm) in force in Envoy: Istio's in the
	// route's mirror policy, shadowplane's in its RTDS runtime key.
	share func() (uint32, bool, error)
}

// peerPercent is the percent of the i-th change: 1..99, never the same
// twice in a row (the first is 2, after the starting 50).
func peerPercent(i int) int { return i%99 + 1 }

// measurePeer starts one control plane and its sidecar, makes n changes
// one at a time, each after the previous one is in force, and stops both.
func measurePeer(b *testing.B, f *peerFixture, run peerRun, n int) peerResult {
	// Start from 50 % everywhere, so each run sees the same history.
	_, err := f.writeVirtualServicePercent(50)
	must(b, err)
	_, err = f.writePolicyPercent(50)
	must(b, err)
	var p *runningPeer
	if run.istiod() {
		p = startIstiodPeer(b, f, run)
	} else {
		p = startShadowplanePeer(b, f, run)
	}
	waitShare(b, f.ctx, p, 500_000, 60*time.Second)
	// Let start-up work (first pushes, istiod's CA and status writes) end
	// before the clock starts, and measure the idle CPU meanwhile.
	time.Sleep(time.Second)
	idle0, err := ReadProcessUsage(p.cp.PID())
	must(b, err)
	const idleWindow = 2 * time.Second
	time.Sleep(idleWindow)

	rxStat := "cluster." + p.adsCluster + ".upstream_cx_rx_bytes_total"
	rx0, err := p.envoy.Stat(f.ctx, rxStat)
	must(b, err)
	updates0, err := p.envoy.Stats(f.ctx, updateStat)
	must(b, err)
	use0, err := ReadProcessUsage(p.cp.PID())
	must(b, err)
	var latencies []time.Duration
	for i := 1; i <= n; i++ {
		percent := peerPercent(i)
		start, err := p.write(percent)
		must(b, err)
		seenAt, err := harness.PollUntil(f.ctx, time.Millisecond, 10*time.Second, func() (bool, error) {
			share, ok, err := p.share()
			return ok && share == uint32(percent)*10_000, err
		})
		if err != nil {
			b.Fatalf("%s: change %d (%d %%) never reached Envoy: %v", run.name, i, percent, err)
		}
		latencies = append(latencies, seenAt.Sub(start))
		// A varying gap, so changes do not phase-lock with anything periodic.
		time.Sleep(20*time.Millisecond + time.Duration(i%7)*time.Millisecond)
	}
	use1, err := ReadProcessUsage(p.cp.PID())
	must(b, err)
	rx1, err := p.envoy.Stat(f.ctx, rxStat)
	must(b, err)
	updates1, err := p.envoy.Stats(f.ctx, updateStat)
	must(b, err)
	dump, err := p.envoy.Get(f.ctx, "/config_dump")
	must(b, err)
	updates := map[string]float64{}
	for name, v := range updates1 {
		if d := v - updates0[name]; d > 0 {
			updates[strings.TrimSuffix(name, ".update_success")] = float64(d) / float64(n)
		}
	}
	return peerResult{
		run:            run,
		latency:        harness.SummarizeLatencies(latencies),
		bytesPerChange: float64(rx1-rx0) / float64(n),
		cpuPerChange:   (use1.CPU - use0.CPU) / time.Duration(n),
		idleCPU:        ms(use0.CPU-idle0.CPU) / idleWindow.Seconds(),
		rss:            use1.RSS,
		configDump:     len(dump),
		updates:        updates,
	}
}

// updateStat matches the counters of the xDS updates Envoy accepted, one
// per subscription (cluster_manager.cds, listener_manager.lds,
// http.<listener>.rds.<route>, runtime's RTDS layer, EDS per cluster).
const updateStat = `\.update_success$`

func waitShare(b *testing.B, ctx context.Context, p *runningPeer, ppm uint32, timeout time.Duration) {
	b.Helper()
	var last uint32
	if _, err := harness.PollUntil(ctx, 20*time.Millisecond, timeout, func() (bool, error) {
		share, ok, err := p.share()
		last = share
		return ok && share == ppm, err
	}); err != nil {
		dump, _ := p.envoy.Get(ctx, "/config_dump")
		b.Fatalf("the starting share %d ppm never reached Envoy (last %d): %v\nenvoy log:\n%s\ncontrol plane log:\n%s\nconfig_dump (first 4 KiB): %.4096s",
			ppm, last, err, p.envoy.LogTail(40), p.cp.LogTail(40), dump)
	}
}

// startIstiodPeer starts istiod, the stub SDS and an Istio-style sidecar.
func startIstiodPeer(b *testing.B, f *peerFixture, run peerRun) *runningPeer {
	dir := b.TempDir()
	istiod, err := StartIstiod(f.ctx, IstiodOptions{Bin: f.istiod, Kubeconfig: f.kube.KubeconfigPath, Dir: dir, Env: run.istiodEnv})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(istiod.Stop)
	sds, err := StartStubSDS()
	must(b, err)
	b.Cleanup(sds.Stop)
	adminPort, err := harness.FreePort()
	must(b, err)
	sidecar := IstioSidecar{IP: f.endpointHost, Pod: "entrance-istio", Namespace: peerNamespace, App: "entrance", IstioVersion: istioVersion}
	bootstrap := filepath.Join(dir, "envoy-istio.yaml")
	must(b, WriteIstioBootstrap(bootstrap, sidecar, istiod.XDSAddr, sds.Addr, adminPort))
	envoy, err := harness.StartEnvoy(f.ctx, f.envoy, bootstrap, adminPort, dir)
	must(b, err)
	b.Cleanup(envoy.Stop)
	return &runningPeer{
		cp: istiod.Process, envoy: envoy, adsCluster: IstioXDSCluster,
		write: f.writeVirtualServicePercent,
		share: func() (uint32, bool, error) {
			dump, err := envoy.Get(f.ctx, "/config_dump?resource=dynamic_route_configs")
			if err != nil {
				return 0, false, err
			}
			return MirrorShare(dump, istioShadowCluster)
		},
	}
}

// startShadowplanePeer starts `shadowplane serve` (the released binary, not
// the in-process harness, so its CPU and memory are its own) and a sidecar
// from `shadowplane bootstrap`.
func startShadowplanePeer(b *testing.B, f *peerFixture, run peerRun) *runningPeer {
	dir := b.TempDir()
	xdsPort, err := harness.FreePort()
	must(b, err)
	httpPort, err := harness.FreePort()
	must(b, err)
	debugPort, err := harness.FreePort()
	must(b, err)
	args := []string{"serve",
		"--kubeconfig", f.kube.KubeconfigPath,
		"--namespaces", peerNamespace,
		"--xds-address", fmt.Sprintf("127.0.0.1:%d", xdsPort),
		"--http-address", fmt.Sprintf("127.0.0.1:%d", httpPort),
		"--debug-address", fmt.Sprintf("127.0.0.1:%d", debugPort),
		"--log-level", "warn",
		"--shutdown-delay", "0s",
	}
	opts := harness.SidecarOptions{
		Shadowplane: f.shadowplane, Envoy: f.envoy, Dir: dir,
		XDSAddress: fmt.Sprintf("127.0.0.1:%d", xdsPort),
		NodeID:     "entrance-shadowplane", Namespace: peerNamespace, Service: "entrance",
		ListenPort: f.listenPort, AppPort: f.listenPort + 1,
	}
	if run.shadowplaneTLS {
		// As deployed: certgen's serving certificate, and a sidecar
		// identity (ServiceAccount, Pod, bound token) the control plane
		// verifies with the API server.
		if out, err := exec.Command(f.shadowplane, "certgen", "--out-dir", dir, "--ip", "127.0.0.1").CombinedOutput(); err != nil {
			b.Fatalf("shadowplane certgen: %v\n%s", err, out)
		}
		args = append(args, "--xds-tls-cert-file", filepath.Join(dir, "tls.crt"), "--xds-tls-key-file", filepath.Join(dir, "tls.key"))
		id, err := f.kube.NewSidecarIdentity(f.ctx, peerNamespace, "entrance", "entrance", opts.NodeID, filepath.Join(dir, "identity"))
		must(b, err)
		opts.Secure = &harness.SidecarTLS{CAFile: filepath.Join(dir, "ca.crt"), TokenFile: id.TokenFile}
	} else {
		args = append(args, "--insecure-xds")
	}
	cp := harness.StartProcessT(b, exec.Command(f.shadowplane, args...), filepath.Join(dir, "serve.log"))
	if err := harness.WaitUntil(f.ctx, 30*time.Second, func() (bool, error) {
		_, err := harness.GetJSON(f.ctx, fmt.Sprintf("http://127.0.0.1:%d/readyz", httpPort))
		return err == nil, err
	}); err != nil {
		b.Fatalf("shadowplane serve never ready: %v\n%s", err, cp.LogTail(40))
	}
	sidecar, err := harness.StartSidecar(f.ctx, opts)
	if err != nil {
		b.Fatalf("sidecar: %v\ncontrol plane log:\n%s", err, cp.LogTail(40))
	}
	b.Cleanup(sidecar.Stop)
	return &runningPeer{
		cp: cp, envoy: sidecar.Envoy, adsCluster: "shadowplane_xds",
		write: f.writePolicyPercent,
		share: func() (uint32, bool, error) {
			v, ok, err := sidecar.RuntimeValue(f.ctx, peerRuntimeKey)
			if err != nil || !ok {
				return 0, false, err
			}
			share, ok := harness.RuntimeShare(v)
			return share, ok, nil
		},
	}
}

// peersTable renders the results as markdown: each figure with its ratio
// to istiod with defaults and to istiod with our 10 ms debounce, from this
// run.
func peersTable(f *peerFixture, results []peerResult) string {
	base, tuned := results[0], results[1]
	ratio := func(v, of float64) string {
		if of == 0 {
			return "–"
		}
		return fmt.Sprintf("%.2f×", v/of)
	}
	cell := func(v float64, format string, pick func(peerResult) float64) string {
		s := fmt.Sprintf(format, v)
		return fmt.Sprintf("%s (%s / %s)", s, ratio(v, pick(base)), ratio(v, pick(tuned)))
	}
	cols := []struct {
		head   string
		format string
		pick   func(peerResult) float64
	}{
		{"p50 ms", "%.1f", func(r peerResult) float64 { return ms(r.latency.P50) }},
		{"p90 ms", "%.1f", func(r peerResult) float64 { return ms(r.latency.P90) }},
		{"p99 ms", "%.1f", func(r peerResult) float64 { return ms(r.latency.P99) }},
		{"xDS bytes to Envoy per change", "%.0f", func(r peerResult) float64 { return r.bytesPerChange }},
		{"CP CPU ms per change", "%.2f", func(r peerResult) float64 { return ms(r.cpuPerChange) }},
		{"CP RSS MiB", "%.1f", func(r peerResult) float64 { return float64(r.rss) / (1 << 20) }},
		{"sidecar config_dump KiB", "%.1f", func(r peerResult) float64 { return float64(r.configDump) / 1024 }},
	}
	var t strings.Builder
	fmt.Fprintf(&t, "\n### Peers: a mirror percent change, API write → in force in Envoy (%d changes each)\n\n", base.latency.N)
	fmt.Fprintf(&t, "Each cell: value (ratio to istiod with defaults / ratio to istiod with PILOT_DEBOUNCE_AFTER=10ms), from this run.\n\n")
	fmt.Fprintf(&t, "| control plane |")
	for _, c := range cols {
		fmt.Fprintf(&t, " %s |", c.head)
	}
	fmt.Fprintf(&t, "\n|---|")
	for range cols {
		fmt.Fprintf(&t, "---:|")
	}
	fmt.Fprintln(&t)
	for _, r := range results {
		fmt.Fprintf(&t, "| %s |", r.run.name)
		for _, c := range cols {
			fmt.Fprintf(&t, " %s |", cell(c.pick(r), c.format, c.pick))
		}
		fmt.Fprintln(&t)
	}
	fmt.Fprintf(&t, "\nIn force: Istio's share from the route's request_mirror_policies in Envoy's /config_dump; shadowplane's from its\n")
	fmt.Fprintf(&t, "RTDS key in Envoy's /runtime (a percent change is an RTDS update only); both polled every 1 ms.\n")
	fmt.Fprintf(&t, "Bytes: Envoy's cluster.<xDS cluster>.upstream_cx_rx_bytes_total over the changes (HTTP/2 frames, counted after TLS).\n")
	fmt.Fprintf(&t, "CPU: the control plane's user+system time over the changes (idle work included), per change; RSS after them.\n")
	fmt.Fprintf(&t, "Idle CPU: over 2 s before the changes, in /proc's 10 ms ticks (0.0 means under 5 ms/s).\n\n")
	fmt.Fprintf(&t, "| control plane | CP CPU when idle, ms/s | xDS updates Envoy accepted per change |\n|---|---:|---|\n")
	for _, r := range results {
		fmt.Fprintf(&t, "| %s | %.1f | %s |\n", r.run.name, r.idleCPU, formatUpdates(r.updates))
	}
	fmt.Fprintln(&t)
	fmt.Fprintf(&t, "istiod: %s, plain-text xDS, mesh config %q, environment %s;\n", istioModuleVersion(), meshConfig, strings.Join(istiodEnv, " "))
	fmt.Fprintf(&t, "a stub SDS serves the sidecar's certificates; PILOT_MAX_REQUESTS_PER_SECOND stays at its default (one sidecar connects once).\n\n")
	fmt.Fprintf(&t, "Machine: %s\n", harness.MachineDescription(f.envoy))
	return t.String()
}

// formatUpdates lists updates per change by subscription, e.g.
// "listener_manager.lds 1.00, cluster_manager.cds 1.00".
func formatUpdates(updates map[string]float64) string {
	names := make([]string, 0, len(updates))
	for name := range updates {
		names = append(names, name)
	}
	sort.Strings(names)
	parts := make([]string, 0, len(names))
	for _, name := range names {
		parts = append(parts, fmt.Sprintf("%s %.2f", name, updates[name]))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// istioModuleVersion is the pinned istio.io/istio version from
// tools/istiod/go.mod.
func istioModuleVersion() string {
	data, err := os.ReadFile(filepath.Join(testtools.RepoRoot(), "tools", "istiod", "go.mod"))
	if err != nil {
		return "istio.io/istio (version unknown)"
	}
	for _, line := range strings.Split(string(data), "\n") {
		if fields := strings.Fields(line); len(fields) >= 2 && fields[len(fields)-2] == "istio.io/istio" {
			return "istio.io/istio " + fields[len(fields)-1]
		}
	}
	return "istio.io/istio (version unknown)"
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

func must(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}
