package integration

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/shadowplane/shadowplane/integration/harness"
)

const (
	burstWritesPerSecond = 20
	burstDuration        = 10 * time.Second
	burstLoadRate        = 200 // requests per second through the sidecar
	// burstFinalBound is how soon after the last write its state must be in
	// force in Envoy.
	burstFinalBound = 50 * time.Millisecond
)

// burstPPM is the share of the i-th write of the burst: 1.1 % + 0.2 % × i,
// distinct and rising (and never the starting 50 %), so every state Envoy
// shows names the write it came from.
func burstPPM(i int) uint32 { return uint32(11_000 + 2_000*i) }

// burstWrite is the write whose share ppm is, or -1 for the starting state.
func burstWrite(ppm uint32) int {
	if ppm < 11_000 || (ppm-11_000)%2_000 != 0 {
		return -1
	}
	return int(ppm-11_000) / 2_000
}

// runtimeSample is one state Envoy's /runtime showed, and when it first did.
type runtimeSample struct {
	ppm uint32
	at  time.Time
}

// BenchmarkPropagationBurst writes the mirror percent 20 times a second for
// 10 s while 200 requests/s go through the sidecar, polling Envoy's
// /runtime every millisecond. It reports primary failures (must be 0), how
// soon the last write is in force (must be within 50 ms), whether Envoy ever
// showed an older state after a newer one (must not), and how many runtime
// pushes the sidecar got (no more than the writes).
func BenchmarkPropagationBurst(b *testing.B) {
	s := newBenchStack(b, false)
	writes := int(burstDuration / (time.Second / burstWritesPerSecond))
	client := harness.NewKeepAliveClient(32)

	ctx, stopSampling := context.WithCancel(s.ctx)
	var samples []runtimeSample
	var sampling sync.WaitGroup
	sampling.Add(1)
	go func() {
		defer sampling.Done()
		samples = sampleRuntime(ctx, s)
	}()

	load := make(chan harness.Results, 1)
	go func() {
		load <- harness.RunAtRate(s.ctx, client, burstLoadRate, burstDuration+time.Second, func(ctx context.Context, i int) *http.Request {
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/burst/%d", s.sidecar.URL, i), nil)
			return req
		})
	}()

	begin := time.Now()
	var lastWrite time.Time
	for i := range writes {
		time.Sleep(time.Until(begin.Add(time.Duration(i) * time.Second / burstWritesPerSecond)))
		lastWrite = s.writePolicy(policyYAML(percentOf(burstPPM(i)), ""))
	}
	final := burstPPM(writes - 1)
	finalAt, err := harness.PollUntil(s.ctx, time.Millisecond, 10*time.Second, func() (bool, error) {
		v, ok, err := s.sidecar.RuntimeValue(s.ctx, s.runtimeKey())
		return ok && harness.RuntimeShareIs(v, final), err
	})
	must(b, err)
	// Keep watching a while: an older state after the final one would be
	// out of order too.
	time.Sleep(500 * time.Millisecond)
	stopSampling()
	sampling.Wait()
	results := <-load
	pushes := s.trace.Responses("runtime", begin)

	outOfOrder := runtimeOutOfOrder(samples)
	toFinal := finalAt.Sub(lastWrite)
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(results.Errors()), "primary-failures")
	b.ReportMetric(ms(toFinal), "final-ms")
	b.ReportMetric(float64(pushes), "runtime-pushes")

	var t strings.Builder
	fmt.Fprintf(&t, "\n### Burst: %d percent writes/s for %s under %d requests/s\n\n", burstWritesPerSecond, burstDuration, burstLoadRate)
	fmt.Fprintf(&t, "| writes | runtime pushes | states seen in /runtime | out of order | primary requests | primary failures | last write → in force |\n")
	fmt.Fprintf(&t, "|---:|---:|---:|---:|---:|---:|---:|\n")
	fmt.Fprintf(&t, "| %d | %d | %d | %d | %d | %d | %s ms |\n", writes, pushes, len(samples), len(outOfOrder),
		len(results.All), results.Errors(), harness.Millis(toFinal))
	fmt.Fprintf(&t, "\nMachine: %s\n", harness.MachineDescription(env(b).envoy))
	fmt.Print(t.String())

	if n := results.Errors(); n > 0 {
		b.Errorf("%d of %d primary requests failed during the burst; first: %s", n, len(results.All), results.FirstError())
	}
	if len(outOfOrder) > 0 {
		b.Errorf("Envoy showed older states after newer ones: %s", strings.Join(outOfOrder, "; "))
	}
	if toFinal > burstFinalBound {
		b.Errorf("the last write took %s to be in force, above %s", toFinal, burstFinalBound)
	}
	if pushes > writes {
		b.Errorf("the sidecar got %d runtime pushes for %d writes", pushes, writes)
	}
}

// sampleRuntime polls the mirror's runtime value every millisecond until
// ctx ends, and returns each change of value with when it was first seen.
func sampleRuntime(ctx context.Context, s *benchStack) []runtimeSample {
	var out []runtimeSample
	ticker := time.NewTicker(time.Millisecond)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return out
		case <-ticker.C:
		}
		v, ok, err := s.sidecar.RuntimeValue(ctx, s.runtimeKey())
		if err != nil || !ok {
			continue
		}
		ppm, ok := harness.RuntimeShare(v)
		if ok && (len(out) == 0 || out[len(out)-1].ppm != ppm) {
			out = append(out, runtimeSample{ppm: ppm, at: time.Now()})
		}
	}
}

// runtimeOutOfOrder describes every state that came from an earlier write
// than the state shown before it.
func runtimeOutOfOrder(samples []runtimeSample) []string {
	var out []string
	for i := 1; i < len(samples); i++ {
		prev, cur := burstWrite(samples[i-1].ppm), burstWrite(samples[i].ppm)
		if cur <= prev {
			out = append(out, fmt.Sprintf("write %d after write %d", cur, prev))
		}
	}
	return out
}

// percentOf writes a share in parts per million as a policy percent.
func percentOf(ppm uint32) string { return fmt.Sprintf("%d.%04d", ppm/10_000, ppm%10_000) }
