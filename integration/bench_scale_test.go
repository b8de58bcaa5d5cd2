package integration

import (
	"context"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/shadowplane/shadowplane/integration/fleet"
	"github.com/shadowplane/shadowplane/integration/harness"
	"github.com/shadowplane/shadowplane/nodemeta"
	"github.com/shadowplane/shadowplane/watcher"
)

// scaleGroups is how many node groups (Services with a policy) the scale
// world holds; a run of N sidecars spreads them over N/10 of them.
const scaleGroups = 1000

// scaleWorld is the Kubernetes side of the scale benchmark: per group a
// Service app-<i> fronted by sidecars, a shadow Service app-<i>-shadow with
// one ready endpoint, and a policy copying 10 % of app-<i> to it, 100
// policies per ConfigMap (the per-key cap).
type scaleWorld struct {
	ns   string
	kube *harness.Kube
	host string
	// percent is the share every policy copies, changed by the benchmark.
	percent map[int]int
	// churns counts endpoint churns, so each one moves to new addresses.
	churns int
}

func (w *scaleWorld) configMaps() int { return scaleGroups / watcher.MaxPoliciesPerKey }

func (w *scaleWorld) policiesYAML(cm int) string {
	var b strings.Builder
	b.WriteString("policies:\n")
	for i := cm * watcher.MaxPoliciesPerKey; i < (cm+1)*watcher.MaxPoliciesPerKey; i++ {
		fmt.Fprintf(&b, "- name: p-%d\n  service: app-%d\n  port: http\n  mirrors:\n  - service: app-%d-shadow\n    port: http\n    name: shadow\n    percent: %d\n",
			i, i, i, w.percent[i])
	}
	return b.String()
}

func (w *scaleWorld) writeConfigMap(ctx context.Context, cm int) error {
	return w.kube.ApplyPolicyConfigMap(ctx, w.ns, fmt.Sprintf("scale-%02d", cm), "policies.yaml", w.policiesYAML(cm))
}

func newScaleWorld(b *testing.B, ctx context.Context) *scaleWorld {
	b.Helper()
	e := env(b)
	w := &scaleWorld{ns: newNamespace(b, ctx), kube: e.kube, host: e.endpointHost, percent: map[int]int{}}
	for i := range scaleGroups {
		w.percent[i] = 10
	}
	must(b, parallel(scaleGroups, 32, func(i int) error {
		if err := createHeadlessService(ctx, w.kube, w.ns, fmt.Sprintf("app-%d", i), 80, 15001); err != nil {
			return err
		}
		shadow := fmt.Sprintf("app-%d-shadow", i)
		if err := createHeadlessService(ctx, w.kube, w.ns, shadow, 8080, 8080); err != nil {
			return err
		}
		return w.kube.ApplyEndpointSlice(ctx, w.ns, shadow, "http", 8080, harness.SliceEndpoint{Address: w.host, Ready: true})
	}))
	for cm := range w.configMaps() {
		must(b, w.writeConfigMap(ctx, cm))
	}
	return w
}

// scaleResult is one row of the table.
type scaleResult struct {
	sidecars, groups                      int
	rssIdle, rssConnected, rssChurn       uint64
	convergeP50, convergeP99              time.Duration
	onePolicy, allPolicies, endpointChurn time.Duration
	onePolicyMax                          time.Duration
	onePolicyRuns                         int
	// oneEventToSnapshot is the mean time from the watch event to the new
	// snapshot of the one-policy changes: the control plane's own part.
	oneEventToSnapshot                   time.Duration
	cpuConnect, cpuOne, cpuAll, cpuChurn time.Duration
	goroutines                           float64
	heapInuse, stackInuse                float64 // bytes, when connected
	nacks, streamFailures                int
	lastStreamError                      string
	unreferencedTranslations             float64
}

