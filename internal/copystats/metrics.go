package copystats

import (
	"sort"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/shadowplane/shadowplane/statnames"
)

// Metric names, Prometheus style: counters end in _total, time is in
// seconds, shares are ratios (0..1).
const (
	MetricMatched    = "shadowplane_copy_matched_requests_total"
	MetricCopies     = "shadowplane_copies_total"
	MetricResponses  = "shadowplane_copy_responses_total"
	MetricDropped    = "shadowplane_copy_dropped_total"
	MetricFailures   = "shadowplane_copy_failures_total"
	MetricDuration   = "shadowplane_copy_duration_seconds"
	MetricConfigured = "shadowplane_copy_configured_ratio"
	MetricSidecars   = "shadowplane_copy_reporting_sidecars"
	MetricInSync     = "shadowplane_copy_sidecars_in_sync"

	// MetricTLSFailures counts TLS connections to the target that failed,
	// not copies: each also fails its copy as a connect_failure.
	MetricTLSFailures = "shadowplane_copy_tls_failures_total"
)

// Label values of the reason and class labels.
const (
	DropOverflow     = "overflow"
	DropNoHealthy    = "no_healthy_endpoint"
	DropBodyTooLarge = "body_too_large"
	FailReset        = "reset"
	FailTimeout      = "timeout"
	FailConnect      = "connect_failure"
	// TLSVerify: Envoy refused the target's certificate. TLSHandshake:
	// the handshake failed otherwise, e.g. the target refused it.
	TLSVerify    = "verify"
	TLSHandshake = "handshake"
)

// tlsFailureReasons map the reasons of MetricTLSFailures to Envoy stats.
var tlsFailureReasons = []struct{ reason, stat string }{
	{TLSVerify, statnames.StatTLSVerifyFail}, {TLSHandshake, statnames.StatTLSConnectionError},
}

// responseClasses maps each response class label to its Envoy stat.
var responseClasses = []struct{ class, stat string }{
	{"2xx", statnames.Stat2xx}, {"3xx", statnames.Stat3xx}, {"4xx", statnames.Stat4xx}, {"5xx", statnames.Stat5xx},
}

// dropReasons are copies Envoy made but never sent in full, by reason.
var dropReasons = []struct {
	reason string
	count  func(*mirrorTotals) float64
}{
	{DropOverflow, func(t *mirrorTotals) float64 { return t.counters[statnames.StatPendingOverflow] }},
	{DropNoHealthy, func(t *mirrorTotals) float64 { return t.counters[statnames.StatNoHealthy] }},
	{DropBodyTooLarge, (*mirrorTotals).abandoned},
}

// abandoned are the copies Envoy itself gave up before an answer: what the
// buffer filter does to a body over maxBodyBytes (measured). A copy cut by
// the 30 s cap or a timeout presumably ends its HTTP/1 connection locally
// too (not measured), so those are taken out.
func (t *mirrorTotals) abandoned() float64 {
	return max(0, t.counters[statnames.StatDestroyedWithRequest]+t.counters[statnames.StatCancelled]-
		t.counters[statnames.StatMaxDuration]-t.counters[statnames.StatTimeout])
}

var failureReasons = []struct {
	reason string
	stats  []string
}{
	{FailReset, []string{statnames.StatResetRx, statnames.StatResetTx}},
	{FailTimeout, []string{statnames.StatTimeout, statnames.StatMaxDuration}},
	{FailConnect, []string{statnames.StatConnectFail}},
}

// copies is every copy Envoy made of a matched request: those that reached
// a connection to the target (upstream_rq_total), and those stopped before:
// by a circuit breaker, for lack of a healthy endpoint, by a failed
// connection, or cancelled while waiting for one.
func (t *mirrorTotals) copies() float64 {
	return t.counters[statnames.StatRequests] + t.counters[statnames.StatPendingOverflow] +
		t.counters[statnames.StatNoHealthy] + t.counters[statnames.StatConnectFail] + t.counters[statnames.StatCancelled]
}

// collector exports the sums at scrape time.
type collector struct{ s *Sink }

func (s *Sink) labelNames() []string {
	if s.perPod {
		return []string{"namespace", "policy", "mirror", "pod"}
	}
	return []string{"namespace", "policy", "mirror"}
}

