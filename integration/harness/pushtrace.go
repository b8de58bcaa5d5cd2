package harness

import (
	"sync"
	"time"

	"github.com/shadowplane/shadowplane/xds"
)

// PushTrace records what the control plane's xds.Observer reports, so a
// benchmark can break a change's propagation into parts: watch event seen,
// snapshot set, response sent, ACK received.
type PushTrace struct {
	acked     chan struct{} // made by Observer
	mu        sync.Mutex
	snapshots []traceStep
	responses []traceStep
	acks      []traceStep
}

type traceStep struct {
	typ     string
	version string
	event   time.Time // snapshots only: when the watcher saw the change
	at      time.Time
}

// PushSteps are the control-plane-side times of one change.
type PushSteps struct {
	Event    time.Time // the watcher saw the Kubernetes change
	Snapshot time.Time // the translated snapshot was set
	Response time.Time // the response was handed to the proxy's stream
	Ack      time.Time // the proxy acknowledged it
}

// Observer is the hook to give the control plane (ControlPlaneOptions).
func (p *PushTrace) Observer() *xds.Observer {
	p.acked = make(chan struct{}, 1)
	return &xds.Observer{
		SnapshotSet: func(_ string, changed map[string]string, observedAt, at time.Time) {
			p.mu.Lock()
			defer p.mu.Unlock()
			for typ, version := range changed {
				p.snapshots = append(p.snapshots, traceStep{typ: typ, version: version, event: observedAt, at: at})
			}
		},
		ResponseSent: func(_, typ, version string, at time.Time) {
			p.mu.Lock()
			defer p.mu.Unlock()
			p.responses = append(p.responses, traceStep{typ: typ, version: version, at: at})
		},
		Acked: func(_, typ, version string, at time.Time) {
			p.mu.Lock()
			defer p.mu.Unlock()
			p.acks = append(p.acks, traceStep{typ: typ, version: version, at: at})
			select {
			case p.acked <- struct{}{}:
			default:
			}
		},
	}
}

// Acked is signalled after each ACK the control plane receives (coalesced
// while nobody reads it), so a benchmark can look at Envoy right then.
func (p *PushTrace) Acked() <-chan struct{} { return p.acked }

// After returns the steps of the first push of one type that follows
// `since`: its snapshot, the first response carrying that snapshot's
// version, and the first ACK of it. ok is false while any is missing.
// Meant for one change at a time, with one proxy.
func (p *PushTrace) After(typ string, since time.Time) (steps PushSteps, ok bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	snapshot, found := firstStep(p.snapshots, typ, since, "")
	if !found {
		return steps, false
	}
	response, found := firstStep(p.responses, typ, snapshot.at, snapshot.version)
	if !found {
		return steps, false
	}
	ack, found := firstStep(p.acks, typ, response.at, snapshot.version)
	if !found {
		return steps, false
	}
	return PushSteps{Event: snapshot.event, Snapshot: snapshot.at, Response: response.at, Ack: ack.at}, true
}

// Responses counts the responses of one type sent at or after since.
func (p *PushTrace) Responses(typ string, since time.Time) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, s := range p.responses {
		if s.typ == typ && !s.at.Before(since) {
			n++
		}
	}
	return n
}

// firstStep is the first step of typ at or after since (with version, when
// given).
func firstStep(steps []traceStep, typ string, since time.Time, version string) (traceStep, bool) {
	for _, s := range steps {
		if s.typ == typ && !s.at.Before(since) && (version == "" || s.version == version) {
			return s, true
		}
	}
	return traceStep{}, false
}
