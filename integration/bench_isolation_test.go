package integration

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/shadowplane/shadowplane/integration/harness"
	"github.com/shadowplane/shadowplane/internal/testtools"
)

// BenchmarkIsolation measures what a misbehaving shadow does to production
// latency, side by side: nginx with its mirror module (the classic design)
// and Envoy configured by shadowplane, copying every request to the same
// kind of shadow. A Go client sends a fixed rate over a few keep-alive
// connections, so a proxy that holds a connection for its copy delays the
// requests queued behind it. Run it with `make bench-isolation` (one
// iteration: -benchtime 1x); it prints a markdown table.
//
// SHADOWPLANE_BENCH_RATE (requests/s, default 200),
// SHADOWPLANE_BENCH_DURATION (per scenario and proxy, default 10s) and
// SHADOWPLANE_BENCH_CONNS (client connections, default 8) tune the load.
func BenchmarkIsolation(b *testing.B) {
	nginx := testtools.Path("nginx")
	if nginx == "" {
		b.Fatalf("nginx not found in %s: run `make nginx`", testtools.BinDir())
	}
	e := env(b)
	load := benchLoad{
		rate:     envInt(b, "SHADOWPLANE_BENCH_RATE", 200),
		duration: envDuration(b, "SHADOWPLANE_BENCH_DURATION", 10*time.Second),
		conns:    envInt(b, "SHADOWPLANE_BENCH_CONNS", 8),
		timeout:  5 * time.Second,
	}
	ctx, cancel := context.WithTimeout(context.Background(), 25*time.Minute)
	defer cancel()

	primary, err := harness.StartBackend("primary", "127.0.0.1")
	must(b, err)
	defer primary.Stop()

	var rows []isolationRow
	for _, sc := range isolationScenarios {
		row := isolationRow{scenario: sc}
		for _, proxy := range []string{"nginx", "shadowplane"} {
			shadow, err := harness.StartBackend("shadow", e.endpointHost)
			must(b, err)
			shadowAddr := shadow.Addr
			switch {
			case sc.dead:
				port, err := harness.ClosedPort(e.endpointHost)
				must(b, err)
				shadowAddr = fmt.Sprintf("%s:%d", e.endpointHost, port)
			default:
				shadow.SetBehaviour(sc.behaviour, sc.delay)
			}
			var url string
			var stop func()
			if proxy == "nginx" {
				url, stop = startBenchNginx(b, ctx, nginx, primary.Addr, shadowAddr, sc.copy)
			} else {
				url, stop = startBenchSidecar(b, ctx, primary, shadowAddr, sc.copy)
			}
			client := load.client()
			load.warm(ctx, client, url)
			shadow.Reset()
			res := load.measure(ctx, client, url)
			client.CloseIdleConnections()
			m := measurement{p50: res.Percentile(50), p99: res.Percentile(99), errors: res.Errors(), requests: len(res.All), copies: shadow.Count()}
			if m.errors > 0 {
				m.firstError = res.FirstError()
			}
			b.Logf("%s %s: p50 %v p99 %v errors %d/%d copies %d %s", sc.key, proxy, m.p50, m.p99, m.errors, m.requests, m.copies, m.firstError)
			if proxy == "nginx" {
				row.nginx = m
			} else {
				row.shadowplane = m
			}
			stop()
			shadow.Stop()
		}
		rows = append(rows, row)
	}

	table := isolationTable(rows, load)
	fmt.Println()
	fmt.Println(table)
	fmt.Println(benchMachine(nginx))
	for _, r := range rows {
		if r.shadowplane.errors != 0 {
			b.Errorf("%s: shadowplane had %d primary errors (first: %s), want 0", r.scenario.name, r.shadowplane.errors, r.shadowplane.firstError)
		}
	}
}

type isolationScenario struct {
	key, name string
	copy      bool // false: no copy is made
	behaviour harness.Behaviour
	delay     time.Duration
	dead      bool // the shadow refuses connections
}

var isolationScenarios = []isolationScenario{
	{key: "a", name: "no copy", copy: false},
	{key: "b", name: "healthy shadow", copy: true, behaviour: harness.Answer},
	{key: "c", name: "shadow answers after 2 s", copy: true, behaviour: harness.Delay, delay: 2 * time.Second},
	{key: "d", name: "dead shadow (connection refused)", copy: true, dead: true},
	{key: "e", name: "shadow hangs", copy: true, behaviour: harness.Hang},
}