func (s *Sink) descs() map[string]*prometheus.Desc {
	mirror := s.labelNames()
	with := func(extra string) []string { return append(append([]string(nil), mirror...), extra) }
	return map[string]*prometheus.Desc{
		MetricMatched: prometheus.NewDesc(MetricMatched,
			"Requests that matched the policy on its sidecars (the share's denominator), by mirror.", mirror, nil),
		MetricCopies: prometheus.NewDesc(MetricCopies,
			"Copies the sidecars made for the mirror: sent, plus dropped before sending.", mirror, nil),
		MetricResponses: prometheus.NewDesc(MetricResponses,
			"Responses of the shadow to copies, by class (2xx, 3xx, 4xx, 5xx).", with("class"), nil),
		MetricDropped: prometheus.NewDesc(MetricDropped,
			"Copies dropped by the sidecar, by reason: overflow (circuit breaker), no_healthy_endpoint, body_too_large.", with("reason"), nil),
		MetricFailures: prometheus.NewDesc(MetricFailures,
			"Copies that failed on the way, by reason: reset, timeout, connect_failure.", with("reason"), nil),
		MetricTLSFailures: prometheus.NewDesc(MetricTLSFailures,
			"TLS connections to the target that failed, by reason: verify (Envoy refused the target's certificate), handshake (any other TLS failure, e.g. the target refused the handshake). Each also fails a copy as connect_failure.", with("reason"), nil),
		MetricDuration: prometheus.NewDesc(MetricDuration,
			"Time until the shadow's response to a copy, in seconds.", mirror, nil),
		MetricConfigured: prometheus.NewDesc(MetricConfigured,
			"The mirror's configured share of matched requests (percent / 100).", []string{"namespace", "policy", "mirror"}, nil),
		MetricSidecars: prometheus.NewDesc(MetricSidecars,
			"Sidecars of the policy's Service whose stats stream is open.", []string{"namespace", "policy"}, nil),
		MetricInSync: prometheus.NewDesc(MetricInSync,
			"Sidecars of the policy's Service whose xDS config is in sync (every type ACKed at the current version).", []string{"namespace", "policy"}, nil),
	}
}

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.s.descs() {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	s := c.s
	d := s.descs()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.forgetIdle(s.now())

	refs := make([]policyRef, 0, len(s.policies))
	for ref := range s.policies {
		refs = append(refs, ref)
	}
	sort.Slice(refs, func(i, j int) bool {
		if refs[i].namespace != refs[j].namespace {
			return refs[i].namespace < refs[j].namespace
		}
		return refs[i].name < refs[j].name
	})
	var synced map[string]int
	if s.synced != nil {
		synced = s.synced()
	}
	type service struct{ namespace, name string }
	reporting := map[service]int{}
	for _, sc := range s.sidecars {
		if sc.streams > 0 {
			reporting[service{sc.namespace, sc.service}]++
		}
	}
	for _, ref := range refs {
		info := s.policies[ref]
		for _, m := range info.mirrors {
			ch <- prometheus.MustNewConstMetric(d[MetricConfigured], prometheus.GaugeValue, float64(m.ppm)/1e6, ref.namespace, ref.name, m.name)
		}
		svc := service{ref.namespace, info.service}
		ch <- prometheus.MustNewConstMetric(d[MetricSidecars], prometheus.GaugeValue, float64(reporting[svc]), ref.namespace, ref.name)
		if s.synced != nil {
			ch <- prometheus.MustNewConstMetric(d[MetricInSync], prometheus.GaugeValue, float64(synced[ref.namespace+"/"+info.service]), ref.namespace, ref.name)
		}
	}

	for l, t := range s.totals {
		values := []string{l.namespace, l.policy, l.mirror}
		if s.perPod {
			values = append(values, l.pod)
		}
		with := func(extra string) []string { return append(append([]string(nil), values...), extra) }
		ch <- prometheus.MustNewConstMetric(d[MetricMatched], prometheus.CounterValue, t.matched, values...)
		ch <- prometheus.MustNewConstMetric(d[MetricCopies], prometheus.CounterValue, t.copies(), values...)
		for _, rc := range responseClasses {
			ch <- prometheus.MustNewConstMetric(d[MetricResponses], prometheus.CounterValue, t.fromShadow(rc.stat), with(rc.class)...)
		}
		for _, dr := range dropReasons {
			ch <- prometheus.MustNewConstMetric(d[MetricDropped], prometheus.CounterValue, dr.count(t), with(dr.reason)...)
		}
		for _, fr := range failureReasons {
			ch <- prometheus.MustNewConstMetric(d[MetricFailures], prometheus.CounterValue, t.sum(fr.stats), with(fr.reason)...)
		}
		for _, tr := range tlsFailureReasons {
			ch <- prometheus.MustNewConstMetric(d[MetricTLSFailures], prometheus.CounterValue, t.counters[tr.stat], with(tr.reason)...)
		}
		buckets := make(map[float64]uint64, len(t.latencyBuckets))
		for boundMs, n := range t.latencyBuckets {
			buckets[boundMs/1000] = uint64(n)
		}
		ch <- prometheus.MustNewConstHistogram(d[MetricDuration], uint64(t.latencyCount), t.latencySumMs/1000, buckets, values...)
	}
}

// localReplies are the copies Envoy answered itself with a 503 or 504,
// which it also charges to the cluster's upstream_rq_5xx (checked against
// Envoy 1.40: with the target gone, upstream_rq_5xx grew by exactly
// upstream_cx_none_healthy + upstream_rq_pending_failure_eject).
var localReplies = map[string][]string{
	statnames.Stat5xx: {statnames.StatNoHealthy, statnames.StatConnectFail, statnames.StatPendingOverflow, statnames.StatTimeout},
}

// fromShadow is a response class counter without Envoy's own replies: what
// the shadow answered. A reset before the response is still charged 503
// by Envoy and shows in both 5xx and failures{reason="reset"}.
func (t *mirrorTotals) fromShadow(stat string) float64 {
	return max(0, t.counters[stat]-t.sum(localReplies[stat]))
}

func (t *mirrorTotals) sum(stats []string) float64 {
	var n float64
	for _, st := range stats {
		n += t.counters[st]
	}
	return n
}
