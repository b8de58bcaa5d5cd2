package integration

import (
	"context"
	"fmt"
	"maps"
	"math"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shadowplane/shadowplane/integration/harness"
)

// livePercents are the percent edits of TestLiveChangePercent, applied one
// per second from an initial 50: each differs from the one before, they
// include pausing (0), resuming from a pause (0 → 30) and copying all (100),
// and a few use decimals, which only RTDS's MILLION denominator keeps.
var livePercents = []string{
	"30", "0", "30", "100", "12.5", "0", "75", "100", "5", "90",
	"0", "60", "25", "100", "0", "40", "2.5", "80", "0", "35",
}

const (
	liveRate    = 200 // requests per second
	liveStep    = time.Second
	liveStepTag = "x-live-step"
	liveAlpha   = harness.ShareAlpha // chance that a correct run still fails one of its share checks
	liveMinSent = 50                 // fewest requests a step must count for its share check to mean something
	// workerGrace passes between /runtime showing a value and requests
	// being counted for it: the admin handler reads the main thread's
	// runtime snapshot, and workers receive the new one by a post an
	// instant later; on a loaded machine (seen at load average 15 on 2
	// cores) that instant took more than 25 ms, and 3 of 173 requests
	// tagged for a 0 % step were still copied.
	workerGrace = 100 * time.Millisecond
	// inFlightGrace passes between the last request counted for a step and
	// the next edit, so requests still queued in the client when the edit
	// is written are not counted under the old percent.
	inFlightGrace = 50 * time.Millisecond
)

// TestLiveChangePercent: under steady keep-alive load, 20 percent edits
// each reach Envoy by RTDS alone. No primary request fails, the Envoy
// process runs on, no listener, route, cluster or endpoint is re-sent or
// rebuilt, and after each edit the share of copies matches the new percent.
func TestLiveChangePercent(t *testing.T) {
	for _, mode := range xdsModes {
		t.Run(mode.name, func(t *testing.T) {
			f := newMirrorFixture(t, fixtureOptions{delta: mode.delta})
			f.applyPolicy(policyYAML("50", ""))
			f.waitApplied(500_000)
			f.waitRouteMirrors(1)

			pid := f.sidecar.PID()
			startInfo, err := f.sidecar.ServerInfo(f.ctx)
			must(t, err)
			envoyBefore := configCounters(t, f)
			pushesBefore := f.cp.XDS.Pushes()
			responsesBefore, err := f.cp.XDSResponses()
			must(t, err)

			// Requests carry the step whose percent was in force when they
			// were sent; none while an edit is on its way.
			var step atomic.Int64
			step.Store(-1)
			load := make(chan harness.Results, 1)
			loadStart := time.Now()
			go func() {
				load <- harness.RunAtRate(f.ctx, f.client, liveRate, time.Duration(len(livePercents))*liveStep,
					func(ctx context.Context, i int) *http.Request {
						req := f.get(ctx, fmt.Sprintf("/entrance/live/%d", i))
						if s := step.Load(); s >= 0 {
							req.Header.Set(liveStepTag, strconv.FormatInt(s, 10))
						}
						return req
					})
			}()

			uptimes := []time.Duration{startInfo.Uptime}
			for i, percent := range livePercents {
				time.Sleep(time.Until(loadStart.Add(time.Duration(i) * liveStep)))
				step.Store(-1)
				time.Sleep(inFlightGrace)
				f.applyPolicy(policyYAML(percent, ""))
				f.waitRuntime(f.runtimeKey(), percentPPM(t, percent))
				time.Sleep(workerGrace)
				step.Store(int64(i))
				info, err := f.sidecar.ServerInfo(f.ctx)
				must(t, err)
				uptimes = append(uptimes, info.Uptime)
			}
			res := <-load
			elapsed := time.Since(loadStart)

			if res.Errors() != 0 {
				t.Errorf("%d of %d primary requests failed during the edits; first: %s", res.Errors(), len(res.All), res.FirstError())
			}
			if got := f.primary.Count(); got != len(res.All) {
				t.Errorf("primary got %d requests, want %d", got, len(res.All))
			}
			checkSameEnvoy(t, f, pid, startInfo.Uptime, uptimes, elapsed)

			// Only RTDS moved, in the control plane and in Envoy.
			changes := uint64(len(livePercents))
			checkCounterDeltas(t, "control-plane pushes", pushesBefore, f.cp.XDS.Pushes(), map[string]uint64{"runtime": changes})
			responsesAfter, err := f.cp.XDSResponses()
			must(t, err)
			checkCounterDeltas(t, "control-plane xDS responses", responsesBefore, responsesAfter, map[string]uint64{"runtime": changes})
			envoyAfter := configCounters(t, f)
			checkOnlyChanged(t, envoyBefore, envoyAfter, regexp.MustCompile(`^runtime\.(update_attempt|update_success|load_success|override_dir_not_exists)$`))
			if got := envoyAfter["runtime.update_success"] - envoyBefore["runtime.update_success"]; got != changes {
				t.Errorf("Envoy applied %d RTDS updates, want %d (one per edit)", got, changes)
			}

			checkStepShares(t, f)
		})
	}
}

