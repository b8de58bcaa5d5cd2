package xds

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/shadowplane/shadowplane/translator"
)

// metrics are the Prometheus series the xDS server exports.
type metrics struct {
	pushes          *prometheus.CounterVec
	responses       *prometheus.CounterVec
	nacks           *prometheus.CounterVec
	connected       prometheus.Gauge
	groups          prometheus.Gauge
	translation     prometheus.Histogram
	eventToSnapshot prometheus.Histogram
	snapshotErrors  *prometheus.CounterVec
	invalidNodes    prometheus.Counter
	groupsSkipped   prometheus.Counter
}

// Reasons, the label of snapshotErrors.
const (
	reasonTranslatePanic = "translate_panic"
	reasonInvalid        = "invalid"
	reasonSetSnapshot    = "set_snapshot"
)

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		pushes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shadowplane_xds_pushes_total",
			Help: "Snapshot changes per xDS type: counted once per node group and type whose version changed.",
		}, []string{"type"}),
		responses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shadowplane_xds_responses_total",
			Help: "xDS responses sent to proxies, state-of-the-world and delta, per type.",
		}, []string{"type"}),
		nacks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shadowplane_xds_nacks_total",
			Help: "Responses rejected by proxies (requests carrying error_detail), per type.",
		}, []string{"type"}),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "shadowplane_xds_connected_proxies",
			Help: "Open xDS streams whose node has identified its node group.",
		}),
		groups: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "shadowplane_snapshot_groups",
			Help: "Node groups that currently hold a snapshot.",
		}),
		translation: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "shadowplane_translation_duration_seconds",
			Help:    "Time to translate the World for one node group.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16), // 100µs .. ~3.3s
		}),
		eventToSnapshot: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "shadowplane_event_to_snapshot_seconds",
			Help:    "Time from a Kubernetes change being observed to the snapshot that reflects it being set, per node group.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 15), // 1ms .. ~16s
		}),
		snapshotErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shadowplane_xds_snapshot_errors_total",
			Help: "Snapshot failures, by reason: translate_panic and invalid (inconsistent or duplicate resources) keep the previous snapshot; set_snapshot means open watches could not be answered.",
		}, []string{"reason"}),
		groupsSkipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shadowplane_xds_group_translations_skipped_total",
			Help: "Node groups left alone by a new World because nothing they are translated from changed (no translation, no serialization).",
		}),
		invalidNodes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "shadowplane_xds_invalid_nodes_total",
			Help: "xDS streams closed because the node metadata named no valid node group.",
		}),
	}
	reg.MustRegister(m.pushes, m.responses, m.nacks, m.connected, m.groups, m.groupsSkipped,
		m.translation, m.eventToSnapshot, m.snapshotErrors, m.invalidNodes)

	// Start every known series at zero, so rates work from the first scrape.
	for _, t := range translator.ResourceTypes {
		m.pushes.WithLabelValues(t.Name)
		m.responses.WithLabelValues(t.Name)
		m.nacks.WithLabelValues(t.Name)
	}
	for _, r := range []string{reasonTranslatePanic, reasonInvalid, reasonSetSnapshot} {
		m.snapshotErrors.WithLabelValues(r)
	}
	return m
}
