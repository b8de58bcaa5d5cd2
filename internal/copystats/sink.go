// Package copystats is the control plane's side of the copy metrics: a gRPC
// Envoy metrics service that every sidecar streams its copy stats to (over
// the xDS connection, with its identity checked as for ADS), the sum of
// those stats across the fleet per namespace, policy and mirror, and the
// Prometheus metrics that show it, configured share beside observed.
//
// Envoy reports totals since it started. The sink remembers, per sidecar,
// the last total of each series and adds only the growth, so the fleet's
// counters never go down when a sidecar restarts or reconnects.
package copystats

import (
	"context"
	"errors"
	"io"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	metricsv3 "github.com/envoyproxy/go-control-plane/envoy/service/metrics/v3"
	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	iopc "github.com/prometheus/client_model/go"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/shadowplane/shadowplane/internal/logging"
	"github.com/shadowplane/shadowplane/nodemeta"
	"github.com/shadowplane/shadowplane/statnames"
	"github.com/shadowplane/shadowplane/translator"
)

// reportsPerSecond and reportBurst bound how often one stream's reports
// are read (the bootstrap sends one every 10 s by default).
const (
	reportsPerSecond = 1
	reportBurst      = 5
)

// Defaults for Options.
const (
	// DefaultFreshStart: an Envoy first seen with less uptime than this is
	// counted from zero; one that has run longer is taken as a baseline
	// (another replica, or this process before a restart, counted it).
	DefaultFreshStart = time.Minute
	// DefaultSidecarTTL is how long the sink remembers a sidecar whose
	// stream closed, so a reconnect continues its counts.
	DefaultSidecarTTL = 10 * time.Minute
)

// Options configure a Sink.
type Options struct {
	// Verify checks a stream's node like an ADS stream's (xds.Server's
	// VerifyNode) and returns its group; nil trusts the node as claimed
	// (--insecure-xds only).
	Verify func(ctx context.Context, node *corev3.Node) (nodemeta.NodeGroup, error)
	// Registry receives the copy metrics.
	Registry prometheus.Registerer
	Logger   hclog.Logger
	// PerPod adds a "pod" label (the sidecar's node id) to every copy
	// metric: one series per sidecar, for debugging a few pods. Off by
	// default, so cardinality follows the policies, not the fleet.
	PerPod bool
	// Synced, when set, counts by "namespace/service" the sidecars whose
	// xDS config is in sync (xds.Server's SyncedProxies), for
	// shadowplane_copy_sidecars_in_sync.
	Synced     func() map[string]int
	FreshStart time.Duration
	SidecarTTL time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Sink receives sidecars' stats and sums them.
type Sink struct {
	metricsv3.UnimplementedMetricsServiceServer

	verify     func(ctx context.Context, node *corev3.Node) (nodemeta.NodeGroup, error)
	synced     func() map[string]int
	log        hclog.Logger
	perPod     bool
	freshStart time.Duration
	ttl        time.Duration
	now        func() time.Time

	messages prometheus.Counter
	ignored  prometheus.Counter
	skipped  prometheus.Counter
	streams  prometheus.Gauge

	mu       sync.Mutex
	policies map[policyRef]*policyInfo
	sidecars map[string]*sidecar
	totals   map[seriesLabels]*mirrorTotals
}

type policyRef struct{ namespace, name string }

// policyInfo is what the sink needs of a policy in force.
type policyInfo struct {
	service string
	// mirrors are the policy's mirror names and shares (parts per
	// million), in policy order.
	mirrors []mirrorShare
}

type mirrorShare struct {
	name string
	ppm  uint32
}

// seriesLabels are the labels of one mirror's copy metrics; pod is set
// only with PerPod.
type seriesLabels struct {
	namespace, policy, mirror, pod string
}

// mirrorTotals are one mirror's sums across sidecars.
type mirrorTotals struct {
	matched  float64
	counters map[string]float64 // by statnames cluster stat
	// latency: count, sum in milliseconds, and cumulative counts by upper
	// bound in milliseconds, as Envoy sends them.
	latencyCount, latencySumMs float64
	latencyBuckets             map[float64]float64
}

// New builds a Sink and registers its metrics.
func New(o Options) *Sink {
	s := &Sink{
		verify:     o.Verify,
		synced:     o.Synced,
		log:        o.Logger,
		perPod:     o.PerPod,
		freshStart: o.FreshStart,
		ttl:        o.SidecarTTL,
		now:        o.Now,
		policies:   map[policyRef]*policyInfo{},
		sidecars:   map[string]*sidecar{},
		totals:     map[seriesLabels]*mirrorTotals{},
		messages: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shadowplane_copy_stats_reports_total",
			Help: "Stats reports received from sidecars (one per sidecar per flush interval).",
		}),
		ignored: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shadowplane_copy_stats_ignored_total",
			Help: "Reported copy stats ignored: their policy or mirror is not in force, or belongs to another Service than the reporting sidecar's.",
		}),
		skipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shadowplane_copy_stats_reports_skipped_total",
			Help: "Reports not read because their stream sent more than one a second (the next report's totals include them).",
		}),
		streams: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "shadowplane_copy_stats_streams",
			Help: "Open stats streams from sidecars.",
		}),
	}
	if s.log == nil {
		s.log = hclog.NewNullLogger()
	}
	if s.freshStart <= 0 {
		s.freshStart = DefaultFreshStart
	}
	if s.ttl <= 0 {
		s.ttl = DefaultSidecarTTL
	}
	if s.now == nil {
		s.now = time.Now
	}
	if o.Registry != nil {
		o.Registry.MustRegister(s.messages, s.ignored, s.skipped, s.streams, collector{s})
	}
	return s
}

