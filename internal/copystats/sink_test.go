package copystats

import (
	"bytes"
	"context"
	"math"
	"net"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	metricsv3 "github.com/envoyproxy/go-control-plane/envoy/service/metrics/v3"
	"github.com/prometheus/client_golang/prometheus"
	iopc "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/shadowplane/shadowplane/nodemeta"
	"github.com/shadowplane/shadowplane/policy"
	"github.com/shadowplane/shadowplane/statnames"
	"github.com/shadowplane/shadowplane/translator"
)

const ns = "shop"

var staging = statnames.Mirror{Namespace: ns, Policy: "to-staging", Mirror: "staging"}

func world(percentPPM uint32) *translator.World {
	return &translator.World{Policies: []*policy.Policy{{
		Namespace: ns, Name: "to-staging", Service: "entrance",
		Mirrors: []policy.Mirror{{Name: "staging", Service: "entrance", Namespace: "staging", PartsPerMillion: percentPPM}},
	}, {
		Namespace: ns, Name: "other-service", Service: "checkout",
		Mirrors: []policy.Mirror{{Name: "staging", Service: "checkout", Namespace: "staging", PartsPerMillion: percentPPM}},
	}}}
}

// report is one sidecar report: uptime, matched requests of the
// to-staging route, and cluster stats of the staging mirror.
type report struct {
	uptime   float64
	matched  float64
	clusters map[string]float64
	// latency: cumulative counts by upper bound in ms.
	latency map[float64]uint64
}

func (r report) families() []*iopc.MetricFamily {
	gauge, counter, histogram := iopc.MetricType_GAUGE, iopc.MetricType_COUNTER, iopc.MetricType_HISTOGRAM
	out := []*iopc.MetricFamily{{
		Name: proto.String(statnames.StatUptime), Type: &gauge,
		Metric: []*iopc.Metric{{Gauge: &iopc.Gauge{Value: proto.Float64(r.uptime)}}},
	}, {
		Name: proto.String("vhost.inbound|15001.route." + statnames.RouteStatPrefix(ns, []string{"to-staging"}) + ".upstream_rq_total"), Type: &counter,
		Metric: []*iopc.Metric{{Counter: &iopc.Counter{Value: proto.Float64(r.matched)}}},
	}, {
		// Not shadowplane's: ignored without a word.
		Name: proto.String("cluster.app|8080.upstream_rq_total"), Type: &counter,
		Metric: []*iopc.Metric{{Counter: &iopc.Counter{Value: proto.Float64(1e6)}}},
	}}
	for stat, v := range r.clusters {
		out = append(out, &iopc.MetricFamily{
			Name: proto.String("cluster." + statnames.ShadowCluster(staging) + "." + stat), Type: &counter,
			Metric: []*iopc.Metric{{Counter: &iopc.Counter{Value: proto.Float64(v)}}},
		})
	}
	if r.latency != nil {
		h := &iopc.Histogram{}
		var count uint64
		for bound, n := range r.latency {
			h.Bucket = append(h.Bucket, &iopc.Bucket{UpperBound: proto.Float64(bound), CumulativeCount: proto.Uint64(n)})
			count = max(count, n)
		}
		h.SampleCount = proto.Uint64(count)
		h.SampleSum = proto.Float64(float64(count))
		out = append(out, &iopc.MetricFamily{
			Name: proto.String("cluster." + statnames.ShadowCluster(staging) + "." + statnames.StatLatency), Type: &histogram,
			Metric: []*iopc.Metric{{Histogram: h}},
		})
	}
	return out
}

type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

func newTestSink(t *testing.T, perPod bool) (*Sink, *prometheus.Registry, *clock) {
	t.Helper()
	c := &clock{now: time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)}
	reg := prometheus.NewRegistry()
	s := New(Options{Registry: reg, Now: c.Now, PerPod: perPod})
	s.SetWorld(world(250_000))
	return s, reg, c
}

var entrance = nodemeta.NodeGroup{Namespace: ns, Service: "entrance"}

// read gathers the registry and returns the staging mirror's metrics.
func read(t *testing.T, reg *prometheus.Registry) Mirror {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	for _, f := range families {
		if _, err := expfmt.MetricFamilyToText(&b, f); err != nil {
			t.Fatal(err)
		}
	}
	mirrors, err := ReadMetrics(&b)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range mirrors {
		if m.Namespace == ns && m.Policy == "to-staging" && m.Mirror == "staging" {
			return m
		}
	}
	t.Fatalf("no metrics for %v in %v", staging, mirrors)
	return Mirror{}
}