// checkSameEnvoy checks that the Envoy process ran on through the edits:
// the same process, still running, its uptime never going back and grown
// by the time the edits took.
func checkSameEnvoy(t *testing.T, f *mirrorFixture, pid int, start time.Duration, uptimes []time.Duration, elapsed time.Duration) {
	t.Helper()
	if f.sidecar.PID() != pid || f.sidecar.Exited() {
		t.Errorf("Envoy process %d is gone (now %d, exited %v)", pid, f.sidecar.PID(), f.sidecar.Exited())
	}
	end, err := f.sidecar.ServerInfo(f.ctx)
	must(t, err)
	uptimes = append(uptimes, end.Uptime)
	for i := 1; i < len(uptimes); i++ {
		if uptimes[i] < uptimes[i-1] {
			t.Errorf("Envoy uptime went back from %s to %s: it restarted (all samples %v)", uptimes[i-1], uptimes[i], uptimes)
			break
		}
	}
	// Uptime has whole seconds; allow one for rounding at each end.
	if grown := end.Uptime - start; grown < elapsed-2*time.Second {
		t.Errorf("Envoy uptime grew by %s over %s of edits: it restarted", grown, elapsed)
	}
	if end.State != "LIVE" {
		t.Errorf("Envoy state %q, want LIVE", end.State)
	}
}

// checkStepShares checks, per step, that the copies of the requests sent
// while the step's percent was in force lie in the exact binomial interval.
// The steps share liveAlpha, so a correct run fails with probability at
// most liveAlpha in all.
func checkStepShares(t *testing.T, f *mirrorFixture) {
	t.Helper()
	type stepCount struct{ sent, copies int }
	counts := make([]stepCount, len(livePercents))
	minCopies := 0
	for i, percent := range livePercents {
		tag := strconv.Itoa(i)
		counts[i].sent = f.primary.CountWhere(func(r harness.Request) bool { return r.Header.Get(liveStepTag) == tag })
		lo, _ := harness.BinomialBounds(counts[i].sent, float64(percentPPM(t, percent))/1e6, liveAlpha/float64(len(livePercents)))
		minCopies += lo
	}
	// Copies trail their originals; wait for them before counting.
	f.shadow.WaitCount(f.ctx, minCopies, 500*time.Millisecond)

	var table strings.Builder
	fmt.Fprintf(&table, "step  percent  sent  copies  interval\n")
	for i, percent := range livePercents {
		tag := strconv.Itoa(i)
		counts[i].copies = f.shadow.CountWhere(func(r harness.Request) bool { return r.Header.Get(liveStepTag) == tag })
		sent, copies := counts[i].sent, counts[i].copies
		lo, hi := harness.BinomialBounds(sent, float64(percentPPM(t, percent))/1e6, liveAlpha/float64(len(livePercents)))
		fmt.Fprintf(&table, "%4d  %7s  %4d  %6d  [%d, %d]\n", i, percent, sent, copies, lo, hi)
		if sent < liveMinSent {
			t.Errorf("step %d (%s %%): only %d requests were sent with the percent in force; the edit took too long to reach Envoy to check the share", i, percent, sent)
			continue
		}
		if copies < lo || copies > hi {
			t.Errorf("step %d (%s %%): %d copies of %d requests, outside the binomial interval [%d, %d]", i, percent, copies, sent, lo, hi)
		}
	}
	t.Logf("copies per step:\n%s", table.String())
}

