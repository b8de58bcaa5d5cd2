package integration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/shadowplane/shadowplane/integration/harness"
)

// primaryP99Bound is how slow the primary's 99th percentile may get while
// the shadow misbehaves. It is loose on purpose (the machine is shared and
// noisy): what it catches is the primary waiting for the shadow, which
// takes 2 s or forever in these tests.
const primaryP99Bound = time.Second

// TestIsolationShadowFailures: with every request copied to a shadow that
// refuses connections, hangs, or answers after 2 s, every primary request
// still answers 200 quickly, while the shadow cluster's guards (outlier
// detection, connection and pending-request circuit breakers) visibly trip.
func TestIsolationShadowFailures(t *testing.T) {
	tests := []struct {
		name string
		// guard is the policy's guard block (YAML flow mapping), "" for
		// the defaults.
		guard       string
		setup       func(f *mirrorFixture)
		requests    int
		concurrency int
		// check inspects the shadow cluster's stats (names without the
		// "cluster.<name>." prefix) and the shadow backend.
		check func(t *testing.T, f *mirrorFixture, stats map[string]uint64)
	}{
		{
			name: "refused/default guard",
			setup: func(f *mirrorFixture) {
				port, err := harness.ClosedPort(env(f.t).endpointHost)
				must(f.t, err)
				f.pointShadowAt(port)
			},
			requests: 300, concurrency: 16,
			check: func(t *testing.T, f *mirrorFixture, stats map[string]uint64) {
				// Refused connects are local-origin failures: after 5 in a
				// row outlier detection ejects the only host (for 30 s).
				expectStat(t, stats, "upstream_cx_connect_fail", atLeast(5))
				expectStat(t, stats, "outlier_detection.ejections_enforced_consecutive_local_origin_failure", atLeast(1))
				expectStat(t, stats, "upstream_rq_2xx", exactly(0))
				// The ejection reaches the workers asynchronously (Envoy
				// merges host updates for up to 1 s after the endpoint
				// change); once it has, copies fail at once (no panic
				// routing), without a connect attempt, and the primary
				// still answers.
				f.waitShadowStat("outlier_detection.ejections_active", 1)
				f.waitCopiesFailFast()
				before := f.shadowClusterStats()
				const more = 100
				res := harness.SendN(f.ctx, f.client, more, 8, func(ctx context.Context, i int) *http.Request {
					return f.get(ctx, fmt.Sprintf("/entrance/ejected/%d", i))
				})
				if res.Errors() != 0 {
					t.Fatalf("%d of %d primary requests failed with the shadow ejected; first: %s", res.Errors(), more, res.FirstError())
				}
				after := f.shadowClusterStats()
				t.Logf("after ejection: %v", nonZero(after))
				if d := after["upstream_cx_connect_fail"] - before["upstream_cx_connect_fail"]; d != 0 {
					t.Errorf("%d connect attempts to the ejected shadow, want 0", d)
				}
				if d := after["upstream_cx_none_healthy"] - before["upstream_cx_none_healthy"]; d != more {
					t.Errorf("%d copies failed fast for want of a healthy host, want %d", d, more)
				}
			},
		},
		{
			name:  "hang/default guard",
			setup: func(f *mirrorFixture) { f.shadow.SetBehaviour(harness.Hang, 0) },
			// More hung copies than the default 64 connections + 32
			// pending requests can hold.
			requests: 400, concurrency: 32,
			check: func(t *testing.T, f *mirrorFixture, stats map[string]uint64) {
				expectStat(t, stats, "upstream_cx_overflow", atLeast(1))
				expectStat(t, stats, "upstream_rq_pending_overflow", atLeast(1))
				expectStat(t, stats, "circuit_breakers.default.cx_open", exactly(1))
				expectStat(t, stats, "circuit_breakers.default.rq_pending_open", exactly(1))
				expectStat(t, stats, "upstream_rq_2xx", exactly(0))
				// Envoy's documented connection bound is maxConnections +
				// endpoints × connection pools: 64 + 1 × 2 worker threads
				// (seen: 65 once in a CI run).
				if got := f.shadow.MaxInFlight(); got < 32 || got > 64+2 {
					t.Errorf("the hanging shadow held %d copies at once, want between 32 and the default maxConnections 64 plus Envoy's per-pool allowance of 2", got)
				}
			},
		},
		{
			name:     "slow 2s/policy guard",
			guard:    "{maxConnections: 4, maxPendingRequests: 2, maxRequests: 4}",
			setup:    func(f *mirrorFixture) { f.shadow.SetBehaviour(harness.Delay, 2*time.Second) },
			requests: 300, concurrency: 16,
			check: func(t *testing.T, f *mirrorFixture, stats map[string]uint64) {
				expectStat(t, stats, "upstream_rq_pending_overflow", atLeast(1))
				// Envoy keeps at least one connection per host and pool even
				// past maxConnections, so its documented bound is
				// maxConnections + endpoints × connection pools: 4 + 1 × 2
				// worker threads (seen: 5, with upstream_cx_overflow counting
				// the refused rest). What the shadow holds at once is checked
				// below.
				expectStat(t, stats, "upstream_cx_total", between(1, 6))
				if got := f.shadow.MaxInFlight(); got < 1 || got > 4 {
					t.Errorf("the slow shadow served %d copies at once, want 1 to the policy's maxRequests 4", got)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newMirrorFixture(t, fixtureOptions{})
			f.applyPolicy(guardedPolicyYAML("100", tt.guard))
			f.waitApplied(1_000_000)
			tt.setup(f)

			res := harness.SendN(f.ctx, f.client, tt.requests, tt.concurrency, func(ctx context.Context, i int) *http.Request {
				return f.get(ctx, fmt.Sprintf("/entrance/%d", i))
			})
			if res.Errors() != 0 {
				t.Fatalf("%d of %d primary requests failed; first: %s", res.Errors(), tt.requests, res.FirstError())
			}
			if got := f.primary.Count(); got != tt.requests {
				t.Errorf("primary got %d requests, want %d", got, tt.requests)
			}
			p50, p99 := res.Percentile(50), res.Percentile(99)
			t.Logf("primary p50 %v p99 %v over %d requests", p50, p99, tt.requests)
			if p99 > primaryP99Bound {
				t.Errorf("primary p99 %v, want under %v: the primary waited for the shadow", p99, primaryP99Bound)
			}
			stats := f.shadowClusterStats()
			t.Logf("shadow cluster stats: %v", nonZero(stats))
			tt.check(t, f, stats)
		})
	}
}

// TestIsolationBodyCopies: copies of bodies up to the guard's maxBodyBytes
// arrive intact; a larger one is not copied at all (never a truncated copy)
// and the primary gets it whole; raising maxBodyBytes lets it through, and
// the guard edit reaches Envoy promptly.
func TestIsolationBodyCopies(t *testing.T) {
	f := newMirrorFixture(t, fixtureOptions{})
	f.applyPolicy(guardedPolicyYAML("100", ""))
	f.waitApplied(1_000_000)

	// 1 MiB, under the default 4Mi: copied intact.
	sum := f.postBody(t, "one-mib", 1<<20)
	f.shadow.WaitCount(f.ctx, 1, 200*time.Millisecond)
	if copies := f.copiesOf("one-mib"); len(copies) != 1 || copies[0].BodySHA256 != sum || copies[0].BodyErr != "" {
		t.Errorf("copies of the 1 MiB POST: %v, want one with sha256 %s", describeBodies(copies), sum)
	}

	// 10 MiB, over the default: the primary gets it whole, the shadow
	// nothing. A small request after it shows copies still flow (and gives
	// a wrongly sent copy time to show up).
	f.shadow.Reset()
	before := f.shadowClusterStats()
	f.postBody(t, "ten-mib", 10<<20)
	f.postBody(t, "after-ten-mib", 100)
	f.shadow.WaitCount(f.ctx, 1, 500*time.Millisecond)
	if copies := f.copiesOf("ten-mib"); len(copies) != 0 {
		t.Errorf("the shadow got %v of the 10 MiB POST, want nothing (over maxBodyBytes)", describeBodies(copies))
	}
	if len(f.copiesOf("after-ten-mib")) != 1 {
		t.Errorf("the small POST after it was not copied: %v", describeBodies(f.shadow.Requests()))
	}
	t.Logf("shadow cluster stats that moved: %v", statDeltas(before, f.shadowClusterStats()))

	// maxBodyBytes: 16Mi lets the 10 MiB copy through, intact. Loose
	// timing: the edit changes the shadow cluster, which Envoy warms until
	// it has the cluster's endpoints; with Envoy's default initial fetch
	// timeout that took 15 s.
	start := time.Now()
	f.applyPolicy(guardedPolicyYAML("100", "{maxBodyBytes: 16Mi}"))
	f.waitShadowBodyLimit(16 << 20)
	if took := time.Since(start); took > 10*time.Second {
		t.Errorf("the guard edit took %v to reach Envoy, want well under 15s", took)
	}
	f.shadow.Reset()
	sum = f.postBody(t, "ten-mib-allowed", 10<<20)
	f.shadow.WaitCount(f.ctx, 1, 200*time.Millisecond)
	if copies := f.copiesOf("ten-mib-allowed"); len(copies) != 1 || copies[0].BodySHA256 != sum {
		t.Errorf("copies of the 10 MiB POST: %v, want one with sha256 %s", describeBodies(copies), sum)
	}
}

// TestIsolationSlowShadowUploads: a shadow that stops reading, hangs or
// answers late never slows or fails the primary's uploads, even for bodies
// that are copied (maxBodyBytes 16Mi here, so every upload is). Envoy ties
// a streamed copy to the original's flow control; the shadow cluster's
// body buffer cuts that tie. Without it a shadow that stopped reading held
// every upload of more than a few MiB until the copy was reset after 30 s.
func TestIsolationSlowShadowUploads(t *testing.T) {
	f := newMirrorFixture(t, fixtureOptions{})
	f.applyPolicy(guardedPolicyYAML("100", "{maxBodyBytes: 16Mi}"))
	f.waitApplied(1_000_000)

	for _, b := range []struct {
		name      string
		behaviour harness.Behaviour
		delay     time.Duration
	}{
		{"stops reading", harness.Stall, 0},
		{"hangs", harness.Hang, 0},
		{"answers after 2s", harness.Delay, 2 * time.Second},
	} {
		t.Run("shadow "+b.name, func(t *testing.T) {
			f.shadow.SetBehaviour(b.behaviour, b.delay)
			// Uploads from 1 to 10 MiB, four at a time.
			sizes := []int{1 << 20, 3 << 20, 6 << 20, 10 << 20}
			const rounds = 3
			seqs := make([]string, rounds*len(sizes))
			sums := make([]string, len(seqs))
			res := harness.SendN(f.ctx, f.client, len(seqs), len(sizes), func(ctx context.Context, i int) *http.Request {
				seqs[i] = fmt.Sprintf("%s-%d", strings.ReplaceAll(b.name, " ", "-"), i)
				body := bodyOfSize(seqs[i], sizes[i%len(sizes)])
				sum := sha256.Sum256(body)
				sums[i] = hex.EncodeToString(sum[:])
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, f.sidecar.URL+"/upload/"+seqs[i], bytes.NewReader(body))
				req.Header.Set("x-request-seq", seqs[i])
				return req
			})
			if res.Errors() != 0 {
				t.Fatalf("%d of %d uploads failed; first: %s", res.Errors(), len(seqs), res.FirstError())
			}
			for i, seq := range seqs {
				f.expectPrimaryBody(t, seq, sums[i], sizes[i%len(sizes)])
			}
			// Loose: an upload of 10 MiB through Envoy takes tens of ms;
			// a stalled one took 30 s.
			if slowest := res.Percentile(100); slowest > 5*time.Second {
				t.Errorf("slowest upload took %v, want under 5s: the primary waited for the shadow", slowest)
			}
			t.Logf("uploads: p50 %v, slowest %v", res.Percentile(50), res.Percentile(100))
		})
	}
}

