package bootstrap

import (
	"fmt"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	metricsv3 "github.com/envoyproxy/go-control-plane/envoy/config/metrics/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/shadowplane/shadowplane/statnames"
)

// DefaultStatsFlushInterval is how often a sidecar reports its copy stats
// by default: at 10,000 sidecars, 1,000 small messages a second for the
// control plane (see docs/copy-metrics.md).
const DefaultStatsFlushInterval = 10 * time.Second

// metricsServiceSinkName is Envoy's gRPC metrics service stats sink.
const metricsServiceSinkName = "envoy.stat_sinks.metrics_service"

// addCopyStats makes the sidecar keep only shadowplane's stats (a stats
// matcher: Envoy does not even create the others) and stream them to the
// control plane over the xDS cluster, so the report travels the same TLS
// connection with the same token as ADS, and the control plane checks the
// sidecar's identity the same way. Counters are sent as totals, not deltas:
// a lost message then loses nothing, and the control plane turns totals
// into increments per sidecar.
func addCopyStats(b *bootstrapv3.Bootstrap, o Options) error {
	var patterns []*matcherv3.StringMatcher
	for _, expr := range statnames.EnvoyStatsInclusion {
		patterns = append(patterns, &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_SafeRegex{
			SafeRegex: &matcherv3.RegexMatcher{Regex: expr},
		}})
	}
	b.StatsConfig = &metricsv3.StatsConfig{StatsMatcher: &metricsv3.StatsMatcher{
		StatsMatcher: &metricsv3.StatsMatcher_InclusionList{InclusionList: &matcherv3.ListStringMatcher{Patterns: patterns}},
	}}
	if o.NoCopyStats {
		return nil
	}
	interval := o.StatsFlushInterval
	if interval <= 0 {
		interval = DefaultStatsFlushInterval
	}
	sink, err := anypb.New(&metricsv3.MetricsServiceConfig{
		GrpcService: &corev3.GrpcService{TargetSpecifier: &corev3.GrpcService_EnvoyGrpc_{
			EnvoyGrpc: &corev3.GrpcService_EnvoyGrpc{ClusterName: XDSClusterName},
		}},
		TransportApiVersion: corev3.ApiVersion_V3,
		// Buckets only: the control plane rebuilds a histogram; Envoy's
		// summary quantiles cannot be added across sidecars.
		HistogramEmitMode: metricsv3.HistogramEmitMode_HISTOGRAM,
	})
	if err != nil {
		return fmt.Errorf("metrics service sink: %w", err)
	}
	b.StatsSinks = []*metricsv3.StatsSink{{
		Name:       metricsServiceSinkName,
		ConfigType: &metricsv3.StatsSink_TypedConfig{TypedConfig: sink},
	}}
	b.StatsFlushInterval = durationpb.New(interval)
	return nil
}