// BenchmarkScale: `make bench-scale`. For each fleet size (SCALE_SIZES,
// default 1000,5000,10000) a fresh `shadowplane serve` process, with the
// real watcher against the real kube-apiserver, serves that many simulated
// sidecars (integration/fleet: real gRPC ADS clients, one connection each,
// every fourth one delta) spread over a tenth as many node groups. It
// measures the server process's RSS idle, connected and after churn, the
// initial convergence, a one-policy change, an all-policies change and a
// shadow-endpoint change until ACKed by every affected sidecar, the CPU
// time of each, and that an EndpointSlice of a Service no policy names
// costs no translation. It writes a table and an SVG plot to SCALE_OUT, and
// heap and goroutine profiles of the connected fleet to SCALE_PROFILES
// (each by default a temporary directory), and logs the table.
//
// xDS runs with --insecure-xds: ten thousand TokenReviews would measure the
// API server, not the control plane; identity checks are covered by the
// trust tests and cost one TokenReview, one Pod and one Service get per
// stream.
func BenchmarkScale(b *testing.B) {
	e := env(b)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Minute)
	defer cancel()
	sizes := []int{1000, 5000, 10000}
	if s := os.Getenv("SCALE_SIZES"); s != "" {
		sizes = nil
		for _, f := range strings.Split(s, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			must(b, err)
			sizes = append(sizes, n)
		}
	}
	out := os.Getenv("SCALE_OUT")
	if out == "" {
		out = b.TempDir()
	}
	profiles := os.Getenv("SCALE_PROFILES")
	if profiles == "" {
		profiles = b.TempDir()
	}
	must(b, os.MkdirAll(profiles, 0o755))
	floorBinary := filepath.Join(b.TempDir(), "floorserver")
	if out, err := exec.Command("go", "build", "-o", floorBinary, "./fleet/floorserver").CombinedOutput(); err != nil {
		b.Fatalf("build the floor server: %v\n%s", err, out)
	}
	world := newScaleWorld(b, ctx)
	var results []scaleResult
	var floors []floorResult
	for _, n := range sizes {
		r := runScale(b, ctx, e, world, n, profiles)
		results = append(results, r)
		b.Logf("%d sidecars: %+v", n, r)
		f := runFloor(b, ctx, floorBinary, n)
		floors = append(floors, f)
		b.Logf("%d sidecars, floor server: %+v", n, f)
	}
	table := scaleTable(results) + "\nThe same fleet against the floor server (a bare gRPC-go ADS server with the same buffers and keepalive, resources marshalled once, no groups, identity or status):\n\n" + floorTable(results, floors)
	xs := make([]float64, len(results))
	rss := make([]float64, len(results))
	conv := make([]float64, len(results))
	for i, r := range results {
		xs[i] = float64(r.sidecars)
		rss[i] = mib(r.rssChurn)
		conv[i] = ms(r.convergeP99)
	}
	svg := fleet.PlotSVG("shadowplane serve with N simulated sidecars (N/10 node groups)", "sidecars (N)", xs, []fleet.Series{
		{Name: "RSS after churn", Unit: "MiB", Color: "#1f77b4", Values: rss},
		{Name: "initial convergence p99", Unit: "ms", Color: "#d62728", Values: conv},
	})
	must(b, os.WriteFile(filepath.Join(out, "bench-scale.svg"), []byte(svg), 0o644))
	must(b, os.WriteFile(filepath.Join(out, "bench-scale.md"), []byte(table), 0o644))
	b.Logf("\n%s\nplot and table in %s", table, out)
}