// postBody POSTs a body of size bytes tagged with seq, expects the primary
// to answer 200 having read it whole, and returns its sha256.
func (f *mirrorFixture) postBody(t *testing.T, seq string, size int) string {
	t.Helper()
	body := bodyOfSize(seq, size)
	sum := sha256.Sum256(body)
	req, _ := http.NewRequestWithContext(f.ctx, http.MethodPost, f.sidecar.URL+"/upload/"+seq, bytes.NewReader(body))
	req.Header.Set("x-request-seq", seq)
	req.Header.Set("content-type", "application/octet-stream")
	if res := harness.Do(f.client, req); res.Err != nil || res.Status != http.StatusOK {
		t.Fatalf("%s: primary answered %d, %v", seq, res.Status, res.Err)
	}
	f.expectPrimaryBody(t, seq, hex.EncodeToString(sum[:]), size)
	return hex.EncodeToString(sum[:])
}

// expectPrimaryBody checks that the primary got request seq with the whole
// body.
func (f *mirrorFixture) expectPrimaryBody(t *testing.T, seq, sum string, size int) {
	t.Helper()
	for _, r := range f.primary.Requests() {
		if r.Header.Get("x-request-seq") == seq {
			if r.BodySHA256 != sum || r.BodyLen != int64(size) {
				t.Errorf("%s: primary got %d bytes (sha256 %s), want %d (%s)", seq, r.BodyLen, r.BodySHA256, size, sum)
			}
			return
		}
	}
	t.Errorf("%s: the primary never got the request", seq)
}