func TestSumsAcrossSidecarsAndCountsGrowthOnly(t *testing.T) {
	s, reg, c := newTestSink(t, false)
	s.open("a", entrance)
	s.open("b", entrance)
	s.record("a", report{uptime: 5, matched: 100, clusters: map[string]float64{statnames.StatRequests: 25, statnames.Stat2xx: 20, statnames.Stat5xx: 5}}.families())
	s.record("b", report{uptime: 7, matched: 40, clusters: map[string]float64{statnames.StatRequests: 10, statnames.Stat2xx: 10}}.families())
	c.now = c.now.Add(10 * time.Second)
	// a reports its totals again, grown; b reports the same totals.
	s.record("a", report{uptime: 15, matched: 180, clusters: map[string]float64{statnames.StatRequests: 45, statnames.Stat2xx: 38, statnames.Stat5xx: 7}}.families())
	s.record("b", report{uptime: 17, matched: 40, clusters: map[string]float64{statnames.StatRequests: 10, statnames.Stat2xx: 10}}.families())

	m := read(t, reg)
	if m.Matched != 220 || m.Copies != 55 || m.Responses["2xx"] != 48 || m.Responses["5xx"] != 7 || m.Configured != 0.25 || m.Sidecars != 2 {
		t.Errorf("got %+v, want matched 220, copies 55, 2xx 48, 5xx 7, configured 0.25, 2 sidecars", m)
	}
}

func TestRestartReconnectAndBaseline(t *testing.T) {
	tests := []struct {
		name    string
		reports []report
		// gap is the time between reports.
		gap         time.Duration
		reconnect   bool
		wantMatched float64
	}{
		{name: "restart: totals start from zero, sums keep growing",
			reports: []report{{uptime: 5, matched: 100}, {uptime: 15, matched: 300}, {uptime: 2, matched: 30}, {uptime: 12, matched: 50}},
			gap:     10 * time.Second, wantMatched: 350},
		{name: "reconnect of the same Envoy: nothing counted twice",
			reports: []report{{uptime: 5, matched: 100}, {uptime: 15, matched: 300}, {uptime: 25, matched: 310}},
			gap:     10 * time.Second, reconnect: true, wantMatched: 310},
		{name: "first seen after running for an hour: a baseline, then growth",
			reports: []report{{uptime: 3600, matched: 1_000_000}, {uptime: 3610, matched: 1_000_070}},
			gap:     10 * time.Second, wantMatched: 70},
		{name: "values that are no counter's total are ignored",
			reports: []report{{uptime: 5, matched: 100}, {uptime: 15, matched: math.NaN()}, {uptime: 25, matched: -5}, {uptime: 35, matched: 130}},
			gap:     10 * time.Second, wantMatched: 130},
		{name: "restart within the slack, first report already past the old total: the uptime went back",
			reports: []report{{uptime: 3, matched: 100}, {uptime: 2, matched: 120}},
			gap:     time.Second, wantMatched: 220},
		{name: "restart within the slack: a lower total still counts from zero",
			reports: []report{{uptime: 5, matched: 100}, {uptime: 1, matched: 10}},
			gap:     time.Second, wantMatched: 110},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, reg, c := newTestSink(t, false)
			s.open("a", entrance)
			for i, r := range tt.reports {
				if tt.reconnect && i == len(tt.reports)-1 {
					s.close("a")
					s.open("a", entrance)
				}
				s.record("a", r.families())
				c.now = c.now.Add(tt.gap)
			}
			if m := read(t, reg); m.Matched != tt.wantMatched {
				t.Errorf("matched = %v, want %v", m.Matched, tt.wantMatched)
			}
		})
	}
}

// TestOnlyItsOwnPolicies: a sidecar's stats count only for policies of its
// own Service in its own namespace; stats of mirrors not in force are
// ignored and counted as such.
func TestOnlyItsOwnPolicies(t *testing.T) {
	s, reg, _ := newTestSink(t, false)
	s.open("checkout-pod", nodemeta.NodeGroup{Namespace: ns, Service: "checkout"})
	s.open("other-ns", nodemeta.NodeGroup{Namespace: "elsewhere", Service: "entrance"})
	r := report{uptime: 1, matched: 100, clusters: map[string]float64{statnames.StatRequests: 50}}
	s.record("checkout-pod", r.families())
	s.record("other-ns", r.families())
	if m := read(t, reg); m.Matched != 0 || m.Copies != 0 {
		t.Errorf("another Service's sidecars moved the counts: %+v", m)
	}
	families, _ := reg.Gather()
	for _, f := range families {
		if f.GetName() == "shadowplane_copy_stats_ignored_total" && f.GetMetric()[0].GetCounter().GetValue() != 4 {
			t.Errorf("ignored = %v, want 4 (route and cluster stat, two sidecars)", f.GetMetric()[0].GetCounter().GetValue())
		}
	}
}

