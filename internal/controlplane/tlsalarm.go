package controlplane

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	corev1 "k8s.io/api/core/v1"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"

	"github.com/shadowplane/shadowplane/internal/copystats"
	"github.com/shadowplane/shadowplane/policy"
	"github.com/shadowplane/shadowplane/statnames"
	"github.com/shadowplane/shadowplane/translator"
)

// ReasonMirrorTLSHandshakeFailing is the Warning Event of a mirror whose
// TLS connections to its target fail although its Secret and CA are valid:
// the CA did not sign the target's certificate, or the target refuses the
// handshake (e.g. it requires a client certificate the mirror does not
// send). Only the sidecars see it, in the stats they stream to the sink.
const ReasonMirrorTLSHandshakeFailing = "MirrorTLSHandshakeFailing"

// Defaults of the TLS alarm.
const (
	// DefaultTLSAlarmInterval is how often the alarm reads the sink's TLS
	// counts.
	DefaultTLSAlarmInterval = 5 * time.Second
	// tlsAlarmRepeat is how long a mirror that keeps failing waits for its
	// next Event of the same kind; one that recovered in between gets the
	// next one at once.
	tlsAlarmRepeat = 5 * time.Minute
	// tlsRecoveryQuiet: a mirror has recovered when handshakes succeed and
	// none failed for this long. A handshake alone proves little: over TLS
	// 1.3 the client's handshake completes before the target checks its
	// certificate, so a refused one counts as a success and a failure.
	tlsRecoveryQuiet = time.Minute
)

// tlsFailure is a kind of TLS failure the alarm reports.
type tlsFailure int

const (
	tlsVerify tlsFailure = iota
	tlsHandshake
)

type tlsAlarmKey struct {
	mirror statnames.Mirror
	kind   tlsFailure
}

// tlsAlarmState is one mirror's and kind's reporting state.
type tlsAlarmState struct {
	lastEvent, lastFailure time.Time
	// failing is set by an Event and cleared when the mirror recovers.
	failing bool
}

// mirrorTarget is what an Event says of a mirror in force.
type mirrorTarget struct {
	configMap string // the policy's ConfigMap
	url       string
	host      string // the URL's host, the default SNI
	tls       *policy.MirrorTLS
}

// tlsAlarm reads the TLS counts the sink sums from sidecar stats and, on
// the leader, records a Warning Event on the policy ConfigMap when a
// mirror's TLS failures grow. It only reads the sink (a copy under its
// lock), so it never slows a stats stream, and it only writes Events.
type tlsAlarm struct {
	counts   func() map[statnames.Mirror]copystats.TLSCounts
	leader   func() bool
	recorder record.EventRecorder
	log      hclog.Logger
	now      func() time.Time
	// targets are the mirrors in force, set from each World.
	targets atomic.Pointer[map[statnames.Mirror]mirrorTarget]

	// Owned by check's caller.
	last   map[statnames.Mirror]copystats.TLSCounts
	states map[tlsAlarmKey]*tlsAlarmState
}

func newTLSAlarm(counts func() map[statnames.Mirror]copystats.TLSCounts, leader func() bool, recorder record.EventRecorder, log hclog.Logger) *tlsAlarm {
	return &tlsAlarm{counts: counts, leader: leader, recorder: recorder, log: log, now: time.Now,
		last: map[statnames.Mirror]copystats.TLSCounts{}, states: map[tlsAlarmKey]*tlsAlarmState{}}
}

// setWorld records the URL mirrors in force, for the Events' messages.
func (a *tlsAlarm) setWorld(w *translator.World) {
	targets := map[statnames.Mirror]mirrorTarget{}
	if w != nil {
		for _, p := range w.Policies {
			for _, m := range p.Mirrors {
				if m.URL == nil {
					continue
				}
				targets[statnames.Mirror{Namespace: p.Namespace, Policy: p.Name, Mirror: m.Name}] = mirrorTarget{
					configMap: p.Source.ConfigMap, url: m.URL.Raw, host: m.URL.Host, tls: m.TLS,
				}
			}
		}
	}
	a.targets.Store(&targets)
}

