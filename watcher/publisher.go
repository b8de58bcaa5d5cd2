package watcher

import (
	"context"
	"sync"
	"time"

	"k8s.io/utils/clock"
)

// publisher reports the verdicts of each World after the World has been
// handed on, once no World has been handed on for `quiet` (but never more
// than `maxDelay` after the oldest waiting report). The push is what
// sidecars wait for; the log lines, Events and status annotations are for
// people. Reported on the push's heels, their encoding and their API writes
// would compete with the translation and the push for CPU (and, where the
// API server shares the machine, with the proxies applying the change),
// and the status would count the sidecars' ACKs of the previous version.
// Reports run in build order, from one goroutine.
type publisher struct {
	clock    clock.Clock
	quiet    time.Duration
	maxDelay time.Duration
	publish  func(builtVerdicts)

	mu sync.Mutex
	// timer is armed, by add, for the waiting reports' deadline: adding a
	// report wakes no goroutine, so none competes with the push that was
	// just handed on.
	timer clock.Timer
	queue []builtVerdicts
	first time.Time // when the oldest waiting report was queued
	last  time.Time // when the latest was
	// reporting is true while taken reports are being made.
	reporting bool
}

func newPublisher(c clock.Clock, quiet, maxDelay time.Duration, publish func(builtVerdicts)) *publisher {
	timer := c.NewTimer(maxDelay)
	timer.Stop()
	return &publisher{clock: c, quiet: quiet, maxDelay: maxDelay, publish: publish, timer: timer}
}

// add queues the report of a World just handed on. It never blocks.
func (p *publisher) add(v builtVerdicts) {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.clock.Now()
	if len(p.queue) == 0 {
		p.first = now
	}
	p.last = now
	p.queue = append(p.queue, v)
	p.timer.Reset(p.deadlineLocked().Sub(now))
}

func (p *publisher) deadlineLocked() time.Time {
	deadline := p.last.Add(p.quiet)
	if limit := p.first.Add(p.maxDelay); limit.Before(deadline) {
		deadline = limit
	}
	return deadline
}

// due takes the waiting reports when their deadline has come; otherwise
// it re-arms the timer for it (a report added meanwhile moved it).
func (p *publisher) due() []builtVerdicts {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.queue) == 0 {
		return nil
	}
	if wait := p.deadlineLocked().Sub(p.clock.Now()); wait > 0 {
		p.timer.Reset(wait)
		return nil
	}
	reports := p.queue
	p.queue = nil
	p.reporting = true
	return reports
}

// settled reports whether the loop has nothing to do until the clock moves
// or a report is added: no report is being made, no tick of the timer
// waits to be taken, and no report waits unless the timer is armed for it.
// Tests use it to step a fake clock (whose timer channels buffer a tick)
// without races.
func (p *publisher) settled(timerArmed bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.reporting && len(p.timer.C()) == 0 && (len(p.queue) == 0 || timerArmed)
}

// run makes the reports as they come due until ctx is done, and then the
// ones still waiting.
func (p *publisher) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			p.mu.Lock()
			p.timer.Stop()
			reports := p.queue
			p.queue = nil
			p.reporting = true
			p.mu.Unlock()
			p.report(reports)
			return
		case <-p.timer.C():
			p.report(p.due())
		}
	}
}

func (p *publisher) report(reports []builtVerdicts) {
	for _, v := range reports {
		p.publish(v)
	}
	p.mu.Lock()
	p.reporting = false
	p.mu.Unlock()
}