// copiesOf returns the shadow's copies of request seq.
func (f *mirrorFixture) copiesOf(seq string) []harness.Request {
	var out []harness.Request
	for _, r := range f.shadow.Requests() {
		if r.Header.Get("x-request-seq") == seq {
			out = append(out, r)
		}
	}
	return out
}

// guardedPolicyYAML is the standard test policy with a guard block.
func guardedPolicyYAML(percent, guard string) string {
	y := policyYAML(percent, "")
	if guard != "" {
		y += "  guard: " + guard + "\n"
	}
	return y
}

// bodyOfSize is a request body of exactly size bytes that differs per seq.
func bodyOfSize(seq string, size int) []byte {
	unit := []byte(seq + ":0123456789abcdefghijklmnopqrstuvwxyz\n")
	return bytes.Repeat(unit, size/len(unit)+1)[:size]
}

func describeBodies(reqs []harness.Request) []string {
	out := make([]string, 0, len(reqs))
	for _, r := range reqs {
		out = append(out, fmt.Sprintf("%s %s %d bytes sha256 %.12s err %q", r.Method, r.Path, r.BodyLen, r.BodySHA256, r.BodyErr))
	}
	return out
}

// pointShadowAt rewrites the shadow Service's EndpointSlice to the shadow
// host at port (e.g. a closed one) and waits until Envoy's shadow cluster
// has it; the policy must be applied.
func (f *mirrorFixture) pointShadowAt(port int32) {
	f.t.Helper()
	host := env(f.t).endpointHost
	must(f.t, env(f.t).kube.ApplyEndpointSlice(f.ctx, f.ns, "entrance-shadow", "http", port, harness.SliceEndpoint{Address: host, Ready: true}))
	want := fmt.Sprintf("%s:%d", host, port)
	var last []string
	err := harness.WaitUntil(f.ctx, 20*time.Second, func() (bool, error) {
		hosts, err := f.sidecar.ClusterHosts(f.ctx, f.shadowCluster())
		last = hosts
		return len(hosts) == 1 && hosts[0] == want, err
	})
	if err != nil {
		f.t.Fatalf("envoy's shadow cluster never had only %s (last %v): %v", want, last, err)
	}
}

