package watcher

import (
	"context"
	"testing"
	"time"

	testingclock "k8s.io/utils/clock/testing"
)

// Generous bound for the debounce goroutine to react; the machine is shared
// and noisy, and no assertion depends on how fast it reacts.
const reactTimeout = 10 * time.Second

type firing struct {
	first time.Time // the burst's first change, as handed to fire
	at    time.Time // fake time when fire ran
}

type debounceRig struct {
	t     *testing.T
	clock *testingclock.FakeClock
	d     *debouncer
	fired chan firing
	t0    time.Time
}

func startDebouncer(t *testing.T, quiet, maxDelay time.Duration) *debounceRig {
	t.Helper()
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	fc := testingclock.NewFakeClock(t0)
	r := &debounceRig{t: t, clock: fc, d: newDebouncer(fc, quiet, maxDelay), fired: make(chan firing, 100), t0: t0}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.d.run(ctx, func(first time.Time) { r.fired <- firing{first: first, at: fc.Now()} })
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return r
}

// parked waits until the loop waits on a timer: it has looked at the pending
// burst and found it not due yet. Any fire before that would already be in
// r.fired, so checking r.fired afterwards is race-free.
func (r *debounceRig) parked() {
	r.t.Helper()
	deadline := time.Now().Add(reactTimeout)
	for !r.clock.HasWaiters() {
		if time.Now().After(deadline) {
			r.t.Fatal("debounce loop never waited on a timer")
		}
		time.Sleep(time.Millisecond)
	}
}

// step marks nothing, advances the fake clock, and checks that nothing fired.
func (r *debounceRig) stepWithoutFire(d time.Duration) {
	r.t.Helper()
	r.parked()
	r.clock.Step(d)
	r.parked()
	r.noFire()
}

func (r *debounceRig) noFire() {
	r.t.Helper()
	select {
	case f := <-r.fired:
		r.t.Fatalf("fired early, at +%v (burst from +%v)", f.at.Sub(r.t0), f.first.Sub(r.t0))
	default:
	}
}

// stepToFire advances the fake clock and waits for the fire it must cause.
func (r *debounceRig) stepToFire(d time.Duration) firing {
	r.t.Helper()
	r.parked()
	r.clock.Step(d)
	select {
	case f := <-r.fired:
		return f
	case <-time.After(reactTimeout):
		r.t.Fatalf("no fire after stepping to +%v", r.clock.Now().Sub(r.t0))
		return firing{}
	}
}

// settle gives a wrongly pending fire a moment to show up. It cannot make a
// correct debouncer fail, so it is no latency assertion.
func (r *debounceRig) settle() {
	r.t.Helper()
	time.Sleep(50 * time.Millisecond)
	r.noFire()
}

func TestDebounceCoalescesBurst(t *testing.T) {
	r := startDebouncer(t, 100*time.Millisecond, time.Second)
	for range 20 {
		r.d.mark()
	}
	r.stepWithoutFire(99 * time.Millisecond)
	f := r.stepToFire(time.Millisecond)
	if !f.first.Equal(r.t0) {
		t.Errorf("fire got first change at +%v, want +0", f.first.Sub(r.t0))
	}
	r.settle()
}

func TestDebounceWaitsForQuiet(t *testing.T) {
	r := startDebouncer(t, 100*time.Millisecond, time.Second)
	r.d.mark()
	r.parked()
	r.clock.Step(60 * time.Millisecond)
	r.d.mark() // at +60: quiet until +160
	r.stepWithoutFire(60 * time.Millisecond)
	r.stepWithoutFire(39 * time.Millisecond)
	f := r.stepToFire(time.Millisecond)
	if got := f.at.Sub(r.t0); got != 160*time.Millisecond {
		t.Errorf("fired at +%v, want +160ms", got)
	}
	if !f.first.Equal(r.t0) {
		t.Errorf("fire got first change at +%v, want +0", f.first.Sub(r.t0))
	}
	r.settle()
}

func TestDebounceHonoursMaxDelay(t *testing.T) {
	r := startDebouncer(t, 100*time.Millisecond, 250*time.Millisecond)
	r.d.mark()
	// A change every 50ms never leaves 100ms of quiet.
	for range 4 {
		r.stepWithoutFire(50 * time.Millisecond)
		r.d.mark()
	}
	f := r.stepToFire(50 * time.Millisecond)
	if got := f.at.Sub(r.t0); got != 250*time.Millisecond {
		t.Errorf("fired at +%v, want +250ms (MaxDelay)", got)
	}
	if !f.first.Equal(r.t0) {
		t.Errorf("fire got first change at +%v, want +0", f.first.Sub(r.t0))
	}
	r.settle()
}

func TestDebounceStartsNewBurstAfterFire(t *testing.T) {
	r := startDebouncer(t, 100*time.Millisecond, time.Second)
	r.d.mark()
	if f := r.stepToFire(100 * time.Millisecond); !f.first.Equal(r.t0) {
		t.Errorf("first burst: first change at +%v, want +0", f.first.Sub(r.t0))
	}
	r.clock.Step(time.Second)
	r.d.mark() // at +1.1s
	f := r.stepToFire(100 * time.Millisecond)
	if got := f.first.Sub(r.t0); got != 1100*time.Millisecond {
		t.Errorf("second burst: first change at +%v, want +1.1s", got)
	}
	r.settle()
}

func TestDebounceResetDropsPendingBurst(t *testing.T) {
	r := startDebouncer(t, 100*time.Millisecond, time.Second)
	r.d.mark()
	r.parked()
	r.d.reset()
	r.clock.Step(time.Second)
	r.settle()
	// The loop still serves later bursts.
	r.d.mark()
	if f := r.stepToFire(100 * time.Millisecond); f.first.Sub(r.t0) != time.Second {
		t.Errorf("burst after reset: first change at +%v, want +1s", f.first.Sub(r.t0))
	}
}
