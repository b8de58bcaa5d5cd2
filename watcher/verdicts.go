package watcher

import (
	"fmt"
	"slices"

	"github.com/hashicorp/go-hclog"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/record"

	"github.com/shadowplane/shadowplane/internal/contenthash"
	"github.com/shadowplane/shadowplane/policy"
)

// Event reasons recorded on policy ConfigMaps.
const (
	// ReasonPolicyApplied: a new or changed policy is in force.
	ReasonPolicyApplied = "PolicyApplied"
	// ReasonPolicyRejected: a policy, entry or key is invalid; the message
	// says what stays in force instead.
	ReasonPolicyRejected = "PolicyRejected"
	// ReasonTargetMissing: a Service the policy names does not exist; the
	// policy is in force and takes effect once it does.
	ReasonTargetMissing = "TargetMissing"
	// ReasonPolicyWarning: the parser warns about a policy that is still
	// valid.
	ReasonPolicyWarning = "PolicyWarning"
	// ReasonPolicyRemoved: a policy is no longer defined and is out of force.
	ReasonPolicyRemoved = "PolicyRemoved"
	// ReasonMirrorTLSInvalid: the Secret or CA ConfigMap a mirror names is
	// missing or unusable; that mirror gets no copies until it is fixed,
	// the rest of the policy stays in force.
	ReasonMirrorTLSInvalid = "MirrorTLSInvalid"
	// ReasonBackendNotReady: a routeTo Service has no ready endpoint, so its
	// share of the requests stays on the stable version.
	ReasonBackendNotReady = "BackendNotReady"
	// ReasonRouteCapExceeded: with this policy, the policies of its Service
	// and port would need more routes than a listener may have, so
	// sidecars leave it out.
	ReasonRouteCapExceeded = "RouteCapExceeded"
)

const (
	eventNormal  = corev1.EventTypeNormal
	eventWarning = corev1.EventTypeWarning
)

// subject is what a verdict is about: a policy definition in a key, an
// unnamed entry of a key, or a whole key.
type subject struct {
	source keySource
	// policy is the policy name; "" for an unnamed entry or the whole key.
	policy string
	// index is -1 for the whole key, the entry position for an unnamed
	// entry or a name repeated within one key, and 0 otherwise (so that
	// moving a policy within its list is not a new verdict).
	index int
}

// verdict is everything reported about one subject.
type verdict struct {
	subject subject
	// policy is the valid version read from the subject, if any.
	policy *policy.Policy
	notes  []note
}

// note is one Event, and one log line.
type note struct {
	eventType string
	reason    string
	message   string
}

// fingerprint identifies a verdict's content, so an unchanged verdict is not
// reported again.
func (v verdict) fingerprint(encode func(*policy.Policy) []byte) string {
	var encoded []byte // empty when there is none: JSON never is
	if v.policy != nil {
		if encode == nil {
			encode = policyJSON
		}
		encoded = encode(v.policy)
	}
	parts := [][]byte{encoded}
	for _, n := range v.notes {
		parts = append(parts, []byte(n.eventType), []byte(n.reason), []byte(n.message))
	}
	return contenthash.Of(parts...)
}

// reporter turns verdicts into log lines and Events, each once per change.
// Every replica logs; only the leader records Events, so replicas do not
// duplicate them.
type reporter struct {
	recorder record.EventRecorder
	log      hclog.Logger
	// encode is policyJSON, possibly remembered across builds; nil
	// encodes afresh.
	encode func(*policy.Policy) []byte
	// logged holds the fingerprint of the last verdict logged for each
	// subject that still has one.
	logged map[subject]string
	// recorded is the same for Events; while this replica follows it is
	// left as is, and a new leader seeds it from the status annotations
	// (seed) so that it does not record again what the old leader did.
	recorded map[subject]string
}

func newReporter(recorder record.EventRecorder, log hclog.Logger) *reporter {
	return &reporter{recorder: recorder, log: log, logged: map[subject]string{}, recorded: map[subject]string{}}
}

// seed replaces what the reporter believes was recorded as Events.
func (r *reporter) seed(recorded map[subject]string) { r.recorded = recorded }

// report logs the verdicts that changed since the last call, and the
// removal of policies that were in force (prev) and no longer are; with
// events, it also records them as Events. configMap finds a ConfigMap in
// the informer cache; nil when it is gone.
func (r *reporter) report(o outcome, prev map[policyID]*policy.Policy, configMap func(namespace, name string) *corev1.ConfigMap, events bool) {
	current := make(map[subject]string, len(o.verdicts))
	for _, v := range o.verdicts {
		fp := v.fingerprint(r.encode)
		current[v.subject] = fp
		logIt := r.logged[v.subject] != fp
		recordIt := events && r.recorded[v.subject] != fp
		if !logIt && !recordIt {
			continue
		}
		cm := configMap(v.subject.source.Namespace, v.subject.source.ConfigMap)
		for _, n := range v.notes {
			r.record(cm, v.subject, n, logIt, recordIt)
		}
	}
	r.logged = current
	if events {
		r.recorded = current
	}

	for _, id := range sortedIDs(prev) {
		if o.inForce[id] != nil {
			continue
		}
		p := prev[id]
		src := subject{source: keySource{Namespace: id.Namespace, ConfigMap: p.Source.ConfigMap, Key: p.Source.Key}, policy: id.Name}
		cm := configMap(id.Namespace, p.Source.ConfigMap)
		msg := fmt.Sprintf("policy %s removed: ConfigMap %s was deleted or lost its policy label; its copies stop", id.Name, p.Source.ConfigMap)
		if cm != nil {
			msg = fmt.Sprintf("policy %s removed: key %s no longer defines it; its copies stop", id.Name, p.Source.Key)
		}
		r.record(cm, src, note{eventType: eventNormal, reason: ReasonPolicyRemoved, message: msg}, true, events)
	}
}

// record logs one note and, when asked and its ConfigMap still exists,
// records it as an Event on it.
func (r *reporter) record(cm *corev1.ConfigMap, s subject, n note, logIt, recordIt bool) {
	if logIt {
		fields := []any{"reason", n.reason, "namespace", s.source.Namespace, "configmap", s.source.ConfigMap}
		if s.source.Key != "" {
			fields = append(fields, "key", s.source.Key)
		}
		if s.policy != "" {
			fields = append(fields, "policy", s.policy)
		}
		if n.eventType == eventWarning {
			r.log.Warn(n.message, fields...)
		} else {
			r.log.Info(n.message, fields...)
		}
	}
	if recordIt && cm != nil {
		r.recorder.Event(cm, n.eventType, n.reason, n.message)
	}
}

// sortedIDs returns the keys of a policy map in order, so reports are
// deterministic.
func sortedIDs(m map[policyID]*policy.Policy) []policyID {
	ids := make([]policyID, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, comparePolicyIDs)
	return ids
}
