package copystats

import (
	"fmt"
	"io"
	"math"
	"sort"

	iopc "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Mirror is one mirror's copy metrics as read back from the control
// plane's /metrics (summed over pods when it has a pod label): what
// `shadowplane top` shows and the integration tests check.
type Mirror struct {
	Namespace string `json:"namespace"`
	Policy    string `json:"policy"`
	Mirror    string `json:"mirror"`
	// Configured is the configured share (0..1).
	Configured float64 `json:"configuredRatio"`
	// Sidecars of the policy's Service report copy stats; InSync have
	// their xDS config ACKed.
	Sidecars int     `json:"sidecars"`
	InSync   int     `json:"inSync"`
	Matched  float64 `json:"matched"`
	Copies   float64 `json:"copies"`
	// Responses by class, Dropped and Failures by reason.
	Responses map[string]float64 `json:"responses"`
	Dropped   map[string]float64 `json:"dropped"`
	Failures  map[string]float64 `json:"failures"`
	// TLSFailures are failed TLS connections by reason (verify,
	// handshake); they overlap Failures["connect_failure"], so Errors
	// leaves them out.
	TLSFailures map[string]float64 `json:"tlsFailures,omitempty"`
	// LatencyBuckets are cumulative counts by upper bound in seconds.
	LatencyBuckets map[float64]float64 `json:"-"`
	LatencyCount   float64             `json:"-"`
}

// Key identifies the mirror: "namespace/policy/mirror".
func (m Mirror) Key() string { return m.Namespace + "/" + m.Policy + "/" + m.Mirror }

// Errors are the copies that did not get an answer below 500: 5xx,
// drops and failures.
func (m Mirror) Errors() float64 {
	n := m.Responses["5xx"]
	for _, v := range m.Dropped {
		n += v
	}
	for _, v := range m.Failures {
		n += v
	}
	return n
}

// ReadMetrics parses a Prometheus text exposition (the control plane's
// /metrics) into its copy metrics, sorted by namespace, policy, mirror.
func ReadMetrics(r io.Reader) ([]Mirror, error) {
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("read metrics: %w", err)
	}
	byKey := map[string]*Mirror{}
	get := func(labels map[string]string) *Mirror {
		m := Mirror{Namespace: labels["namespace"], Policy: labels["policy"], Mirror: labels["mirror"]}
		if p := byKey[m.Key()]; p != nil {
			return p
		}
		m.Responses, m.Dropped, m.Failures, m.TLSFailures = map[string]float64{}, map[string]float64{}, map[string]float64{}, map[string]float64{}
		m.LatencyBuckets = map[float64]float64{}
		byKey[m.Key()] = &m
		return &m
	}
	sidecars, inSync := map[[2]string]int{}, map[[2]string]int{}
	for name, f := range families {
		for _, metric := range f.GetMetric() {
			labels := labelMap(metric)
			switch name {
			case MetricSidecars:
				sidecars[[2]string{labels["namespace"], labels["policy"]}] += int(metric.GetGauge().GetValue())
			case MetricInSync:
				inSync[[2]string{labels["namespace"], labels["policy"]}] += int(metric.GetGauge().GetValue())
			case MetricConfigured:
				get(labels).Configured = metric.GetGauge().GetValue()
			case MetricMatched:
				get(labels).Matched += metric.GetCounter().GetValue()
			case MetricCopies:
				get(labels).Copies += metric.GetCounter().GetValue()
			case MetricResponses:
				get(labels).Responses[labels["class"]] += metric.GetCounter().GetValue()
			case MetricDropped:
				get(labels).Dropped[labels["reason"]] += metric.GetCounter().GetValue()
			case MetricFailures:
				get(labels).Failures[labels["reason"]] += metric.GetCounter().GetValue()
			case MetricTLSFailures:
				get(labels).TLSFailures[labels["reason"]] += metric.GetCounter().GetValue()
			case MetricDuration:
				m := get(labels)
				h := metric.GetHistogram()
				m.LatencyCount += float64(h.GetSampleCount())
				for _, b := range h.GetBucket() {
					m.LatencyBuckets[b.GetUpperBound()] += float64(b.GetCumulativeCount())
				}
			}
		}
	}
	out := make([]Mirror, 0, len(byKey))
	for _, m := range byKey {
		m.Sidecars = sidecars[[2]string{m.Namespace, m.Policy}]
		m.InSync = inSync[[2]string{m.Namespace, m.Policy}]
		out = append(out, *m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key() < out[j].Key() })
	return out, nil
}

func labelMap(m *iopc.Metric) map[string]string {
	out := make(map[string]string, len(m.GetLabel()))
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

// Quantile estimates the q-quantile (0..1) of latency from cumulative
// bucket counts, Prometheus' histogram_quantile way: linear within the
// bucket. NaN without samples.
func Quantile(q float64, buckets map[float64]float64, count float64) float64 {
	if count <= 0 {
		return math.NaN()
	}
	bounds := make([]float64, 0, len(buckets))
	for b := range buckets {
		bounds = append(bounds, b)
	}
	sort.Float64s(bounds)
	rank := q * count
	lower, below := 0.0, 0.0
	for _, b := range bounds {
		n := buckets[b]
		if n >= rank {
			if math.IsInf(b, 1) || n == below {
				return lower
			}
			return lower + (b-lower)*(rank-below)/(n-below)
		}
		lower, below = b, n
	}
	return lower
}

// Sub returns the growth from an earlier reading of the same mirror: the
// counters' and histogram's increase, with Configured and Sidecars of now.
func (m Mirror) Sub(earlier Mirror) Mirror {
	out := m
	out.Matched -= earlier.Matched
	out.Copies -= earlier.Copies
	out.Responses = subMap(m.Responses, earlier.Responses)
	out.Dropped = subMap(m.Dropped, earlier.Dropped)
	out.Failures = subMap(m.Failures, earlier.Failures)
	out.TLSFailures = subMap(m.TLSFailures, earlier.TLSFailures)
	out.LatencyBuckets = subMap(m.LatencyBuckets, earlier.LatencyBuckets)
	out.LatencyCount -= earlier.LatencyCount
	return out
}

func subMap[K comparable](now, earlier map[K]float64) map[K]float64 {
	out := make(map[K]float64, len(now))
	for k, v := range now {
		out[k] = v - earlier[k]
	}
	return out
}