func TestDropsFailuresAndLocalReplies(t *testing.T) {
	s, reg, _ := newTestSink(t, false)
	s.open("a", entrance)
	s.record("a", report{uptime: 1, matched: 100, clusters: map[string]float64{
		statnames.StatRequests: 20, statnames.Stat2xx: 10, statnames.Stat4xx: 1, statnames.Stat5xx: 14,
		// Envoy's own replies, also charged to 5xx.
		statnames.StatNoHealthy: 4, statnames.StatConnectFail: 2, statnames.StatPendingOverflow: 1,
		statnames.StatResetRx: 1,
		// Bodies over the limit: 3 abandoned on a connection, 1 while
		// waiting; one more connection ended by the 30 s cap.
		statnames.StatDestroyedWithRequest: 4, statnames.StatCancelled: 1, statnames.StatMaxDuration: 1,
	}}.families())
	m := read(t, reg)
	want := Mirror{Copies: 28, Responses: map[string]float64{"2xx": 10, "3xx": 0, "4xx": 1, "5xx": 7},
		Dropped:  map[string]float64{DropOverflow: 1, DropNoHealthy: 4, DropBodyTooLarge: 4},
		Failures: map[string]float64{FailConnect: 2, FailTimeout: 1, FailReset: 1}}
	if m.Copies != want.Copies {
		t.Errorf("copies = %v, want %v (sent, overflow, no healthy, connect failures, cancelled)", m.Copies, want.Copies)
	}
	for name, pair := range map[string][2]map[string]float64{"responses": {m.Responses, want.Responses}, "dropped": {m.Dropped, want.Dropped}, "failures": {m.Failures, want.Failures}} {
		for k, v := range pair[1] {
			if pair[0][k] != v {
				t.Errorf("%s[%s] = %v, want %v", name, k, pair[0][k], v)
			}
		}
	}
}

func TestLatencyHistogramInSeconds(t *testing.T) {
	s, reg, _ := newTestSink(t, false)
	s.open("a", entrance)
	s.record("a", report{uptime: 1, latency: map[float64]uint64{1: 10, 5: 90, 25: 100}}.families())
	s.record("b", report{uptime: 1, latency: map[float64]uint64{1: 50}}.families()) // never opened: ignored
	m := read(t, reg)
	if m.LatencyCount != 100 || m.LatencyBuckets[0.005] != 90 {
		t.Errorf("latency = %v samples, buckets %v; want 100 and 90 under 5ms", m.LatencyCount, m.LatencyBuckets)
	}
	if p99 := Quantile(0.99, m.LatencyBuckets, m.LatencyCount); p99 < 0.005 || p99 > 0.025 {
		t.Errorf("p99 = %v, want between 5 and 25 ms", p99)
	}
}

func TestRemovedPolicyIsForgotten(t *testing.T) {
	s, reg, _ := newTestSink(t, false)
	s.open("a", entrance)
	s.record("a", report{uptime: 1, matched: 10}.families())
	s.SetWorld(&translator.World{})
	families, _ := reg.Gather()
	for _, f := range families {
		if f.GetName() == MetricMatched || f.GetName() == MetricConfigured {
			t.Errorf("%s still exported after the policy was removed", f.GetName())
		}
	}
}

func TestPerPodLabel(t *testing.T) {
	s, reg, _ := newTestSink(t, true)
	s.open("a", entrance)
	s.open("b", entrance)
	s.record("a", report{uptime: 1, matched: 10}.families())
	s.record("b", report{uptime: 1, matched: 20}.families())
	families, _ := reg.Gather()
	pods := map[string]float64{}
	for _, f := range families {
		if f.GetName() == MetricMatched {
			for _, m := range f.GetMetric() {
				pods[labelMap(m)["pod"]] = m.GetCounter().GetValue()
			}
		}
	}
	if pods["a"] != 10 || pods["b"] != 20 || len(pods) != 2 {
		t.Errorf("matched by pod = %v, want a:10 b:20", pods)
	}
}