// shadowClusterStats returns the standard shadow cluster's stats, named
// without the "cluster.<name>." prefix.
func (f *mirrorFixture) shadowClusterStats() map[string]uint64 {
	f.t.Helper()
	prefix := "cluster." + f.shadowCluster() + "."
	stats, err := f.sidecar.Stats(f.ctx, "^"+regexp.QuoteMeta(prefix))
	must(f.t, err)
	out := make(map[string]uint64, len(stats))
	for name, v := range stats {
		out[strings.TrimPrefix(name, prefix)] = v
	}
	return out
}

// waitShadowStat waits until the shadow cluster's stat name (without the
// "cluster.<name>." prefix) has value v.
func (f *mirrorFixture) waitShadowStat(name string, v uint64) {
	f.t.Helper()
	full := "cluster." + f.shadowCluster() + "." + name
	var last uint64
	err := harness.WaitUntil(f.ctx, 10*time.Second, func() (bool, error) {
		got, err := f.sidecar.Stat(f.ctx, full)
		last = got
		return got == v, err
	})
	if err != nil {
		f.t.Fatalf("%s never became %d (last %d): %v", full, v, last, err)
	}
}

// waitCopiesFailFast sends one request at a time until its copy fails for
// want of a healthy shadow host, i.e. the shadow's ejection is in force on
// Envoy's workers.
func (f *mirrorFixture) waitCopiesFailFast() {
	f.t.Helper()
	name := "cluster." + f.shadowCluster() + ".upstream_cx_none_healthy"
	start, err := f.sidecar.Stat(f.ctx, name)
	must(f.t, err)
	err = harness.WaitUntil(f.ctx, 10*time.Second, func() (bool, error) {
		if r := harness.Do(f.client, f.get(f.ctx, "/entrance/probe")); r.Err != nil || r.Status != http.StatusOK {
			return false, fmt.Errorf("primary: %v %d", r.Err, r.Status)
		}
		n, err := f.sidecar.Stat(f.ctx, name)
		return n > start, err
	})
	if err != nil {
		f.t.Fatalf("copies never failed fast on the ejected shadow: %v", err)
	}
}

