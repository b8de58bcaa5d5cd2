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
	kick     chan struct{}

	mu    sync.Mutex
	queue []builtVerdicts
	first time.Time // when the oldest waiting report was queued
	last  time.Time // when the latest was
	// reporting is true while taken reports are being made.
	reporting bool
}

func newPublisher(c clock.Clock, quiet, maxDelay time.Duration, publish func(builtVerdicts)) *publisher {
	return &publisher{clock: c, quiet: quiet, maxDelay: maxDelay, publish: publish, kick: make(chan struct{}, 1)}
}

// add queues the report of a World just handed on. It never blocks.
func (p *publisher) add(v builtVerdicts) {
	now := p.clock.Now()
	p.mu.Lock()
	if len(p.queue) == 0 {
		p.first = now
	}
	p.last = now
	p.queue = append(p.queue, v)
	p.mu.Unlock()
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// due returns how long to wait before the queued reports are made, or,
// when they are due, takes them.
func (p *publisher) due() (wait time.Duration, reports []builtVerdicts) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.queue) == 0 {
		return 0, nil
	}
	deadline := p.last.Add(p.quiet)
	if limit := p.first.Add(p.maxDelay); limit.Before(deadline) {
		deadline = limit
	}
	if wait := deadline.Sub(p.clock.Now()); wait > 0 {
		return wait, nil
	}
	reports, p.queue = p.queue, nil
	p.reporting = true
	return 0, reports
}

// settled reports whether the loop has nothing to do until the clock moves
// or a report is added: no report is being made, and none waits unless a
// timer is armed for it. Tests use it to step a fake clock without races.
func (p *publisher) settled(timerArmed bool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return !p.reporting && (len(p.queue) == 0 || timerArmed)
}

// run makes the reports as they come due until ctx is done, and then the
// ones still waiting.
func (p *publisher) run(ctx context.Context) {
	for {
		wait, reports := p.due()
		switch {
		case len(reports) > 0:
			p.report(reports)
			continue
		case wait == 0: // nothing queued
			select {
			case <-ctx.Done():
				p.flush()
				return
			case <-p.kick:
			}
		default:
			// A report queued meanwhile only moves the deadline later:
			// due() recomputes it when the timer fires.
			t := p.clock.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				p.flush()
				return
			case <-t.C():
			}
		}
	}
}

// flush makes every waiting report at once.
func (p *publisher) flush() {
	p.mu.Lock()
	reports := p.queue
	p.queue = nil
	p.reporting = true
	p.mu.Unlock()
	p.report(reports)
}

func (p *publisher) report(reports []builtVerdicts) {
	for _, v := range reports {
		p.publish(v)
	}
	p.mu.Lock()
	p.reporting = false
	p.mu.Unlock()
}