// runScale measures one fleet size against a fresh control plane process.
func runScale(b *testing.B, ctx context.Context, e *sharedEnv, world *scaleWorld, n int, profiles string) scaleResult {
	groups := max(1, n/10)
	r := scaleResult{sidecars: n, groups: groups}
	xdsPort, err := harness.FreePort()
	must(b, err)
	debugPort, err := harness.FreePort()
	must(b, err)
	httpPort, err := harness.FreePort()
	must(b, err)
	httpURL := fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	xdsAddr := fmt.Sprintf("127.0.0.1:%d", xdsPort)
	debug := fmt.Sprintf("http://127.0.0.1:%d", debugPort)
	proc := harness.StartProcessT(b, exec.Command(e.shadowplane, "serve",
		"--kubeconfig", e.kube.KubeconfigPath, "--namespaces", world.ns,
		"--xds-address", xdsAddr, "--http-address", fmt.Sprintf("127.0.0.1:%d", httpPort), "--debug-address", fmt.Sprintf("127.0.0.1:%d", debugPort),
		"--insecure-xds", "--leader-elect=false", "--log-level", "warn", "--log-format", "json",
		"--xds-new-streams-per-second", "20000", "--xds-new-stream-burst", "20000"),
		filepath.Join(b.TempDir(), "serve.log"))
	defer proc.Stop()
	if err := harness.WaitUntil(ctx, 60*time.Second, func() (bool, error) {
		_, err := harness.GetJSON(ctx, debug+"/debug/snapshots")
		return err == nil, nil
	}); err != nil {
		b.Fatalf("serve never answered: %v\n%s", err, proc.LogTail(20))
	}
	time.Sleep(2 * time.Second) // the first World is in
	usage := func() fleet.Usage {
		u, err := fleet.ReadUsage(proc.PID())
		must(b, err)
		return u
	}
	idle := usage()
	r.rssIdle = idle.RSSBytes

	// Connect the fleet, all at once.
	stopProfiles := profileConnect(b, ctx, debug, profiles, n)
	fl := startFleet(b, ctx, xdsAddr, n, groups, world.ns)
	defer fl.stop()
	sidecars := fl.sidecars
	times := fl.waitConverged(b, ctx, func() string { return proc.LogTail(20) })
	r.convergeP50, r.convergeP99 = times[len(times)/2], times[len(times)*99/100]
	time.Sleep(2 * time.Second) // let the heap settle
	connected := usage()
	// The CPU is read before the profile's window ends, so that it covers
	// convergence and the 2 s after, as for the floor server.
	stopProfiles()
	r.rssConnected, r.cpuConnect = connected.RSSBytes, connected.CPU-idle.CPU
	mem := scrapeMetrics(b, httpURL)
	r.heapInuse, r.stackInuse = mem["go_memstats_heap_inuse_bytes"], mem["go_memstats_stack_inuse_bytes"]
	saveProfiles(b, ctx, debug, profiles, n)

	// One policy: one group's share, ACKed by that group's sidecars,
	// repeated (each time another group) while the control plane is
	// profiled; the median and the slowest are reported.
	before := usage()
	eventToSnapshot := func() (sum, count float64) {
		m := scrapeMetrics(b, httpURL)
		return m["shadowplane_event_to_snapshot_seconds_sum"], m["shadowplane_event_to_snapshot_seconds_count"]
	}
	sum0, count0 := eventToSnapshot()
	var ones []time.Duration
	waitProfile := profilePhase(b, ctx, debug, profiles, fmt.Sprintf("cpu-serve-one-%d.pb.gz", n), 8*time.Second, func() bool {
		g := len(ones) % groups
		world.percent[g] = 5 + (world.percent[g]+7)%50
		ones = append(ones, timeChange(b, ctx, sidecars, resource.RuntimeType, func(i int) bool { return i%groups == g }, func() {
			must(b, world.writeConfigMap(ctx, g/watcher.MaxPoliciesPerKey))
		}))
		return len(ones) < 200
	})
	after := usage()
	waitProfile()
	r.cpuOne = (after.CPU - before.CPU) / time.Duration(len(ones))
	r.onePolicy, r.onePolicyMax, r.onePolicyRuns = median(ones), slices.Max(ones), len(ones)
	if sum1, count1 := eventToSnapshot(); count1 > count0 {
		r.oneEventToSnapshot = time.Duration((sum1 - sum0) / (count1 - count0) * float64(time.Second))
	}

	// Every policy: each ConfigMap rewritten, ACKed by every sidecar,
	// three times; the median is reported.
	before = after
	var alls []time.Duration
	waitProfile = profilePhase(b, ctx, debug, profiles, fmt.Sprintf("cpu-serve-all-%d.pb.gz", n), 0, func() bool {
		for i := range scaleGroups {
			world.percent[i] = 5 + (world.percent[i]+3)%50
		}
		alls = append(alls, timeChange(b, ctx, sidecars, resource.RuntimeType, func(int) bool { return true }, func() {
			must(b, parallel(world.configMaps(), world.configMaps(), func(cm int) error { return world.writeConfigMap(ctx, cm) }))
		}))
		return len(alls) < 3
	})
	after = usage()
	waitProfile()
	r.cpuAll = (after.CPU - before.CPU) / time.Duration(len(alls))
	r.allPolicies = median(alls)

	// Shadow-endpoint churn: a second endpoint for every connected group's
	// shadow Service, ACKed (EDS) by every sidecar.
	before = after
	world.churns++
	r.endpointChurn = timeChange(b, ctx, sidecars, resource.EndpointType, func(int) bool { return true }, func() {
		must(b, parallel(groups, 32, func(i int) error {
			return world.kube.ApplyEndpointSlice(ctx, world.ns, fmt.Sprintf("app-%d-shadow", i), "http", 8080,
				harness.SliceEndpoint{Address: world.host, Ready: true}, harness.SliceEndpoint{Address: fmt.Sprintf("198.18.%d.%d", world.churns, 1+i%250), Ready: true})
		}))
	})
	after = usage()
	r.cpuChurn = after.CPU - before.CPU

	// A Service and EndpointSlice no policy names: no translation.
	translations := func() float64 { return scrapeMetrics(b, httpURL)["shadowplane_translation_duration_seconds_count"] }
	beforeT := translations()
	name := fmt.Sprintf("unreferenced-%d", n)
	must(b, createHeadlessService(ctx, world.kube, world.ns, name, 80, 8080))
	must(b, world.kube.ApplyEndpointSlice(ctx, world.ns, name, "http", 8080, harness.SliceEndpoint{Address: world.host, Ready: true}))
	if err := harness.WaitUntil(ctx, 20*time.Second, func() (bool, error) {
		return scrapeMetrics(b, httpURL)[`shadowplane_watcher_ignored_events_total{kind="endpointslice"}`] >= 1, nil
	}); err != nil {
		b.Errorf("the unreferenced EndpointSlice was never counted as ignored")
	}
	time.Sleep(500 * time.Millisecond)
	r.unreferencedTranslations = translations() - beforeT
	r.goroutines = scrapeMetrics(b, httpURL)["go_goroutines"]

	time.Sleep(2 * time.Second)
	r.rssChurn = usage().RSSBytes
	for _, s := range sidecars {
		r.nacks += s.Nacks()
		failures, err := s.Failures()
		r.streamFailures += failures
		if err != nil {
			r.lastStreamError = err.Error()
		}
	}
	return r
}