// waitShadowBodyLimit waits until Envoy's shadow cluster holds copies'
// bodies up to limit bytes.
func (f *mirrorFixture) waitShadowBodyLimit(limit int) {
	f.t.Helper()
	want := fmt.Sprintf(`"max_request_bytes": %d`, limit)
	err := harness.WaitUntil(f.ctx, 20*time.Second, func() (bool, error) {
		dump, err := f.sidecar.ConfigDump(f.ctx, "dynamic_active_clusters")
		return err == nil && bytes.Contains(dump, []byte(want)), err
	})
	if err != nil {
		f.t.Fatalf("the shadow cluster never got body limit %d: %v", limit, err)
	}
}

type statCheck struct {
	ok   func(uint64) bool
	want string
}

func atLeast(n uint64) statCheck {
	return statCheck{func(v uint64) bool { return v >= n }, fmt.Sprintf("at least %d", n)}
}

func exactly(n uint64) statCheck {
	return statCheck{func(v uint64) bool { return v == n }, fmt.Sprintf("exactly %d", n)}
}

func between(lo, hi uint64) statCheck {
	return statCheck{func(v uint64) bool { return v >= lo && v <= hi }, fmt.Sprintf("from %d to %d", lo, hi)}
}

func expectStat(t *testing.T, stats map[string]uint64, name string, c statCheck) {
	t.Helper()
	if v := stats[name]; !c.ok(v) {
		t.Errorf("shadow cluster stat %s = %d, want %s", name, v, c.want)
	}
}

// statDeltas returns the counters that grew from before to after.
func statDeltas(before, after map[string]uint64) map[string]uint64 {
	out := map[string]uint64{}
	for k, v := range after {
		if v > before[k] {
			out[k] = v - before[k]
		}
	}
	return out
}

func nonZero(stats map[string]uint64) map[string]uint64 {
	out := map[string]uint64{}
	for k, v := range stats {
		if v != 0 {
			out[k] = v
		}
	}
	return out
}