type measurement struct {
	p50, p99         time.Duration
	errors, requests int
	copies           int
	firstError       string
}

type isolationRow struct {
	scenario           isolationScenario
	nginx, shadowplane measurement
}

type benchLoad struct {
	rate     int
	duration time.Duration
	conns    int
	timeout  time.Duration
}

// client is a keep-alive client with the load's few connections.
func (l benchLoad) client() *http.Client {
	c := harness.NewKeepAliveClient(l.conns)
	c.Timeout = l.timeout
	return c
}

// warm opens the connections and, for shadowplane, lets a dead shadow be
// found and ejected, so the measurement sees the steady state.
func (l benchLoad) warm(ctx context.Context, client *http.Client, url string) {
	harness.SendN(ctx, client, 20*l.conns, l.conns, benchRequest(url))
}

// measure sends the fixed rate and returns what the client saw.
func (l benchLoad) measure(ctx context.Context, client *http.Client, url string) harness.Results {
	return harness.RunAtRate(ctx, client, l.rate, l.duration, benchRequest(url))
}

func benchRequest(url string) func(ctx context.Context, i int) *http.Request {
	return func(ctx context.Context, i int) *http.Request {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/entrance/item/%d", url, i), nil)
		return req
	}
}

// startBenchNginx runs nginx in front of the primary, copying to shadow
// when copy is set.
func startBenchNginx(b *testing.B, ctx context.Context, path, primary, shadow string, copy bool) (string, func()) {
	b.Helper()
	port, err := harness.FreePort()
	must(b, err)
	n, err := harness.StartNginx(ctx, path, b.TempDir(), harness.NginxMirror{ListenPort: port, Primary: primary, Shadow: shadow, Mirror: copy})
	must(b, err)
	return n.URL, n.Stop
}

// startBenchSidecar runs a control plane and an Envoy sidecar in front of
// the primary, in a fresh namespace whose shadow Service points at shadow,
// with the standard policy at 100 % (copy) or 0 %.
func startBenchSidecar(b *testing.B, ctx context.Context, primary *harness.Backend, shadow string, copy bool) (string, func()) {
	b.Helper()
	e := env(b)
	ns := newNamespace(b, ctx)
	host, portText, _ := strings.Cut(shadow, ":")
	shadowPort, err := strconv.Atoi(portText)
	must(b, err)
	listenPort, err := harness.FreePort()
	must(b, err)
	must(b, e.kube.ApplyService(ctx, ns, "entrance", harness.ServicePort{Name: "http", Port: 80, TargetPort: int32(listenPort)}))
	must(b, e.kube.ApplyService(ctx, ns, "entrance-shadow", harness.ServicePort{Name: "http", Port: 8080, TargetPort: int32(shadowPort)}))
	must(b, e.kube.ApplyEndpointSlice(ctx, ns, "entrance-shadow", "http", int32(shadowPort), harness.SliceEndpoint{Address: host, Ready: true}))
	percent, ppm := "0", uint32(0)
	if copy {
		percent, ppm = "100", 1_000_000
	}
	must(b, e.kube.ApplyPolicyConfigMap(ctx, ns, "mirror-policies", "policies.yaml", policyYAML(percent, "")))

	cp, err := harness.StartControlPlane(ctx, e.kube, harness.ControlPlaneOptions{
		Namespaces: []string{ns},
		Logger:     hclog.New(&hclog.LoggerOptions{Name: "shadowplane", Level: hclog.Warn, Output: testWriter{b}}),
	})
	must(b, err)
	sidecar, err := cp.StartSidecar(ctx, e.kube, harness.SidecarOptions{
		Shadowplane: e.shadowplane, Envoy: e.envoy, Dir: b.TempDir(),
		NodeID: "entrance-" + ns, Namespace: ns, Service: "entrance",
		ListenPort: listenPort, AppPort: uint32(primary.Port),
	})
	if err != nil {
		_ = cp.Stop()
		b.Fatal(err)
	}
	stop := func() {
		sidecar.Stop()
		if err := cp.Stop(); err != nil {
			b.Errorf("control plane: %v", err)
		}
	}
	key := "shadowplane." + ns + ".entrance-to-staging.staging"
	cluster := "shadow|" + ns + "|entrance-shadow|8080"
	err = harness.WaitUntil(ctx, 20*time.Second, func() (bool, error) {
		v, ok, err := sidecar.RuntimeValue(ctx, key)
		if err != nil || !ok || !harness.RuntimeShareIs(v, ppm) {
			return false, err
		}
		hosts, err := sidecar.ClusterHosts(ctx, cluster)
		return len(hosts) == 1 && hosts[0] == shadow, err
	})
	if err != nil {
		stop()
		b.Fatalf("sidecar never ran the policy at %s %% to %s: %v", percent, shadow, err)
	}
	return sidecar.URL, stop
}

