package harness

import (
	"fmt"
	"slices"
	"time"
)

// LatencySummary is the distribution of a set of measured latencies.
type LatencySummary struct {
	N                  int
	P50, P90, P99, Max time.Duration
}

// SummarizeLatencies returns the nearest-rank percentiles of samples.
func SummarizeLatencies(samples []time.Duration) LatencySummary {
	if len(samples) == 0 {
		return LatencySummary{}
	}
	sorted := slices.Clone(samples)
	slices.Sort(sorted)
	return LatencySummary{
		N:   len(sorted),
		P50: nearestRank(sorted, 50),
		P90: nearestRank(sorted, 90),
		P99: nearestRank(sorted, 99),
		Max: sorted[len(sorted)-1],
	}
}

// nearestRank is the smallest sample with at least p percent of the samples
// at or below it.
func nearestRank(sorted []time.Duration, p float64) time.Duration {
	rank := int(float64(len(sorted))*p/100 + 0.999999999)
	rank = max(1, min(rank, len(sorted)))
	return sorted[rank-1]
}

// Millis formats a duration as milliseconds with one decimal.
func Millis(d time.Duration) string {
	return fmt.Sprintf("%.1f", float64(d)/float64(time.Millisecond))
}
