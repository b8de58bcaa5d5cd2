package watcher

import (
	"context"
	"slices"
	"testing"
	"time"

	testingclock "k8s.io/utils/clock/testing"
)

// Generous bound for the debounce goroutine to react; the machine is shared
// and noisy, and no assertion depends on how fast it reacts.
const reactTimeout = 10 * time.Second

// handoff is one fire, in fake time since the start of the run.
type handoff struct {
	at    time.Duration // when fire ran
	first time.Duration // the first change it folds in
}

type debounceCase struct {
	name            string
	quiet, maxDelay time.Duration
	// marks are the fake times of the changes, ascending; several at one
	// time are marked one after the other, each once the loop has reacted
	// to the one before.
	marks []time.Duration
	// markDuring lists the handoffs (0-based) during which one more change
	// arrives, as when an informer event races a push in flight.
	markDuring []int
	want       []handoff
}

func ms(n int) time.Duration { return time.Duration(n) * time.Millisecond }

// every returns n change times, step apart from 0.
func every(step time.Duration, n int) []time.Duration {
	out := make([]time.Duration, n)
	for i := range out {
		out[i] = time.Duration(i) * step
	}
	return out
}

var debounceCases = []debounceCase{
	{
		name: "lone change is handed on at once", quiet: ms(10), maxDelay: ms(50),
		marks: []time.Duration{0},
		want:  []handoff{{0, 0}},
	},
	{
		name: "changes a quiet spell apart are each handed on at once", quiet: ms(10), maxDelay: ms(50),
		marks: []time.Duration{0, ms(10), ms(40)},
		want:  []handoff{{0, 0}, {ms(10), ms(10)}, {ms(40), ms(40)}},
	},
	{
		name: "20 changes/s: one handoff each, none delayed", quiet: ms(10), maxDelay: ms(50),
		marks: every(ms(50), 10),
		want: []handoff{{0, 0}, {ms(50), ms(50)}, {ms(100), ms(100)}, {ms(150), ms(150)}, {ms(200), ms(200)},
			{ms(250), ms(250)}, {ms(300), ms(300)}, {ms(350), ms(350)}, {ms(400), ms(400)}, {ms(450), ms(450)}},
	},
	{
		name: "burst within the debounce: leading and trailing handoff", quiet: ms(10), maxDelay: ms(50),
		marks: []time.Duration{0, ms(2), ms(4), ms(6), ms(8)},
		want:  []handoff{{0, 0}, {ms(18), ms(2)}},
	},
	{
		name: "burst at one instant: leading and trailing handoff", quiet: ms(10), maxDelay: ms(50),
		marks: []time.Duration{0, 0, 0, 0, 0},
		want:  []handoff{{0, 0}, {ms(10), 0}},
	},
	{
		name: "change during a handoff waits for quiet", quiet: ms(10), maxDelay: ms(50),
		marks: []time.Duration{0}, markDuring: []int{0},
		want: []handoff{{0, 0}, {ms(10), 0}},
	},
	{
		name: "sustained changes: a handoff at least every max-delay", quiet: ms(10), maxDelay: ms(50),
		marks: every(ms(5), 40),
		want:  []handoff{{0, 0}, {ms(55), ms(5)}, {ms(105), ms(55)}, {ms(155), ms(105)}, {ms(205), ms(155)}},
	},
	{
		name: "after a burst and a quiet spell, a lone change is at once again", quiet: ms(10), maxDelay: ms(50),
		marks: []time.Duration{0, ms(3), ms(30)},
		want:  []handoff{{0, 0}, {ms(13), ms(3)}, {ms(30), ms(30)}},
	},
	{
		name: "longer debounce, same shape", quiet: ms(100), maxDelay: ms(250),
		marks: []time.Duration{0, ms(60), ms(120), ms(180), ms(240), ms(300), ms(600)},
		want:  []handoff{{0, 0}, {ms(310), ms(60)}, {ms(600), ms(600)}},
	},
}

func TestDebounce(t *testing.T) {
	for _, tc := range debounceCases {
		t.Run(tc.name, func(t *testing.T) {
			got := simulateDebounce(t, tc)
			if !slices.Equal(got, tc.want) {
				t.Fatalf("handoffs (at, first change):\n got %v\nwant %v", got, tc.want)
			}
			// The properties the table spells out, checked on their own.
			last := tc.marks[len(tc.marks)-1]
			if end := got[len(got)-1]; end.at < last {
				t.Errorf("last handoff at %v precedes the last change at %v: the final state was never handed on", end.at, last)
			}
			for _, h := range got {
				if h.at-h.first > tc.maxDelay {
					t.Errorf("handoff at %v held a change from %v back longer than max-delay %v", h.at, h.first, tc.maxDelay)
				}
			}
		})
	}
}

// simulateDebounce runs a debouncer on a fake clock, moving it 1 ms at a
// time and marking each change at its time, and returns every handoff up to
// well after the last change.
func simulateDebounce(t *testing.T, tc debounceCase) []handoff {
	t.Helper()
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	fc := testingclock.NewFakeClock(t0)
	d := newDebouncer(fc, tc.quiet, tc.maxDelay)
	fired := make(chan handoff, 1000)
	count := 0
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.run(ctx, func(first time.Time) {
			fired <- handoff{at: fc.Now().Sub(t0), first: first.Sub(t0)}
			if slices.Contains(tc.markDuring, count) {
				d.mark()
			}
			count++
		})
	}()
	defer func() {
		cancel()
		<-done
	}()

	settle := func() { waitSettled(t, "debounce loop", func() bool { return d.settled(fc.HasWaiters()) }) }
	end := tc.marks[len(tc.marks)-1] + tc.maxDelay + tc.quiet
	next := 0
	for now := time.Duration(0); now <= end; now += time.Millisecond {
		if now > 0 {
			fc.Step(time.Millisecond)
		}
		settle()
		for next < len(tc.marks) && tc.marks[next] == now {
			d.mark()
			settle()
			next++
		}
	}
	close(fired)
	var got []handoff
	for h := range fired {
		got = append(got, h)
	}
	return got
}

func TestDebounceResetDropsPendingBurst(t *testing.T) {
	fc := testingclock.NewFakeClock(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	d := newDebouncer(fc, ms(10), ms(50))
	d.mark()
	d.reset()
	if pending, _, _ := d.due(); pending {
		t.Fatal("a reset debouncer still has a burst pending")
	}
	d.mark()
	if pending, wait, _ := d.due(); !pending || wait != 0 {
		t.Fatalf("a change after reset: pending %v, wait %v; want pending, due at once", pending, wait)
	}
}

// waitSettled waits until a loop driven by a fake clock has settled, so the
// test may step the clock.
func waitSettled(t *testing.T, what string, settled func() bool) {
	t.Helper()
	deadline := time.Now().Add(reactTimeout)
	for !settled() {
		if time.Now().After(deadline) {
			t.Fatal(what + " never settled")
		}
		time.Sleep(100 * time.Microsecond)
	}
}
