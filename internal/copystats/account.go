package copystats

import (
	"math"
	"strconv"
	"time"

	iopc "github.com/prometheus/client_model/go"

	"github.com/shadowplane/shadowplane/statnames"
)

// sidecar is what the sink remembers of one Envoy (by node id) to turn the
// totals it reports into increments: Envoy's counters are totals since it
// started, and start again from zero when it restarts.
type sidecar struct {
	namespace, service string
	// start is when this Envoy started (report time minus server.uptime);
	// zero when it never reported its uptime.
	start time.Time
	// uptime is the server.uptime of the last report that had one.
	uptime float64
	// last holds the last total of every counter and histogram part, by
	// series key (see seriesKey).
	last     map[string]float64
	lastSeen time.Time
	streams  int
}

// restartSlack is how far a reported start time may move before the sink
// takes it for a restart: uptime is whole seconds and reports are late by
// up to a flush interval's jitter.
const restartSlack = 5 * time.Second

// observeStart updates the sidecar's start time from a report's uptime and
// says whether Envoy restarted since the last report, so every total
// counts from zero again: its start moved forward by more than the slack,
// or its uptime went back (a new process restarted within the slack, whose
// first totals may already exceed the old process's last ones).
func (s *sidecar) observeStart(now time.Time, uptime float64, hasUptime bool) (restarted bool) {
	if !hasUptime {
		return false
	}
	start := now.Add(-time.Duration(uptime * float64(time.Second)))
	restarted = !s.start.IsZero() && (start.Sub(s.start) > restartSlack || uptime < s.uptime)
	s.uptime = uptime
	if s.start.IsZero() || restarted {
		s.start = start
	}
	return restarted
}

// increment returns how much the series grew since the last report and
// remembers total. A total below the last one means the counter started
// again from zero (a restart the uptime did not show): all of it is new.
// With baseline set (the first report of an Envoy that has run for a
// while, which another replica or an earlier process may have counted),
// nothing is new: the total only becomes the base of the next increment.
func (s *sidecar) increment(key string, total float64, baseline bool) float64 {
	if math.IsNaN(total) || math.IsInf(total, 0) || total < 0 {
		return 0 // not a counter's total: never let it poison the sums
	}
	prev, seen := s.last[key]
	s.last[key] = total
	switch {
	case baseline:
		return 0
	case !seen || total < prev:
		return total
	default:
		return total - prev
	}
}

// seriesKey names one reported series in a sidecar's memory: the stat
// name, and for a histogram part its bucket bound or "count"/"sum".
func seriesKey(stat, part string) string {
	if part == "" {
		return stat
	}
	return stat + "#" + part
}

func bucketPart(upperBound float64) string {
	if math.IsInf(upperBound, 1) {
		return "le=+Inf"
	}
	return "le=" + strconv.FormatFloat(upperBound, 'g', -1, 64)
}

// histogramIncrements returns the growth of a reported histogram's count,
// sum (in Envoy's unit, milliseconds) and every bucket (by upper bound, in
// milliseconds; cumulative counts, as Envoy sends them).
func (s *sidecar) histogramIncrements(stat string, h *iopc.Histogram, baseline bool) (count, sum float64, buckets map[float64]float64) {
	count = s.increment(seriesKey(stat, "count"), float64(h.GetSampleCount()), baseline)
	sum = s.increment(seriesKey(stat, "sum"), h.GetSampleSum(), baseline)
	buckets = make(map[float64]float64, len(h.GetBucket()))
	for _, b := range h.GetBucket() {
		buckets[b.GetUpperBound()] = s.increment(seriesKey(stat, bucketPart(b.GetUpperBound())), float64(b.GetCumulativeCount()), baseline)
	}
	return count, sum, buckets
}

// uptimeOf finds Envoy's server.uptime gauge in a report.
func uptimeOf(families []*iopc.MetricFamily) (float64, bool) {
	for _, f := range families {
		if f.GetName() == statnames.StatUptime && len(f.GetMetric()) > 0 {
			return f.GetMetric()[0].GetGauge().GetValue(), true
		}
	}
	return 0, false
}