// floorResult is what the floor server (integration/fleet/floorserver: a
// bare gRPC-go ADS server, resources marshalled once) costs the same
// fleet: what any gRPC-go control plane pays before doing anything.
type floorResult struct {
	sidecars                 int
	rssIdle, rssConnected    uint64
	convergeP50, convergeP99 time.Duration
	push                     time.Duration
	cpuConnect, cpuPush      time.Duration
}

// runFloor runs the fleet of n sidecars against the floor server.
func runFloor(b *testing.B, ctx context.Context, binary string, n int) floorResult {
	r := floorResult{sidecars: n}
	xdsPort, err := harness.FreePort()
	must(b, err)
	httpPort, err := harness.FreePort()
	must(b, err)
	xdsAddr := fmt.Sprintf("127.0.0.1:%d", xdsPort)
	httpURL := fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	proc := harness.StartProcessT(b, exec.Command(binary, "-xds", xdsAddr, "-http", fmt.Sprintf("127.0.0.1:%d", httpPort)),
		filepath.Join(b.TempDir(), "floor.log"))
	defer proc.Stop()
	if err := harness.WaitUntil(ctx, 30*time.Second, func() (bool, error) {
		_, err := harness.GetJSON(ctx, httpURL+"/ready")
		return err == nil, nil
	}); err != nil {
		b.Fatalf("floor server never answered: %v\n%s", err, proc.LogTail(20))
	}
	usage := func() fleet.Usage {
		u, err := fleet.ReadUsage(proc.PID())
		must(b, err)
		return u
	}
	idle := usage()
	r.rssIdle = idle.RSSBytes
	fl := startFleet(b, ctx, xdsAddr, n, max(1, n/10), "floor")
	defer fl.stop()
	times := fl.waitConverged(b, ctx, func() string { return proc.LogTail(20) })
	r.convergeP50, r.convergeP99 = times[len(times)/2], times[len(times)*99/100]
	time.Sleep(2 * time.Second) // as for shadowplane: let the heap settle
	connected := usage()
	r.rssConnected, r.cpuConnect = connected.RSSBytes, connected.CPU-idle.CPU
	r.push = timeChange(b, ctx, fl.sidecars, resource.RuntimeType, func(int) bool { return true }, func() {
		_, err := harness.GetJSON(ctx, httpURL+"/push")
		must(b, err)
	})
	r.cpuPush = usage().CPU - connected.CPU
	return r
}

