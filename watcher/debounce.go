package watcher

import (
	"context"
	"sync"
	"time"

	"k8s.io/utils/clock"
)

// debouncer decides when a change is handed on, like a rate-limited work
// queue. A change that comes after a quiet spell (no handoff for `quiet`)
// fires at once: a lone edit is not delayed. A change that comes while a
// handoff runs, or within `quiet` after one ended, is part of a burst and is
// coalesced: it fires once the changes have been quiet for `quiet`, or once
// `maxDelay` has passed since the burst's first pending change, whichever
// comes first. A burst therefore costs at most a leading and a trailing
// handoff per maxDelay, and its last handoff reads the final state.
type debouncer struct {
	clock    clock.Clock
	quiet    time.Duration
	maxDelay time.Duration
	// kick wakes the loop when a change arrives with nothing pending.
	kick chan struct{}

	mu      sync.Mutex
	pending bool
	first   time.Time // first change of the pending burst
	last    time.Time // latest change of the pending burst
	// handingOff is true while fire runs; lastHandoff is when the latest
	// fire returned (zero before the first).
	handingOff  bool
	lastHandoff time.Time
}

func newDebouncer(c clock.Clock, quiet, maxDelay time.Duration) *debouncer {
	return &debouncer{clock: c, quiet: quiet, maxDelay: maxDelay, kick: make(chan struct{}, 1)}
}

// mark records a change. It never blocks.
func (d *debouncer) mark() {
	now := d.clock.Now()
	d.mu.Lock()
	if !d.pending {
		d.pending = true
		d.first = now
	}
	d.last = now
	d.mu.Unlock()
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

// reset forgets the pending burst; the caller is about to read the state
// that burst changed anyway.
func (d *debouncer) reset() {
	d.mu.Lock()
	d.pending = false
	d.mu.Unlock()
}

// due returns how long to wait before the pending burst fires, or, when it
// is due now, takes the burst and returns the time of its first change.
func (d *debouncer) due() (pending bool, wait time.Duration, first time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if !d.pending {
		return false, 0, time.Time{}
	}
	deadline := d.first // leading edge: after a quiet spell, at once
	if !d.lastHandoff.IsZero() && d.first.Sub(d.lastHandoff) < d.quiet {
		// Part of a burst: wait for quiet, but never beyond maxDelay.
		deadline = d.last.Add(d.quiet)
		if limit := d.first.Add(d.maxDelay); limit.Before(deadline) {
			deadline = limit
		}
	}
	if wait := deadline.Sub(d.clock.Now()); wait > 0 {
		return true, wait, time.Time{}
	}
	d.pending = false
	d.handingOff = true
	return true, 0, d.first
}

// handedOff records that a fire has returned.
func (d *debouncer) handedOff() {
	now := d.clock.Now()
	d.mu.Lock()
	d.handingOff = false
	d.lastHandoff = now
	d.mu.Unlock()
}

// settled reports whether the loop has nothing to do until the clock moves
// or a change is marked: no fire runs, and nothing is pending unless a timer
// is armed for it. Tests use it to step a fake clock without races.
func (d *debouncer) settled(timerArmed bool) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return !d.handingOff && (!d.pending || timerArmed)
}

// run calls fire, from this goroutine only, for every burst until ctx is
// done. fire gets the time of the burst's first change. Changes marked
// while fire runs are handed on by a later fire, never folded into one that
// already read the state.
func (d *debouncer) run(ctx context.Context, fire func(first time.Time)) {
	for {
		pending, wait, first := d.due()
		switch {
		case !pending:
			select {
			case <-ctx.Done():
				return
			case <-d.kick:
			}
		case wait > 0:
			// Changes during the wait only move the deadline later, so the
			// timer need not be reset for them: when it fires, due()
			// recomputes the deadline.
			t := d.clock.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C():
			}
		default:
			fire(first)
			d.handedOff()
		}
	}
}