// Register serves the Envoy metrics service on g.
func (s *Sink) Register(g *grpc.Server) {
	metricsv3.RegisterMetricsServiceServer(g, s)
}

// SetWorld tells the sink which policies and mirrors are in force: only
// their stats are counted, and the sums of removed ones are forgotten.
func (s *Sink) SetWorld(w *translator.World) {
	policies := map[policyRef]*policyInfo{}
	if w != nil {
		for _, p := range w.Policies {
			info := &policyInfo{service: p.Service}
			for _, m := range p.Mirrors {
				info.mirrors = append(info.mirrors, mirrorShare{name: m.Name, ppm: m.PartsPerMillion})
			}
			policies[policyRef{p.Namespace, p.Name}] = info
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.policies = policies
	for l := range s.totals {
		if !s.mirrorInForce(l.namespace, l.policy, l.mirror) {
			delete(s.totals, l)
		}
	}
}

func (s *Sink) mirrorInForce(namespace, policyName, mirror string) bool {
	info := s.policies[policyRef{namespace, policyName}]
	if info == nil {
		return false
	}
	for _, m := range info.mirrors {
		if m.name == mirror {
			return true
		}
	}
	return false
}

// StreamMetrics receives one sidecar's reports. Its node comes with the
// first message only, and is checked before anything is counted.
func (s *Sink) StreamMetrics(stream grpc.ClientStreamingServer[metricsv3.StreamMetricsMessage, metricsv3.StreamMetricsResponse]) error {
	msg, err := stream.Recv()
	if err != nil {
		return endOfStream(err)
	}
	node := msg.GetIdentifier().GetNode()
	if node.GetId() == "" {
		return status.Error(codes.InvalidArgument, "shadowplane: the first stats message carries no node id")
	}
	group, err := s.verifyNode(stream.Context(), node)
	if err != nil {
		return err
	}
	id := node.GetId()
	s.open(id, group)
	defer s.close(id)
	// Reports carry totals, so one skipped costs nothing but a later
	// reading: a sidecar flushing far faster than any bootstrap sets is
	// held to reportsPerSecond instead of costing the control plane CPU.
	limiter := rate.NewLimiter(reportsPerSecond, reportBurst)
	for {
		if limiter.Allow() {
			s.record(id, msg.GetEnvoyMetrics())
		} else {
			s.skipped.Inc()
		}
		if msg, err = stream.Recv(); err != nil {
			if errors.Is(err, io.EOF) {
				return stream.SendAndClose(&metricsv3.StreamMetricsResponse{})
			}
			return endOfStream(err)
		}
	}
}

func (s *Sink) verifyNode(ctx context.Context, node *corev3.Node) (nodemeta.NodeGroup, error) {
	if s.verify != nil {
		return s.verify(ctx, node)
	}
	group, err := nodemeta.GroupFromNode(node)
	if err != nil {
		return nodemeta.NodeGroup{}, status.Errorf(codes.InvalidArgument, "shadowplane: %v", err)
	}
	return group, nil
}

func endOfStream(err error) error {
	if errors.Is(err, io.EOF) || status.Code(err) == codes.Canceled {
		return nil
	}
	return err
}

func (s *Sink) open(id string, group nodemeta.NodeGroup) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sc := s.sidecars[id]
	if sc == nil || sc.namespace != group.Namespace || sc.service != group.Service {
		sc = &sidecar{namespace: group.Namespace, service: group.Service, last: map[string]float64{}}
		s.sidecars[id] = sc
	}
	sc.streams++
	sc.lastSeen = s.now()
	s.streams.Inc()
	s.log.Debug("stats stream opened", "node", logging.Cut(id, 256))
}

func (s *Sink) close(id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if sc := s.sidecars[id]; sc != nil {
		sc.streams--
		sc.lastSeen = s.now()
	}
	s.streams.Dec()
}

// record adds one report's growth to the sums.
func (s *Sink) record(id string, families []*iopc.MetricFamily) {
	s.messages.Inc()
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	sc := s.sidecars[id]
	if sc == nil {
		return
	}
	uptime, hasUptime := uptimeOf(families)
	firstReport := sc.start.IsZero() && len(sc.last) == 0
	if sc.observeStart(now, uptime, hasUptime) {
		s.log.Info("sidecar restarted: its stats count from zero again", "node", logging.Cut(id, 256))
		clear(sc.last)
	}
	// The first report of an Envoy that has run for a while is only a
	// base: what it counted before may have been counted elsewhere.
	baseline := firstReport && (!hasUptime || time.Duration(uptime*float64(time.Second)) >= s.freshStart)
	sc.lastSeen = now

	ignored := 0
	for _, f := range families {
		st, ok := statnames.Parse(f.GetName())
		if !ok || len(f.GetMetric()) == 0 {
			continue
		}
		m := f.GetMetric()[0]
		switch st.Kind {
		case statnames.KindRoute:
			if !s.addMatched(sc, id, st, sc.increment(f.GetName(), m.GetCounter().GetValue(), baseline)) {
				ignored++
			}
		case statnames.KindCluster:
			if !s.addCluster(sc, id, st, f, m, baseline) {
				ignored++
			}
		}
	}
	s.ignored.Add(float64(ignored))
}

// authorized reports whether a sidecar may report for a policy: the policy
// is in force and copies requests of the sidecar's own Service.
func (s *Sink) authorized(sc *sidecar, namespace, policyName string) (*policyInfo, bool) {
	info := s.policies[policyRef{namespace, policyName}]
	if info == nil || namespace != sc.namespace || info.service != sc.service {
		return nil, false
	}
	return info, true
}

func (s *Sink) addMatched(sc *sidecar, id string, st statnames.Stat, delta float64) bool {
	all := true
	for _, p := range st.Policies {
		info, ok := s.authorized(sc, st.Namespace, p)
		if !ok {
			all = false
			continue
		}
		for _, m := range info.mirrors {
			s.totalsFor(seriesLabels{st.Namespace, p, m.name, s.pod(id)}).matched += delta
		}
	}
	return all
}

func (s *Sink) addCluster(sc *sidecar, id string, st statnames.Stat, f *iopc.MetricFamily, m *iopc.Metric, baseline bool) bool {
	if _, ok := s.authorized(sc, st.Mirror.Namespace, st.Mirror.Policy); !ok || !s.mirrorInForce(st.Mirror.Namespace, st.Mirror.Policy, st.Mirror.Mirror) {
		return false
	}
	t := s.totalsFor(seriesLabels{st.Mirror.Namespace, st.Mirror.Policy, st.Mirror.Mirror, s.pod(id)})
	if f.GetType() == iopc.MetricType_HISTOGRAM {
		count, sum, buckets := sc.histogramIncrements(f.GetName(), m.GetHistogram(), baseline)
		t.latencyCount += count
		t.latencySumMs += sum
		for bound, n := range buckets {
			t.latencyBuckets[bound] += n
		}
		return true
	}
	t.counters[st.Name] += sc.increment(f.GetName(), m.GetCounter().GetValue(), baseline)
	return true
}

func (s *Sink) pod(id string) string {
	if s.perPod {
		return id
	}
	return ""
}

func (s *Sink) totalsFor(l seriesLabels) *mirrorTotals {
	t := s.totals[l]
	if t == nil {
		t = &mirrorTotals{counters: map[string]float64{}, latencyBuckets: map[float64]float64{}}
		s.totals[l] = t
	}
	return t
}

// forgetIdle drops sidecars with no open stream for longer than the TTL.
// Called with mu held.
func (s *Sink) forgetIdle(now time.Time) {
	for id, sc := range s.sidecars {
		if sc.streams <= 0 && now.Sub(sc.lastSeen) > s.ttl {
			delete(s.sidecars, id)
		}
	}
}

// TLSCounts are one mirror's TLS connection counts across its sidecars,
// totals since this control plane started counting them.
type TLSCounts struct {
	// VerifyFailures: Envoy refused the target's certificate.
	VerifyFailures float64
	// HandshakeFailures: other TLS failures, e.g. the target refused the
	// handshake.
	HandshakeFailures float64
	// Handshakes that succeeded.
	Handshakes float64
}

// TLS returns the TLS counts of every mirror in force that has any, summed
// over pods. It holds the sink's lock only to copy them.
func (s *Sink) TLS() map[statnames.Mirror]TLSCounts {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[statnames.Mirror]TLSCounts{}
	for l, t := range s.totals {
		c := TLSCounts{
			VerifyFailures:    t.counters[statnames.StatTLSVerifyFail],
			HandshakeFailures: t.counters[statnames.StatTLSConnectionError],
			Handshakes:        t.counters[statnames.StatTLSHandshake],
		}
		if c == (TLSCounts{}) {
			continue
		}
		m := statnames.Mirror{Namespace: l.namespace, Policy: l.policy, Mirror: l.mirror}
		sum := out[m]
		sum.VerifyFailures += c.VerifyFailures
		sum.HandshakeFailures += c.HandshakeFailures
		sum.Handshakes += c.Handshakes
		out[m] = sum
	}
	return out
}