// floorTable compares shadowplane with the floor server, size by size.
func floorTable(results []scaleResult, floors []floorResult) string {
	var b strings.Builder
	b.WriteString("| sidecars | floor RSS idle / connected | floor KB/sidecar | shadowplane KB/sidecar (÷ floor) | floor converge p50 / p99 | shadowplane converge p99 (÷ floor) | floor push to all | shadowplane all policies (÷ floor push) | floor CPU s connect / push |\n")
	b.WriteString("|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for i, f := range floors {
		r := results[i]
		floorKB := (float64(f.rssConnected) - float64(f.rssIdle)) / 1024 / float64(f.sidecars)
		ourKB := (float64(r.rssConnected) - float64(r.rssIdle)) / 1024 / float64(r.sidecars)
		fmt.Fprintf(&b, "| %d | %.0f / %.0f MiB | %.1f | %.1f (%.2f×) | %.0f / %.0f ms | %.0f ms (%.2f×) | %.0f ms | %.0f ms (%.2f×) | %.1f / %.2f |\n",
			f.sidecars, mib(f.rssIdle), mib(f.rssConnected), floorKB, ourKB, ourKB/floorKB,
			ms(f.convergeP50), ms(f.convergeP99), ms(r.convergeP99), ms(r.convergeP99)/ms(f.convergeP99),
			ms(f.push), ms(r.allPolicies), ms(r.allPolicies)/ms(f.push), f.cpuConnect.Seconds(), f.cpuPush.Seconds())
	}
	return b.String()
}

// runningFleet is a fleet of simulated sidecars connected to one server.
type runningFleet struct {
	sidecars []*fleet.Sidecar
	conns    []*grpc.ClientConn
	started  time.Time
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

// startFleet connects n sidecars to xdsAddr at once, each on its own
// connection, spread over groups node groups; every fourth speaks delta.
func startFleet(b *testing.B, ctx context.Context, xdsAddr string, n, groups int, ns string) *runningFleet {
	f := &runningFleet{sidecars: make([]*fleet.Sidecar, n), conns: make([]*grpc.ClientConn, n)}
	runCtx, cancel := context.WithCancel(ctx)
	f.cancel = cancel
	for i := range n {
		g := i % groups
		node := nodemeta.Metadata{NodeID: fmt.Sprintf("app-%d-%d", g, i), Namespace: ns, Service: fmt.Sprintf("app-%d", g),
			Ports: []nodemeta.PortPair{{Listen: 15001, App: 8080}}}.Node()
		f.sidecars[i] = fleet.New(node, i%4 == 3)
		conn, err := grpc.NewClient(xdsAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			f.stop()
			b.Fatal(err)
		}
		f.conns[i] = conn
	}
	f.started = time.Now()
	for i, s := range f.sidecars {
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			s.Run(runCtx, f.conns[i])
		}()
	}
	return f
}

