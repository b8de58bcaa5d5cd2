package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	metricsv3 "github.com/envoyproxy/go-control-plane/envoy/service/metrics/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	iopc "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"

	"github.com/shadowplane/shadowplane/integration/harness"
	"github.com/shadowplane/shadowplane/internal/copystats"
	"github.com/shadowplane/shadowplane/nodemeta"
	"github.com/shadowplane/shadowplane/statnames"
)

// BenchmarkCopyStatsOverhead measures what the copy metrics transport costs
// the control plane: the CPU and RSS of a real `shadowplane serve` process
// (TLS, TokenReview-verified identity, as deployed) while COPYSTATS_SIDECARS
// (default 1000) simulated sidecars stream a report every
// COPYSTATS_FLUSH (default 10s, the bootstrap's default), against the same
// sidecars connected with reporting off (and, for scale, no sidecars at
// all). Each simulated sidecar has its own Pod, token and TLS connection
// holding an ADS stream, as a real one does with or without reporting; the
// report is one more stream on that connection. It sends what a real Envoy
// sends: the report
// is built from the used stats of a real sidecar (Envoy's admin
// /stats?usedonly) after copying traffic, with its counters growing every
// flush at the configured share.
//
// With COPYSTATS_SVG=path it also writes an SVG picture of the dashboard's
// two top panels (configured vs observed share, copies/s) from the
// control plane's /metrics sampled during the run.
func BenchmarkCopyStatsOverhead(b *testing.B) {
	e := env(b)
	sidecars := envInt(b, "COPYSTATS_SIDECARS", 1000)
	flush := envDuration(b, "COPYSTATS_FLUSH", 10*time.Second)
	window := envDuration(b, "COPYSTATS_WINDOW", 60*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()

	ns := newNamespace(b, ctx)
	shadow, err := harness.StartBackend("shadow", e.endpointHost)
	must(b, err)
	defer shadow.Stop()
	primary, err := harness.StartBackend("primary", "127.0.0.1")
	must(b, err)
	defer primary.Stop()
	listenPort, err := harness.FreePort()
	must(b, err)
	must(b, e.kube.ApplyService(ctx, ns, "entrance", harness.ServicePort{Name: "http", Port: 80, TargetPort: int32(listenPort)}))
	must(b, e.kube.ApplyService(ctx, ns, "entrance-shadow", harness.ServicePort{Name: "http", Port: 8080, TargetPort: shadow.Port}))
	must(b, e.kube.ApplyEndpointSlice(ctx, ns, "entrance-shadow", "http", shadow.Port, harness.SliceEndpoint{Address: e.endpointHost, Ready: true}))
	must(b, e.kube.ApplyPolicyConfigMap(ctx, ns, "mirror-policies", "policies.yaml", policyYAML("25", "")))

	// The control plane, as a process of its own so its CPU and RSS are
	// its own.
	dir := b.TempDir()
	if out, err := exec.Command(e.shadowplane, "certgen", "--out-dir", dir, "--ip", "127.0.0.1").CombinedOutput(); err != nil {
		b.Fatalf("certgen: %v\n%s", err, out)
	}
	xdsPort, err := harness.FreePort()
	must(b, err)
	httpPort, err := harness.FreePort()
	must(b, err)
	debugPort, err := harness.FreePort()
	must(b, err)
	xdsAddr, httpURL := fmt.Sprintf("127.0.0.1:%d", xdsPort), fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	debugURL := fmt.Sprintf("http://127.0.0.1:%d", debugPort)
	proc := harness.StartProcessT(b, exec.Command(e.shadowplane, "serve", "--kubeconfig", e.kube.KubeconfigPath,
		"--namespaces", ns, "--xds-address", xdsAddr, "--http-address", strings.TrimPrefix(httpURL, "http://"),
		"--xds-tls-cert-file", filepath.Join(dir, "tls.crt"), "--xds-tls-key-file", filepath.Join(dir, "tls.key"),
		"--debug-address", strings.TrimPrefix(debugURL, "http://"),
		"--log-level", "warn", "--shutdown-delay", "0s"), filepath.Join(dir, "serve.log"))
	if err := harness.WaitUntil(ctx, 30*time.Second, func() (bool, error) {
		_, err := harness.GetJSON(ctx, httpURL+"/readyz")
		return err == nil, nil
	}); err != nil {
		b.Fatalf("serve never ready: %v\n%s", err, proc.Log())
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	must(b, err)

	// A real sidecar copies some traffic; its used stats are the report.
	template := realReport(b, ctx, ns, xdsAddr, filepath.Join(dir, "ca.crt"), listenPort, primary)

	idle := measureServe(b, ctx, httpURL, debugURL, window)
	b.Logf("no sidecars: %.4f cores, RSS %.1f MiB, live heap %.1f MiB", idle.cores, idle.rssMiB, idle.heapMiB)

	// Identities first (API server work, not the transport's), then the
	// streams.
	b.Logf("creating %d sidecar identities", sidecars)
	tokens := make([]string, sidecars)
	var wg sync.WaitGroup
	errs := make(chan error, sidecars)
	sem := make(chan struct{}, 8)
	for i := range sidecars {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			id, err := e.kube.NewSidecarIdentity(ctx, ns, "entrance", "entrance", fmt.Sprintf("sim-%d", i), filepath.Join(dir, "ids", fmt.Sprint(i)))
			if err != nil {
				errs <- err
				return
			}
			token, err := os.ReadFile(id.TokenFile)
			if err != nil {
				errs <- err
				return
			}
			tokens[i] = string(token)
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}

	// Every sidecar connects and holds its ADS stream, as a real one
	// does with or without reporting: the baseline.
	runCtx, stopSidecars := context.WithCancel(ctx)
	defer stopSidecars()
	conns := make([]*grpc.ClientConn, sidecars)
	for i := range sidecars {
		conn, err := harness.DialXDS(xdsAddr, caPEM, tokens[i])
		must(b, err)
		defer conn.Close()
		conns[i] = conn
		go holdADS(runCtx, conn, simNode(ns, i))
	}
	waitGauge(b, ctx, httpURL, "shadowplane_xds_connected_proxies", sidecars)
	time.Sleep(flush)
	off := measureServe(b, ctx, httpURL, debugURL, window)
	b.Logf("%d sidecars connected (TLS, one ADS stream each), reporting off: %.4f cores, RSS %.1f MiB, live heap %.1f MiB",
		sidecars, off.cores, off.rssMiB, off.heapMiB)

	var started sync.WaitGroup
	for i := range sidecars {
		started.Add(1)
		go simulateSidecar(runCtx, &started, i, conns[i], simNode(ns, i), template, flush)
	}
	started.Wait()
	// Every stream has sent its first report; wait one more flush so all
	// run in their steady state.
	waitGauge(b, ctx, httpURL, "shadowplane_copy_stats_streams", sidecars)
	time.Sleep(flush)

	var samples []dashboardSample
	sampler := startSampler(runCtx, httpURL, flush, &samples)
	on := measureServe(b, ctx, httpURL, debugURL, window)
	stopSidecars()
	sampler.Wait()
	b.Logf("reporting on (%d sidecars, one report each per %s): %.4f cores, RSS %.1f MiB, live heap %.1f MiB",
		sidecars, flush, on.cores, on.rssMiB, on.heapMiB)
	b.Logf("connected sidecars cost: %+.4f cores, %+.1f MiB RSS, %+.1f MiB live heap", off.cores-idle.cores, off.rssMiB-idle.rssMiB, off.heapMiB-idle.heapMiB)
	b.Logf("reporting overhead: %+.4f cores (%.2f ms CPU per report), %+.1f MiB RSS, %+.1f MiB live heap; report: %d metric families, %d bytes",
		on.cores-off.cores, (on.cores-off.cores)*flush.Seconds()*1000/float64(sidecars), on.rssMiB-off.rssMiB, on.heapMiB-off.heapMiB,
		len(template), proto.Size(&metricsv3.StreamMetricsMessage{EnvoyMetrics: template}))
	b.ReportMetric(on.cores-off.cores, "overhead-cores")
	b.ReportMetric(on.rssMiB-off.rssMiB, "overhead-rss-MiB")
	if path := os.Getenv("COPYSTATS_SVG"); path != "" {
		must(b, os.WriteFile(path, dashboardSVG(samples), 0o644))
		b.Logf("wrote %s from %d samples", path, len(samples))
	}
}

// realReport runs a real sidecar against the control plane, copies some
// traffic through it, and returns the stats Envoy would report: its used
// counters and gauges (as counters and gauges with their full names) and
// its used histograms (with Envoy's 20 default buckets).
func realReport(b *testing.B, ctx context.Context, ns, xdsAddr, caFile string, listenPort uint32, primary *harness.Backend) []*iopc.MetricFamily {
	e := env(b)
	dir := b.TempDir()
	id, err := e.kube.NewSidecarIdentity(ctx, ns, "entrance", "entrance", "real-"+ns, filepath.Join(dir, "id"))
	must(b, err)
	sc, err := harness.StartSidecar(ctx, harness.SidecarOptions{
		Shadowplane: e.shadowplane, Envoy: e.envoy, Dir: dir, XDSAddress: xdsAddr,
		NodeID: "real-" + ns, Namespace: ns, Service: "entrance", ListenPort: listenPort, AppPort: uint32(primary.Port),
		Secure: &harness.SidecarTLS{CAFile: caFile, TokenFile: id.TokenFile},
	})
	must(b, err)
	defer sc.Stop()
	client := harness.NewKeepAliveClient(4)
	if err := harness.WaitUntil(ctx, 20*time.Second, func() (bool, error) {
		n, err := sc.Stat(ctx, "cluster."+statnames.ShadowCluster(statnames.Mirror{Namespace: ns, Policy: "entrance-to-staging", Mirror: "staging"})+".membership_healthy")
		return n == 1, err
	}); err != nil {
		b.Fatalf("the real sidecar never got the shadow endpoint: %v", err)
	}
	res := harness.SendN(ctx, client, 400, 4, func(ctx context.Context, i int) *http.Request {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("http://127.0.0.1:%d/r/%d", listenPort, i), nil)
		return req
	})
	if res.Errors() != 0 {
		b.Fatalf("real sidecar: %d requests failed: %s", res.Errors(), res.FirstError())
	}
	body, err := sc.Get(ctx, "/stats?format=json&usedonly")
	must(b, err)
	var doc struct {
		Stats []struct {
			Name       string          `json:"name"`
			Value      json.RawMessage `json:"value"`
			Histograms *struct {
				ComputedQuantiles []struct {
					Name string `json:"name"`
				} `json:"computed_quantiles"`
			} `json:"histograms"`
		} `json:"stats"`
	}
	must(b, json.Unmarshal(body, &doc))
	counter, gauge, histogram := iopc.MetricType_COUNTER, iopc.MetricType_GAUGE, iopc.MetricType_HISTOGRAM
	var out []*iopc.MetricFamily
	for _, s := range doc.Stats {
		switch {
		case s.Histograms != nil:
			for _, q := range s.Histograms.ComputedQuantiles {
				out = append(out, &iopc.MetricFamily{Name: proto.String(q.Name), Type: &histogram,
					Metric: []*iopc.Metric{{Histogram: envoyHistogram(0)}}})
			}
		case s.Name != "":
			var v float64
			_ = json.Unmarshal(s.Value, &v)
			typ := &counter
			if s.Name == statnames.StatUptime || strings.Contains(s.Name, "active") || strings.Contains(s.Name, "remaining") {
				typ = &gauge
			}
			m := &iopc.Metric{Counter: &iopc.Counter{Value: proto.Float64(v)}}
			if typ == &gauge {
				m = &iopc.Metric{Gauge: &iopc.Gauge{Value: proto.Float64(v)}}
			}
			out = append(out, &iopc.MetricFamily{Name: proto.String(s.Name), Type: typ, Metric: []*iopc.Metric{m}})
		}
	}
	return out
}

// envoyBucketsMs are Envoy's default histogram bucket bounds.
var envoyBucketsMs = []float64{0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000}

// envoyHistogram is a cumulative histogram of n samples around 2 ms.
func envoyHistogram(n uint64) *iopc.Histogram {
	h := &iopc.Histogram{SampleCount: proto.Uint64(n), SampleSum: proto.Float64(2 * float64(n))}
	for _, bound := range envoyBucketsMs {
		c := uint64(0)
		if bound >= 1 {
			c = n / 2
		}
		if bound >= 5 {
			c = n
		}
		h.Bucket = append(h.Bucket, &iopc.Bucket{UpperBound: proto.Float64(bound), CumulativeCount: proto.Uint64(c)})
	}
	return h
}

// simulateSidecar streams a report every flush until ctx ends: the real
// report's families with this sidecar's node, its uptime, and its copy
// counters grown by 100 matched requests a second copied at 25 %.
func simulateSidecar(ctx context.Context, started *sync.WaitGroup, i int, conn *grpc.ClientConn, node *corev3.Node, template []*iopc.MetricFamily, flush time.Duration) {
	once := sync.OnceFunc(started.Done)
	defer once()
	var err error
	rng := rand.New(rand.NewPCG(uint64(i), 1))
	start := time.Now()
	var matched, copies float64
	ticker := time.NewTicker(flush)
	defer ticker.Stop()
	// Spread the fleet's reports over the interval, as real sidecars
	// started at different times are.
	first := time.NewTimer(time.Duration(rng.Int64N(int64(flush))))
	select {
	case <-ctx.Done():
		return
	case <-first.C:
	}
	// Like Envoy, open a stream when there is something to send and open
	// a new one at the next flush when it fails (the control plane turns
	// away streams beyond its new-stream rate).
	var stream metricsv3.MetricsService_StreamMetricsClient
	for {
		msg := &metricsv3.StreamMetricsMessage{EnvoyMetrics: make([]*iopc.MetricFamily, 0, len(template))}
		if stream == nil {
			if stream, err = metricsv3.NewMetricsServiceClient(conn).StreamMetrics(ctx); err != nil {
				if ctx.Err() != nil {
					return
				}
				stream = nil
			} else {
				msg.Identifier = &metricsv3.StreamMetricsMessage_Identifier{Node: node}
			}
		}
		uptime := time.Since(start).Seconds()
		newMatched := 100 * flush.Seconds()
		var newCopies float64
		for range int(newMatched) {
			if rng.Float64() < 0.25 {
				newCopies++
			}
		}
		matched += newMatched
		copies += newCopies
		for _, f := range template {
			name := f.GetName()
			st, isCopyStat := statnames.Parse(name)
			switch {
			case name == statnames.StatUptime:
				f = gaugeFamily(name, uptime)
			case isCopyStat && st.Kind == statnames.KindRoute:
				f = counterFamily(name, matched)
			case isCopyStat && st.Name == statnames.StatRequests, isCopyStat && st.Name == statnames.Stat2xx:
				f = counterFamily(name, copies)
			case isCopyStat && st.Name == statnames.StatLatency:
				f = &iopc.MetricFamily{Name: proto.String(name), Type: f.Type, Metric: []*iopc.Metric{{Histogram: envoyHistogram(uint64(copies))}}}
			}
			msg.EnvoyMetrics = append(msg.EnvoyMetrics, f)
		}
		if stream != nil {
			if err := stream.Send(msg); err != nil {
				stream = nil
			} else {
				once()
			}
		}
		select {
		case <-ctx.Done():
			if stream != nil {
				_, _ = stream.CloseAndRecv()
			}
			return
		case <-ticker.C:
		}
	}
}

func simNode(ns string, i int) *corev3.Node {
	return nodemeta.Metadata{NodeID: fmt.Sprintf("sim-%d", i), Namespace: ns, Service: "entrance",
		Ports: []nodemeta.PortPair{{Listen: 15001, App: 8080}}}.Node()
}

// holdADS opens an ADS stream, asks for the listeners and keeps reading
// (without ACKing: the control plane's work per push is the same) until
// ctx ends. Like Envoy, it opens a new stream after a random backoff when
// one ends (the control plane turns away streams beyond its new-stream
// rate).
func holdADS(ctx context.Context, conn *grpc.ClientConn, node *corev3.Node) {
	for ctx.Err() == nil {
		if stream, err := discoveryv3.NewAggregatedDiscoveryServiceClient(conn).StreamAggregatedResources(ctx); err == nil {
			if stream.Send(&discoveryv3.DiscoveryRequest{Node: node, TypeUrl: resourcev3.ListenerType}) == nil {
				for {
					if _, err := stream.Recv(); err != nil {
						break
					}
				}
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(500+rand.IntN(2000)) * time.Millisecond):
		}
	}
}

func counterFamily(name string, v float64) *iopc.MetricFamily {
	t := iopc.MetricType_COUNTER
	return &iopc.MetricFamily{Name: proto.String(name), Type: &t, Metric: []*iopc.Metric{{Counter: &iopc.Counter{Value: proto.Float64(v)}}}}
}

func gaugeFamily(name string, v float64) *iopc.MetricFamily {
	t := iopc.MetricType_GAUGE
	return &iopc.MetricFamily{Name: proto.String(name), Type: &t, Metric: []*iopc.Metric{{Gauge: &iopc.Gauge{Value: proto.Float64(v)}}}}
}

// serveUsage is the control plane's own view of its process.
type serveUsage struct {
	cores, rssMiB, heapMiB float64
}

// measureServe samples the process's CPU seconds over window (from its
// /metrics), its RSS at the end, and its live heap after a collection
// (pprof's heap profile with gc=1, on the debug listener).
func measureServe(b *testing.B, ctx context.Context, httpURL, debugURL string, window time.Duration) serveUsage {
	b.Helper()
	read := func() map[string]float64 {
		body, err := harness.GetJSON(ctx, httpURL+"/metrics")
		must(b, err)
		parser := expfmt.NewTextParser(model.UTF8Validation)
		families, err := parser.TextToMetricFamilies(bytes.NewReader(body))
		must(b, err)
		out := map[string]float64{}
		for _, name := range []string{"process_cpu_seconds_total", "process_resident_memory_bytes"} {
			if f := families[name]; f != nil {
				m := f.GetMetric()[0]
				out[name] = m.GetCounter().GetValue() + m.GetGauge().GetValue()
			}
		}
		return out
	}
	before, t0 := read(), time.Now()
	time.Sleep(window)
	after := read()
	cores := (after["process_cpu_seconds_total"] - before["process_cpu_seconds_total"]) / time.Since(t0).Seconds()
	heap, err := harness.GetJSON(ctx, debugURL+"/debug/pprof/heap?debug=1&gc=1")
	must(b, err)
	var live float64
	for _, line := range strings.Split(string(heap), "\n") {
		if v, ok := strings.CutPrefix(line, "# HeapAlloc = "); ok {
			_, err := fmt.Sscan(v, &live)
			must(b, err)
		}
	}
	return serveUsage{cores: cores, rssMiB: after["process_resident_memory_bytes"] / (1 << 20), heapMiB: live / (1 << 20)}
}

// waitGauge waits until the control plane's gauge reads n.
func waitGauge(b *testing.B, ctx context.Context, httpURL, gauge string, n int) {
	b.Helper()
	want := fmt.Sprintf("\n%s %d\n", gauge, n)
	if err := harness.WaitUntil(ctx, 2*time.Minute, func() (bool, error) {
		body, err := harness.GetJSON(ctx, httpURL+"/metrics")
		return err == nil && bytes.Contains(body, []byte(want)), nil
	}); err != nil {
		b.Fatalf("%s never reached %d: %v", gauge, n, err)
	}
}

// dashboardSample is one reading of the standard mirror's metrics.
type dashboardSample struct {
	at     time.Time
	mirror copystats.Mirror
}

func startSampler(ctx context.Context, httpURL string, every time.Duration, out *[]dashboardSample) *sync.WaitGroup {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(every)
		defer tick.Stop()
		for {
			if body, err := harness.GetJSON(ctx, httpURL+"/metrics"); err == nil {
				if mirrors, err := copystats.ReadMetrics(bytes.NewReader(body)); err == nil && len(mirrors) > 0 {
					*out = append(*out, dashboardSample{at: time.Now(), mirror: mirrors[0]})
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return &wg
}

// dashboardSVG draws the dashboard's two top panels from the samples:
// configured and observed share (each point over the last interval), and
// copies per second. Drawn here, not by Grafana: the same queries'
// arithmetic on the same counters.
func dashboardSVG(samples []dashboardSample) []byte {
	type point struct{ t, share, rate float64 }
	var pts []point
	var configured float64
	for i := 1; i < len(samples); i++ {
		d := samples[i].mirror.Sub(samples[i-1].mirror)
		secs := samples[i].at.Sub(samples[i-1].at).Seconds()
		if d.Matched <= 0 || secs <= 0 {
			continue
		}
		configured = samples[i].mirror.Configured
		pts = append(pts, point{t: samples[i].at.Sub(samples[0].at).Seconds(), share: d.Copies / d.Matched, rate: d.Copies / secs})
	}
	const w, h, pad = 420, 220, 40
	var maxT, maxRate float64
	for _, p := range pts {
		maxT, maxRate = math.Max(maxT, p.t), math.Max(maxRate, p.rate)
	}
	maxT, maxRate = math.Max(maxT, 1), math.Max(maxRate*1.2, 1)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">`+"\n", 2*w+20, h+30)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="#181b1f"/>`+"\n")
	panelSVG := func(x0 int, title string, maxY float64, label func(float64) string, series [][2]string) {
		fmt.Fprintf(&b, `<g transform="translate(%d,10)"><rect width="%d" height="%d" fill="#22252b" stroke="#333"/>`, x0, w, h)
		fmt.Fprintf(&b, `<text x="8" y="16" fill="#ccc" font-weight="bold">%s</text>`, title)
		for i := 0; i <= 4; i++ {
			y := float64(h-pad) - float64(i)*float64(h-2*pad)/4
			fmt.Fprintf(&b, `<line x1="%d" x2="%d" y1="%.1f" y2="%.1f" stroke="#333"/><text x="4" y="%.1f" fill="#888">%s</text>`,
				pad, w-10, y, y, y+4, label(maxY*float64(i)/4))
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#888">time (s, 0..%.0f)</text>`, w/2-40, h-8, maxT)
		for si, s := range series {
			color, name := s[0], s[1]
			var path strings.Builder
			for i, p := range pts {
				v := p.rate
				switch name {
				case "observed":
					v = p.share
				case "configured":
					v = configured
				}
				x := float64(pad) + p.t/maxT*float64(w-pad-10)
				y := float64(h-pad) - v/maxY*float64(h-2*pad)
				cmd := "L"
				if i == 0 {
					cmd = "M"
				}
				fmt.Fprintf(&path, "%s%.1f,%.1f ", cmd, x, y)
			}
			fmt.Fprintf(&b, `<path d="%s" fill="none" stroke="%s" stroke-width="2"/>`, path.String(), color)
			fmt.Fprintf(&b, `<text x="%d" y="%d" fill="%s">%s</text>`, w-150, 16+14*si, color, name)
		}
		b.WriteString("</g>\n")
	}
	panelSVG(10, "Configured vs observed share", 0.5, func(v float64) string { return fmt.Sprintf("%.1f%%", v*100) },
		[][2]string{{"#73bf69", "configured"}, {"#f2cc0c", "observed"}})
	panelSVG(w+20, "Copies per second (all sidecars)", maxRate, func(v float64) string { return fmt.Sprintf("%.0f", v) },
		[][2]string{{"#5794f2", "copies/s"}})
	b.WriteString("</svg>\n")
	return []byte(b.String())
}