// percentPPM converts a policy percent ("12.5") into parts per million.
func percentPPM(t testing.TB, percent string) uint32 {
	t.Helper()
	p, err := strconv.ParseFloat(percent, 64)
	if err != nil || p < 0 || p > 100 {
		t.Fatalf("bad test percent %q", percent)
	}
	return uint32(math.Round(p * 10_000))
}

// configStats selects the Envoy counters that show config being re-sent,
// rebuilt or drained: listener and cluster managers (LDS, CDS, listeners
// added, modified, drained, updated in place; clusters added, modified),
// RDS, EDS of the shadow clusters, RTDS, and connections Envoy itself
// closed or drained.
var configStats = `^(listener_manager\.|cluster_manager\.|runtime\.|` +
	`http\.inbound_[^.]+\.(rds\.|downstream_cx_drain_close$|downstream_cx_destroy_local)|` +
	`cluster\.copy\|[^.]*\.(update_|membership_|assignment_))`

// volatileStat matches stats that move without any config change
// (timestamps) or that encode a version rather than count.
var volatileStat = regexp.MustCompile(`(update_time|_time_ms|\.version)$`)

// configCounters reads configStats from the fixture's Envoy.
func configCounters(t *testing.T, f *mirrorFixture) map[string]uint64 {
	t.Helper()
	stats, err := f.sidecar.Stats(f.ctx, configStats)
	must(t, err)
	for name := range stats {
		if volatileStat.MatchString(name) {
			delete(stats, name)
		}
	}
	for _, name := range []string{"listener_manager.listener_modified", "cluster_manager.cluster_modified", "runtime.update_success"} {
		if _, ok := stats[name]; !ok {
			t.Fatalf("Envoy has no stat %s; the checks below would prove nothing", name)
		}
	}
	return stats
}

// checkOnlyChanged fails for every config stat that changed between before
// and after unless its name matches allowed.
func checkOnlyChanged(t *testing.T, before, after map[string]uint64, allowed *regexp.Regexp) {
	t.Helper()
	names := slices.Sorted(maps.Keys(after))
	for _, name := range names {
		if before[name] != after[name] && !allowed.MatchString(name) {
			t.Errorf("Envoy stat %s changed from %d to %d", name, before[name], after[name])
		}
	}
	for name := range before {
		if _, ok := after[name]; !ok {
			t.Errorf("Envoy stat %s disappeared (was %d)", name, before[name])
		}
	}
}

// checkCounterDeltas checks that per-type counters grew by exactly want
// (zero for types not listed).
func checkCounterDeltas(t *testing.T, what string, before, after map[string]uint64, want map[string]uint64) {
	t.Helper()
	got := map[string]uint64{}
	for typ, n := range after {
		if d := n - before[typ]; d != 0 {
			got[typ] = d
		}
	}
	if !maps.Equal(got, want) {
		t.Errorf("%s grew by %v, want %v", what, got, want)
	}
}