// stop ends every sidecar and closes its connection.
func (f *runningFleet) stop() {
	f.cancel()
	f.wg.Wait()
	for _, c := range f.conns {
		if c != nil {
			c.Close()
		}
	}
}

// waitConverged waits until every sidecar acknowledged every type it
// subscribed to and returns their convergence times, sorted.
func (f *runningFleet) waitConverged(b *testing.B, ctx context.Context, logTail func() string) []time.Duration {
	var times []time.Duration
	if err := harness.WaitUntil(ctx, 10*time.Minute, func() (bool, error) {
		times = times[:0]
		for _, s := range f.sidecars {
			if d, ok := s.Convergence(); ok {
				times = append(times, d)
			}
		}
		return len(times) == len(f.sidecars), nil
	}); err != nil {
		failures, last := 0, error(nil)
		for _, s := range f.sidecars {
			n, err := s.Failures()
			failures += n
			if err != nil {
				last = err
			}
		}
		b.Fatalf("%d of %d sidecars synced after %s (%d failed streams, the last: %v): %v\n%s", len(times), len(f.sidecars), time.Since(f.started), failures, last, err, logTail())
	}
	slices.Sort(times)
	return times
}

// timeChange makes a change and returns how long until every selected
// sidecar acknowledged a new version of typeURL.
func timeChange(b *testing.B, ctx context.Context, sidecars []*fleet.Sidecar, typeURL string, selected func(int) bool, change func()) time.Duration {
	b.Helper()
	old := make(map[int]string)
	for i, s := range sidecars {
		if selected(i) {
			old[i] = s.AckedOf(typeURL).Version
		}
	}
	start := time.Now()
	change()
	var last time.Time
	pending := len(old)
	if err := harness.WaitUntil(ctx, 5*time.Minute, func() (bool, error) {
		pending = 0
		for i, v := range old {
			a := sidecars[i].AckedOf(typeURL)
			if a.Version == v {
				pending++
				continue
			}
			if a.At.After(last) {
				last = a.At
			}
		}
		return pending == 0, nil
	}); err != nil {
		b.Fatalf("%d of %d sidecars never acknowledged the change: %v", pending, len(old), err)
	}
	return last.Sub(start)
}

// profileConnect records CPU profiles of the control plane and of this
// process (the fleet) while the fleet connects, for docs/benchmarks.md; the
// returned func stops the fleet's and waits for the control plane's.
func profileConnect(b *testing.B, ctx context.Context, debug, out string, n int) func() {
	f, err := os.Create(filepath.Join(out, fmt.Sprintf("cpu-fleet-%d.pb.gz", n)))
	must(b, err)
	must(b, pprof.StartCPUProfile(f))
	done := make(chan struct{})
	go func() {
		defer close(done)
		body, err := harness.GetJSON(ctx, debug+"/debug/pprof/profile?seconds=20")
		if err != nil {
			b.Logf("control plane CPU profile: %v", err)
			return
		}
		if err := os.WriteFile(filepath.Join(out, fmt.Sprintf("cpu-serve-%d.pb.gz", n)), body, 0o644); err != nil {
			b.Logf("control plane CPU profile: %v", err)
		}
	}()
	return func() {
		pprof.StopCPUProfile()
		f.Close()
		<-done
	}
}