// isolationTable renders the results as markdown.
func isolationTable(rows []isolationRow, l benchLoad) string {
	var base isolationRow
	for _, r := range rows {
		if r.scenario.key == "a" {
			base = r
		}
	}
	ratio := func(m, a measurement) string {
		if a.p99 <= 0 || m.requests == m.errors {
			return "–"
		}
		return fmt.Sprintf("%.2f×", float64(m.p99)/float64(a.p99))
	}
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }
	var sb strings.Builder
	fmt.Fprintf(&sb, "Primary latency, %d requests/s for %v over %d keep-alive connections (client timeout %v), every request copied in (b)–(e):\n\n",
		l.rate, l.duration, l.conns, l.timeout)
	sb.WriteString("| scenario | nginx p50 | nginx p99 | nginx errors | nginx p99 ÷ (a) | shadowplane p50 | shadowplane p99 | shadowplane errors | shadowplane p99 ÷ (a) |\n")
	sb.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rows {
		fmt.Fprintf(&sb, "| (%s) %s | %s | %s | %d / %d | %s | %s | %s | %d / %d | %s |\n",
			r.scenario.key, r.scenario.name,
			ms(r.nginx.p50), ms(r.nginx.p99), r.nginx.errors, r.nginx.requests, ratio(r.nginx, base.nginx),
			ms(r.shadowplane.p50), ms(r.shadowplane.p99), r.shadowplane.errors, r.shadowplane.requests, ratio(r.shadowplane, base.shadowplane))
	}
	target := func(key string) (string, bool) {
		for _, r := range rows {
			if r.scenario.key == key {
				ok := r.shadowplane.errors == 0 && base.shadowplane.p99 > 0 &&
					float64(r.shadowplane.p99) <= 1.2*float64(base.shadowplane.p99)
				return fmt.Sprintf("(%s) %s with %d errors", key, ratio(r.shadowplane, base.shadowplane), r.shadowplane.errors), ok
			}
		}
		return "(" + key + ") not measured", false
	}
	c, okC := target("c")
	d, okD := target("d")
	verdict := "not met"
	if okC && okD {
		verdict = "met"
	}
	fmt.Fprintf(&sb, "\nTarget, shadowplane's p99 in (c) and (d) at most 1.2× its (a) with 0 errors: %s (%s; %s).\n", verdict, c, d)
	sb.WriteString("\nCopies the shadow received during the measurement: ")
	var parts []string
	for _, r := range rows {
		parts = append(parts, fmt.Sprintf("(%s) nginx %d, shadowplane %d", r.scenario.key, r.nginx.copies, r.shadowplane.copies))
	}
	sb.WriteString(strings.Join(parts, "; ") + ".\n")
	return sb.String()
}

// benchMachine describes the machine and the versions measured.
func benchMachine(nginx string) string {
	return fmt.Sprintf("Machine: %s, nginx %s.", harness.MachineDescription(testtools.Path("envoy")), harness.NginxVersion(nginx))
}

func envInt(b *testing.B, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		b.Fatalf("%s=%q: want a positive whole number", name, v)
	}
	return n
}

func envDuration(b *testing.B, name string, def time.Duration) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	d, err := time.ParseDuration(v)
	if err != nil || d <= 0 {
		b.Fatalf("%s=%q: want a duration such as 10s", name, v)
	}
	return d
}
