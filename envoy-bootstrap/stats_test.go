package bootstrap

import (
	"testing"
	"time"

	metricsv3 "github.com/envoyproxy/go-control-plane/envoy/config/metrics/v3"

	"github.com/shadowplane/shadowplane/statnames"
)

// TestCopyStatsSink: by default the sidecar streams its stats to the
// control plane over the xDS cluster (so with its TLS and token), as
// totals, histograms as buckets, every DefaultStatsFlushInterval, and keeps
// only statnames' stats; NoCopyStats keeps the matcher and drops the sink.
func TestCopyStatsSink(t *testing.T) {
	tests := []struct {
		name         string
		edit         func(*Options)
		wantSink     bool
		wantInterval time.Duration
	}{
		{name: "default", edit: func(*Options) {}, wantSink: true, wantInterval: DefaultStatsFlushInterval},
		{name: "interval", edit: func(o *Options) { o.StatsFlushInterval = time.Second }, wantSink: true, wantInterval: time.Second},
		{name: "off", edit: func(o *Options) { o.NoCopyStats = true }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := validOptions()
			tt.edit(&o)
			b, err := Render(o)
			if err != nil {
				t.Fatal(err)
			}
			patterns := b.GetStatsConfig().GetStatsMatcher().GetInclusionList().GetPatterns()
			if len(patterns) != len(statnames.EnvoyStatsInclusion) {
				t.Fatalf("stats matcher has %d patterns, want statnames' %d", len(patterns), len(statnames.EnvoyStatsInclusion))
			}
			for i, p := range patterns {
				if p.GetSafeRegex().GetRegex() != statnames.EnvoyStatsInclusion[i] {
					t.Errorf("pattern %d = %q, want %q", i, p.GetSafeRegex().GetRegex(), statnames.EnvoyStatsInclusion[i])
				}
			}
			if !tt.wantSink {
				if len(b.GetStatsSinks()) != 0 {
					t.Errorf("sinks = %v, want none", b.GetStatsSinks())
				}
				return
			}
			if len(b.GetStatsSinks()) != 1 || b.GetStatsSinks()[0].GetName() != "envoy.stat_sinks.metrics_service" {
				t.Fatalf("sinks = %v, want the metrics service", b.GetStatsSinks())
			}
			var cfg metricsv3.MetricsServiceConfig
			if err := b.GetStatsSinks()[0].GetTypedConfig().UnmarshalTo(&cfg); err != nil {
				t.Fatal(err)
			}
			if cfg.GetGrpcService().GetEnvoyGrpc().GetClusterName() != XDSClusterName || cfg.GetReportCountersAsDeltas().GetValue() ||
				cfg.GetHistogramEmitMode() != metricsv3.HistogramEmitMode_HISTOGRAM {
				t.Errorf("metrics service = %v, want the xDS cluster, totals, histogram buckets", &cfg)
			}
			if got := b.GetStatsFlushInterval().AsDuration(); got != tt.wantInterval {
				t.Errorf("flush interval = %v, want %v", got, tt.wantInterval)
			}
		})
	}
}