// TestLiveChangeEndpoints: adding and removing an endpoint of the shadow
// Service re-sends EDS alone, for that cluster alone, and copies follow the
// new endpoint set.
func TestLiveChangeEndpoints(t *testing.T) {
	for _, mode := range xdsModes {
		t.Run(mode.name, func(t *testing.T) {
			f := newMirrorFixture(t, fixtureOptions{delta: mode.delta})
			f.applyPolicy(policyYAML("100", ""))
			f.waitApplied(1_000_000)

			e := env(t)
			second, err := harness.StartBackend("shadow-2", e.endpointHost)
			must(t, err)
			t.Cleanup(second.Stop)
			// Only the cluster's EDS stats may move, and the cluster
			// manager's count of host-set updates (cluster_updated), which
			// EDS drives; cluster_modified (a CDS rebuild) must not.
			edsOnly := regexp.MustCompile(`^(cluster\.` + regexp.QuoteMeta(f.shadowCluster()) + `\.|cluster_manager\.cluster_updated(_via_merge)?$)`)
			edsSuccess := "cluster." + f.shadowCluster() + ".update_success"

			// A slice has one port set, so the second backend, on the same
			// address with another port, gets a slice of its own.
			secondSlice := "entrance-shadow-2"
			envoyBefore := configCounters(t, f)
			pushesBefore := f.cp.XDS.Pushes()
			responsesBefore, err := f.cp.XDSResponses()
			must(t, err)
			must(t, e.kube.ApplyNamedEndpointSlice(f.ctx, f.ns, "entrance-shadow", secondSlice, "http", second.Port,
				harness.SliceEndpoint{Address: e.endpointHost, Ready: true}))
			f.waitClusterHosts(f.shadowCluster(), 2)
			checkEDSOnly(t, f, "adding an endpoint", envoyBefore, pushesBefore, responsesBefore, edsOnly, edsSuccess)

			const n = 200
			sendPhase(t, f, "added", n)
			// Copies trail their originals: wait for all of them, then a
			// little longer, so a surplus would show too.
			_ = harness.WaitUntil(f.ctx, 10*time.Second, func() (bool, error) { return f.shadow.Count()+second.Count() >= n, nil })
			time.Sleep(300 * time.Millisecond)
			copies, secondCopies := f.shadow.Count(), second.Count()
			t.Logf("with two endpoints: %d and %d copies of %d requests", copies, secondCopies, n)
			if copies+secondCopies != n || copies < n/4 || secondCopies < n/4 {
				t.Errorf("with two endpoints, copies of %d requests split %d / %d; want all copied and both endpoints used", n, copies, secondCopies)
			}

			envoyBefore = configCounters(t, f)
			pushesBefore = f.cp.XDS.Pushes()
			responsesBefore, err = f.cp.XDSResponses()
			must(t, err)
			must(t, e.kube.DeleteEndpointSlice(f.ctx, f.ns, secondSlice))
			f.waitClusterHosts(f.shadowCluster(), 1)
			checkEDSOnly(t, f, "removing an endpoint", envoyBefore, pushesBefore, responsesBefore, edsOnly, edsSuccess)

			f.shadow.Reset()
			second.Reset()
			sendPhase(t, f, "removed", n)
			if got := f.shadow.WaitCount(f.ctx, n, 300*time.Millisecond); got != n || second.Count() != 0 {
				t.Errorf("after removing the second endpoint: remaining endpoint got %d copies, removed one %d; want %d and 0", got, second.Count(), n)
			}
		})
	}
}

// checkEDSOnly checks that a change re-sent EDS alone: one endpoint push
// and only endpoint responses from the control plane, and in Envoy only the
// shadow cluster's EDS stats moved, its update_success among them.
func checkEDSOnly(t *testing.T, f *mirrorFixture, what string, envoyBefore, pushesBefore, responsesBefore map[string]uint64, edsOnly *regexp.Regexp, edsSuccess string) {
	t.Helper()
	// A wrongly re-sent type would follow the endpoints in the same
	// snapshot; give its response time to arrive.
	time.Sleep(200 * time.Millisecond)
	checkCounterDeltas(t, what+": control-plane pushes", pushesBefore, f.cp.XDS.Pushes(), map[string]uint64{"endpoint": 1})
	responsesAfter, err := f.cp.XDSResponses()
	must(t, err)
	checkCounterDeltas(t, what+": control-plane xDS responses", responsesBefore, responsesAfter, map[string]uint64{"endpoint": 1})
	envoyAfter := configCounters(t, f)
	checkOnlyChanged(t, envoyBefore, envoyAfter, edsOnly)
	if envoyAfter[edsSuccess] != envoyBefore[edsSuccess]+1 {
		t.Errorf("%s: Envoy %s went from %d to %d, want one EDS update", what, edsSuccess, envoyBefore[edsSuccess], envoyAfter[edsSuccess])
	}
}

// sendPhase sends n requests, all of which must succeed.
func sendPhase(t *testing.T, f *mirrorFixture, phase string, n int) {
	t.Helper()
	res := harness.SendN(f.ctx, f.client, n, 8, func(ctx context.Context, i int) *http.Request {
		return f.get(ctx, fmt.Sprintf("/entrance/%s/%d", phase, i))
	})
	if res.Errors() != 0 {
		t.Fatalf("%s: %d of %d primary requests failed; first: %s", phase, res.Errors(), n, res.FirstError())
	}
}