// profilePhase calls step until it returns false (and, when window is not
// zero, until window has passed), while the control plane's CPU profile
// is recorded into out/name: for window, or for 20 s when window is zero.
// It returns when the steps are done; the returned func waits for the
// profile, so the caller can read CPU times before the profile's idle
// tail.
func profilePhase(b *testing.B, ctx context.Context, debug, out, name string, window time.Duration, step func() bool) (wait func()) {
	start := time.Now()
	seconds := max(1, int(window.Seconds()))
	if window == 0 {
		seconds = 20
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		body, err := harness.GetJSON(ctx, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", debug, seconds))
		if err != nil {
			b.Logf("control plane CPU profile: %v", err)
			return
		}
		if err := os.WriteFile(filepath.Join(out, name), body, 0o644); err != nil {
			b.Logf("control plane CPU profile: %v", err)
		}
	}()
	for step() && (window == 0 || time.Since(start) < window) {
	}
	return func() { <-done }
}

// saveProfiles keeps the heap and goroutine profiles of the connected
// fleet, for docs/benchmarks.md.
func saveProfiles(b *testing.B, ctx context.Context, debug, out string, n int) {
	for _, p := range []string{"heap", "goroutine"} {
		body, err := harness.GetJSON(ctx, debug+"/debug/pprof/"+p)
		if err != nil {
			b.Logf("pprof %s: %v", p, err)
			continue
		}
		must(b, os.WriteFile(filepath.Join(out, fmt.Sprintf("%s-%d.pb.gz", p, n)), body, 0o644))
	}
}

func scaleTable(results []scaleResult) string {
	var b strings.Builder
	b.WriteString("| sidecars | groups | RSS idle | RSS connected | RSS after churn | KB/sidecar | heap / stacks connected | goroutines | converge p50 / p99 | one policy, median / max (changes); event → snapshot mean | all policies, median of 3 | endpoint churn | CPU s (connect / per one-policy change / per all-policies change / churn) | NACKs | failed streams | translations for an unreferenced slice |\n")
	b.WriteString("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range results {
		perSidecar := (float64(r.rssConnected) - float64(r.rssIdle)) / 1024 / float64(r.sidecars)
		fmt.Fprintf(&b, "| %d | %d | %.0f MiB | %.0f MiB | %.0f MiB | %.1f | %.0f / %.0f MiB | %.0f | %.0f / %.0f ms | %.0f / %.0f ms (%d); %.1f ms | %.0f ms | %.0f ms | %.1f / %.3f / %.1f / %.1f | %d | %d | %.0f |\n",
			r.sidecars, r.groups, mib(r.rssIdle), mib(r.rssConnected), mib(r.rssChurn), math.Max(perSidecar, 0),
			r.heapInuse/(1<<20), r.stackInuse/(1<<20), r.goroutines,
			ms(r.convergeP50), ms(r.convergeP99), ms(r.onePolicy), ms(r.onePolicyMax), r.onePolicyRuns, ms(r.oneEventToSnapshot), ms(r.allPolicies), ms(r.endpointChurn),
			r.cpuConnect.Seconds(), r.cpuOne.Seconds(), r.cpuAll.Seconds(), r.cpuChurn.Seconds(), r.nacks, r.streamFailures, r.unreferencedTranslations)
	}
	return b.String()
}

// parallel runs fn(0..n-1), at most limit at once, and returns the first
// error.
func parallel(n, limit int, fn func(i int) error) error {
	sem := make(chan struct{}, limit)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			errs <- fn(i)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// createHeadlessService creates a Service with one http port and no
// cluster IP: the test API server's service range is too small for
// thousands, and shadowplane reads only the ports.
func createHeadlessService(ctx context.Context, kube *harness.Kube, ns, name string, port, targetPort int32) error {
	_, err := kube.Client.CoreV1().Services(ns).Create(ctx, &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec: corev1.ServiceSpec{ClusterIP: corev1.ClusterIPNone, Selector: map[string]string{"app": name}, Ports: []corev1.ServicePort{{
			Name: "http", Port: port, TargetPort: intstr.FromInt32(targetPort), Protocol: corev1.ProtocolTCP,
		}}},
	}, metav1.CreateOptions{})
	return err
}