// run sends Events to the API and checks every interval until ctx is
// done.
func (a *tlsAlarm) run(ctx context.Context, interval time.Duration, broadcaster record.EventBroadcaster, events typedcorev1.EventInterface) error {
	broadcaster.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: events})
	defer broadcaster.Shutdown()
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-ticker.C:
			a.check()
		}
	}
}

// check compares the counts with the last ones and reports what grew.
func (a *tlsAlarm) check() {
	counts := a.counts()
	var targets map[statnames.Mirror]mirrorTarget
	if p := a.targets.Load(); p != nil {
		targets = *p
	}
	now := a.now()
	for m, cur := range counts {
		prev := a.last[m]
		handshakes := growth(prev.Handshakes, cur.Handshakes)
		failures := [...]float64{
			tlsVerify:    growth(prev.VerifyFailures, cur.VerifyFailures),
			tlsHandshake: growth(prev.HandshakeFailures, cur.HandshakeFailures),
		}
		for kind, failed := range failures {
			key := tlsAlarmKey{m, tlsFailure(kind)}
			st := a.states[key]
			if st == nil {
				st = &tlsAlarmState{}
				a.states[key] = st
			}
			if failed == 0 {
				if handshakes > 0 && st.failing && now.Sub(st.lastFailure) >= tlsRecoveryQuiet {
					st.failing = false
					a.log.Info("the mirror's TLS connections succeed again", "namespace", m.Namespace, "policy", m.Policy, "mirror", m.Mirror)
				}
				continue
			}
			st.lastFailure = now
			if st.failing && now.Sub(st.lastEvent) < tlsAlarmRepeat {
				continue
			}
			target, ok := targets[m]
			if !ok || !a.leader() {
				continue // not a URL mirror in force, or another replica reports
			}
			a.record(m, target, tlsFailure(kind), failed)
			st.failing, st.lastEvent = true, now
		}
	}
	a.last = counts
	for key := range a.states {
		if _, ok := counts[key.mirror]; !ok {
			delete(a.states, key) // the mirror is gone; a new one starts afresh
		}
	}
}

// growth is how much a total grew; a total below the last one started
// again from zero (the sink forgot the mirror and counts it anew).
func growth(prev, cur float64) float64 {
	if cur < prev {
		return cur
	}
	return cur - prev
}

func (a *tlsAlarm) record(m statnames.Mirror, t mirrorTarget, kind tlsFailure, failed float64) {
	msg := tlsAlarmMessage(m, t, kind, failed)
	a.log.Warn(msg, "reason", ReasonMirrorTLSHandshakeFailing, "namespace", m.Namespace, "configmap", t.configMap, "policy", m.Policy, "mirror", m.Mirror)
	ref := &corev1.ObjectReference{Kind: "ConfigMap", APIVersion: "v1", Namespace: m.Namespace, Name: t.configMap}
	a.recorder.Event(ref, corev1.EventTypeWarning, ReasonMirrorTLSHandshakeFailing, msg)
}

// tlsAlarmMessage says which mirror fails, how, and what to check.
func tlsAlarmMessage(m statnames.Mirror, t mirrorTarget, kind tlsFailure, failed float64) string {
	head := fmt.Sprintf("policy %q mirror %q (%s): %.0f TLS connections to the target failed since the last check: ", m.Policy, m.Mirror, t.url, failed)
	const tail = "; no copies reach this mirror until it is fixed (the primary is not affected)"
	var sni, ca, secret string
	if t.tls != nil {
		sni, secret = t.tls.SNI, t.tls.ClientCertSecret
		if t.tls.CAConfigMap != "" {
			ca = fmt.Sprintf("the CA in ConfigMap %q key %q", m.Namespace+"/"+t.tls.CAConfigMap, t.tls.CAKey)
		}
	}
	if sni == "" {
		sni = t.host
	}
	if ca == "" {
		ca = "the system trust store"
	}
	if kind == tlsVerify {
		return head + fmt.Sprintf("Envoy could not verify the target's certificate with %s: it is not signed by that CA, or is not for the name %q", ca, sni) + tail
	}
	if secret == "" {
		return head + "the TLS handshake with the target failed: it may require a client certificate, and this mirror sends none (tls.clientCertSecret)" + tail
	}
	return head + fmt.Sprintf("the TLS handshake with the target failed: it may not accept the client certificate from Secret %q, or require another TLS version or cipher", m.Namespace+"/"+secret) + tail
}
