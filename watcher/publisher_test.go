package watcher

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	testingclock "k8s.io/utils/clock/testing"
)

// report is one report made, in fake time since the start of the run.
type report struct {
	at    time.Duration
	build string
}

var publisherCases = []struct {
	name            string
	quiet, maxDelay time.Duration
	// adds are the fake times at which a World is handed on, ascending.
	adds []time.Duration
	// stopAt, when set, ends the run then.
	stopAt time.Duration
	want   []report
}{
	{
		name: "a lone World is reported after the quiet time, not at once", quiet: ms(10), maxDelay: ms(50),
		adds: []time.Duration{0},
		want: []report{{ms(10), "b0"}},
	},
	{
		name: "Worlds a quiet spell apart are each reported on their own", quiet: ms(10), maxDelay: ms(50),
		adds: []time.Duration{0, ms(30)},
		want: []report{{ms(10), "b0"}, {ms(40), "b1"}},
	},
	{
		name: "Worlds closer than the quiet time are reported together, in order", quiet: ms(10), maxDelay: ms(50),
		adds: []time.Duration{0, ms(4), ms(8)},
		want: []report{{ms(18), "b0"}, {ms(18), "b1"}, {ms(18), "b2"}},
	},
	{
		name: "a stream of Worlds is reported at least every maxDelay", quiet: ms(10), maxDelay: ms(20),
		adds: every(ms(5), 9),
		// A report added at the instant its batch comes due (b4 at 20, b8
		// at 40) waits for the next batch.
		want: []report{
			{ms(20), "b0"}, {ms(20), "b1"}, {ms(20), "b2"}, {ms(20), "b3"},
			{ms(40), "b4"}, {ms(40), "b5"}, {ms(40), "b6"}, {ms(40), "b7"},
			{ms(50), "b8"},
		},
	},
	{
		name: "stopping reports what waits", quiet: ms(10), maxDelay: ms(50),
		adds: []time.Duration{0, ms(2)}, stopAt: ms(5),
		want: []report{{ms(5), "b0"}, {ms(5), "b1"}},
	},
}

// TestPublisher: reports wait for a quiet spell after the latest World,
// never longer than maxDelay, and are made in the order the Worlds were
// handed on.
func TestPublisher(t *testing.T) {
	for _, tc := range publisherCases {
		t.Run(tc.name, func(t *testing.T) {
			fc := testingclock.NewFakeClock(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
			start := fc.Now()
			var mu sync.Mutex
			var got []report
			p := newPublisher(fc, tc.quiet, tc.maxDelay, func(v builtVerdicts) {
				mu.Lock()
				defer mu.Unlock()
				got = append(got, report{at: fc.Since(start), build: v.configMaps[0].Name})
			})
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() {
				defer close(done)
				p.run(ctx)
			}()
			settle := func() { waitSettled(t, "publisher", func() bool { return p.settled(fc.HasWaiters()) }) }
			end := tc.stopAt
			if end == 0 {
				end = ms(200)
			}
			next := 0
			for now := time.Duration(0); now <= end; now += ms(1) {
				if now > 0 {
					fc.Step(ms(1))
				}
				settle() // what came due at this instant is reported first
				for next < len(tc.adds) && tc.adds[next] == now {
					p.add(builtVerdicts{configMaps: []*corev1.ConfigMap{{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("b%d", next)}}}})
					next++
					settle()
				}
			}
			cancel() // at stopAt, or long after the last report is due
			<-done
			mu.Lock()
			defer mu.Unlock()
			if !slices.Equal(got, tc.want) {
				t.Errorf("reports = %v, want %v", got, tc.want)
			}
		})
	}
}