// TestStreamChecksTheNode: over gRPC, the first message's node goes through
// Verify before anything counts; a refusal ends the stream with Verify's
// status.
func TestStreamChecksTheNode(t *testing.T) {
	reg := prometheus.NewRegistry()
	var verified []string
	s := New(Options{Registry: reg, Verify: func(_ context.Context, node *corev3.Node) (nodemeta.NodeGroup, error) {
		verified = append(verified, node.GetId())
		if node.GetId() == "intruder" {
			return nodemeta.NodeGroup{}, status.Error(codes.PermissionDenied, "not yours")
		}
		return entrance, nil
	}})
	s.SetWorld(world(250_000))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	s.Register(g)
	go func() { _ = g.Serve(lis) }()
	t.Cleanup(g.Stop)
	conn, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	client := metricsv3.NewMetricsServiceClient(conn)

	send := func(id string, reports ...report) error {
		stream, err := client.StreamMetrics(context.Background())
		if err != nil {
			return err
		}
		for i, r := range reports {
			msg := &metricsv3.StreamMetricsMessage{EnvoyMetrics: r.families()}
			if i == 0 {
				msg.Identifier = &metricsv3.StreamMetricsMessage_Identifier{Node: &corev3.Node{Id: id}}
			}
			if err := stream.Send(msg); err != nil {
				break
			}
		}
		_, err = stream.CloseAndRecv()
		return err
	}
	if err := send("entrance-1", report{uptime: 1, matched: 10}, report{uptime: 2, matched: 25}); err != nil {
		t.Fatal(err)
	}
	// A stream flooding reports is read at most reportBurst times at once
	// (plus one a second); the totals still count.
	flood := []report{}
	for range 30 {
		flood = append(flood, report{uptime: 1, matched: 500})
	}
	if err := send("entrance-2", flood...); err != nil {
		t.Fatal(err)
	}
	if err := send("intruder", report{uptime: 1, matched: 1000}); status.Code(err) != codes.PermissionDenied {
		t.Errorf("intruder's stream ended with %v, want PermissionDenied", err)
	}
	if err := send("", report{uptime: 1, matched: 1000}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("a stream without node ended with %v, want InvalidArgument", err)
	}
	if m := read(t, reg); m.Matched != 525 {
		t.Errorf("matched = %v, want 525 (entrance-1's 25, entrance-2's 500)", m.Matched)
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == "shadowplane_copy_stats_reports_skipped_total" {
			if skipped := f.GetMetric()[0].GetCounter().GetValue(); skipped < 30-reportBurst-3 {
				t.Errorf("skipped %v of 30 flooding reports, want at least %d", skipped, 30-reportBurst-3)
			}
		}
	}
	if len(verified) != 3 {
		t.Errorf("verified %q, want each stream with a node once", verified)
	}
}

// TestTLSFailures: Envoy's per-connection TLS counters become
// shadowplane_copy_tls_failures_total by reason, apart from the copies'
// failures, and TLS() sums them per mirror across sidecars, growth only.
func TestTLSFailures(t *testing.T) {
	s, reg, _ := newTestSink(t, true)
	s.open("a", entrance)
	s.open("b", entrance)
	tlsStats := func(verify, handshakeErr, ok float64) map[string]float64 {
		return map[string]float64{statnames.StatConnectFail: verify + handshakeErr,
			statnames.StatTLSVerifyFail: verify, statnames.StatTLSConnectionError: handshakeErr, statnames.StatTLSHandshake: ok}
	}
	s.record("a", report{uptime: 1, clusters: tlsStats(3, 0, 0)}.families())
	s.record("b", report{uptime: 1, clusters: tlsStats(1, 2, 5)}.families())
	s.record("a", report{uptime: 2, clusters: tlsStats(4, 0, 0)}.families())

	m := read(t, reg)
	want := map[string]float64{TLSVerify: 5, TLSHandshake: 2}
	for reason, n := range want {
		if m.TLSFailures[reason] != n {
			t.Errorf("tls failures[%s] = %v, want %v (all %v)", reason, m.TLSFailures[reason], n, m.TLSFailures)
		}
	}
	if m.Failures[FailConnect] != 7 || m.Errors() != 7 {
		t.Errorf("connect failures %v, errors %v; want 7 and 7 (TLS failures are connections, not more copies)", m.Failures[FailConnect], m.Errors())
	}
	got := s.TLS()
	if len(got) != 1 || got[staging] != (TLSCounts{VerifyFailures: 5, HandshakeFailures: 2, Handshakes: 5}) {
		t.Errorf("TLS() = %+v, want only %v with 5 verify, 2 handshake failures, 5 handshakes", got, staging)
	}
}
