package watcher

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the watcher's Prometheus metrics. They exist even without a
// registry, so the code that updates them needs no checks.
type metrics struct {
	policies *prometheus.GaugeVec
	events   *prometheus.CounterVec
	ignored  *prometheus.CounterVec
	worlds   prometheus.Counter
	watchUp  *prometheus.GaugeVec
	// leader is 1 while this replica writes status, Events and the last
	// valid versions.
	leader      prometheus.Gauge
	storeWrites *prometheus.CounterVec
}

// Label values of shadowplane_watcher_events_total{kind}.
const (
	kindService       = "service"
	kindEndpointSlice = "endpointslice"
	kindConfigMap     = "configmap"
	// Labelled client certificates and CA bundles of mirror targets.
	kindSecret      = "secret"
	kindCAConfigMap = "ca-configmap"
)

var allKinds = []string{kindService, kindEndpointSlice, kindConfigMap, kindSecret, kindCAConfigMap}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		policies: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "shadowplane_policies",
			Help: "Policies by state: valid ones are in force; invalid counts rejected definitions, entries and keys.",
		}, []string{"state"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shadowplane_watcher_events_total",
			Help: "Kubernetes informer events seen by the watcher, by object kind.",
		}, []string{"kind"}),
		ignored: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shadowplane_watcher_ignored_events_total",
			Help: "Service and EndpointSlice events of Services no policy names, by object kind: they cost no World and no translation.",
		}, []string{"kind"}),
		worlds: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shadowplane_worlds_total",
			Help: "Worlds built and handed on by the watcher.",
		}),
		watchUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "shadowplane_kube_watch_up",
			Help: "1 while the watch of this object kind gets data from the API server, 0 while it fails (the last known config is served meanwhile).",
		}, []string{"kind"}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "shadowplane_leader",
			Help: "1 while this replica is the leader: it records Events and writes each policy ConfigMap's status and last valid versions; every replica serves xDS.",
		}),
		storeWrites: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shadowplane_policy_store_writes_total",
			Help: "Patches of the status and last-valid annotations of policy ConfigMaps by the leader, by result (ok, error).",
		}, []string{"result"}),
	}
	// Start every series at zero so dashboards see them before the first
	// change.
	for _, state := range []string{"valid", "invalid"} {
		m.policies.WithLabelValues(state)
	}
	for _, kind := range allKinds {
		m.events.WithLabelValues(kind)
	}
	for _, kind := range []string{kindService, kindEndpointSlice} {
		m.ignored.WithLabelValues(kind)
	}
	if reg == nil {
		return m, nil
	}
	var errs []error
	for _, c := range []prometheus.Collector{m.policies, m.events, m.ignored, m.worlds, m.watchUp, m.leader, m.storeWrites} {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("watcher: register metrics: %w", err)
	}
	return m, nil
}

// observe sets the policy gauges from an outcome.
func (m *metrics) observe(o outcome) {
	invalid := 0
	for _, v := range o.verdicts {
		for _, n := range v.notes {
			if n.reason == ReasonPolicyRejected {
				invalid++
				break
			}
		}
	}
	m.policies.WithLabelValues("valid").Set(float64(len(o.inForce)))
	m.policies.WithLabelValues("invalid").Set(float64(invalid))
}
