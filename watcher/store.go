package watcher

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"

	"github.com/shadowplane/shadowplane/internal/contenthash"
	"github.com/shadowplane/shadowplane/policy"
)

// Annotations the leader writes on each policy ConfigMap. They live on the
// ConfigMap itself, not on a companion object: every replica already
// watches these ConfigMaps, so it reads them at start and sees every change
// without another informer or RBAC rule beyond patch; deleting the
// ConfigMap deletes them with the policies they describe; and `kubectl get
// configmap -o yaml` shows the status next to the policies.
const (
	// AnnotationLastValid holds, as JSON, the version in force of every
	// policy read from the ConfigMap: after an invalid edit, the last valid
	// one. A replica that starts while a policy is invalid serves this
	// version, as the replicas that saw it valid do.
	AnnotationLastValid = "shadowplane.io/last-valid"
	// AnnotationStatus holds, as JSON, each policy's status (a
	// ConfigMapStatus).
	AnnotationStatus = "shadowplane.io/status"
)

// Policy states in PolicyStatus.State.
const (
	// StateApplied: the definition as written is in force.
	StateApplied = "Applied"
	// StateTargetMissing: in force, but a Service it names does not exist.
	StateTargetMissing = "TargetMissing"
	// StateKeptLastValid: the definition is invalid; the last valid version
	// stays in force.
	StateKeptLastValid = "KeptLastValid"
	// StateRejected: the definition is invalid and there was no valid
	// version before, so nothing is in force.
	StateRejected = "Rejected"
	// StateIgnored: another definition of the same name in the namespace
	// is in force; this one is ignored.
	StateIgnored = "Ignored"
)

// ConfigMapStatus is the value of AnnotationStatus.
type ConfigMapStatus struct {
	// Policies, by key then name.
	Policies []PolicyStatus `json:"policies"`
	// CountedBy is the replica (the leader) whose connected sidecars
	// PolicyStatus.SidecarsAcked counts.
	CountedBy string `json:"sidecarsCountedBy,omitempty"`
	// Verdicts are the fingerprints of the verdicts recorded as Events, by
	// subject, so a new leader does not record them again.
	Verdicts map[string]string `json:"verdicts,omitempty"`
}

// PolicyStatus is one policy's status.
type PolicyStatus struct {
	Key  string `json:"key"`
	Name string `json:"name"`
	// State is one of the State constants.
	State string `json:"state"`
	// Reason is the reason of the Event that explains the state.
	Reason  string `json:"reason"`
	Message string `json:"message,omitempty"`
	// AppliedVersion is a hash of the version in force ("" when none): the
	// same on every replica.
	AppliedVersion string `json:"appliedVersion,omitempty"`
	// SidecarsAcked counts the sidecars connected to CountedBy that have
	// acknowledged the configuration holding AppliedVersion.
	SidecarsAcked int `json:"sidecarsAcked"`
}

// configMapRef names a ConfigMap.
type configMapRef struct {
	Namespace string
	Name      string
}

// encodeLastValid renders the policies in force read from one ConfigMap, in
// (key, name) order.
func encodeLastValid(policies []*policy.Policy) (string, error) {
	return encodeSorted(sortForStore(policies))
}

// sortForStore orders policies as AnnotationLastValid lists them.
func sortForStore(policies []*policy.Policy) []*policy.Policy {
	sorted := append([]*policy.Policy{}, policies...)
	slices.SortFunc(sorted, func(a, b *policy.Policy) int {
		return cmp.Or(strings.Compare(a.Source.Key, b.Source.Key), strings.Compare(a.Name, b.Name))
	})
	return sorted
}

func encodeSorted(sorted []*policy.Policy) (string, error) {
	b, err := json.Marshal(sorted)
	if err != nil {
		return "", fmt.Errorf("encode last valid policies: %w", err)
	}
	return string(b), nil
}

// decodeLastValid reads AnnotationLastValid of cm. Entries that do not
// belong to cm (a copied annotation) are dropped: a ConfigMap vouches only
// for its own policies.
func decodeLastValid(cm *corev1.ConfigMap) ([]*policy.Policy, error) {
	return decodeLastValidRaw(configMapRef{cm.Namespace, cm.Name}, cm.Annotations[AnnotationLastValid])
}

// decodeLastValidRaw is decodeLastValid of the annotation value raw on the
// ConfigMap ref.
func decodeLastValidRaw(ref configMapRef, raw string) ([]*policy.Policy, error) {
	if raw == "" {
		return nil, nil
	}
	var policies []*policy.Policy
	if err := json.Unmarshal([]byte(raw), &policies); err != nil {
		return nil, fmt.Errorf("ConfigMap %s/%s annotation %s: %w", ref.Namespace, ref.Name, AnnotationLastValid, err)
	}
	out := policies[:0]
	for _, p := range policies {
		if p != nil && p.Namespace == ref.Namespace && p.Source.ConfigMap == ref.Name && p.Name != "" {
			out = append(out, p)
		}
	}
	return out, nil
}

// storeEncodings remembers, for one build, what the store derives from
// each policy and each ConfigMap's policies in force. Policies are
// immutable and a World shares the unchanged ones with the previous one,
// so with the previous build's encodings a change to one policy encodes
// that policy and its ConfigMap again, not all of them (with 1,000
// policies, encoding them all was most of the cost of a one-policy
// change). The zero value remembers nothing.
type storeEncodings struct {
	prev, next *storeEncodingMaps
}

type storeEncodingMaps struct {
	json      map[*policy.Policy][]byte
	versions  map[*policy.Policy]string
	lastValid map[configMapRef]encodedLastValid
}

type encodedLastValid struct {
	sorted  []*policy.Policy
	encoded string
}

func newStoreEncodingMaps() *storeEncodingMaps {
	return &storeEncodingMaps{json: map[*policy.Policy][]byte{}, versions: map[*policy.Policy]string{}, lastValid: map[configMapRef]encodedLastValid{}}
}

// nextBuild starts a build that reuses what the last one encoded.
func (e storeEncodings) nextBuild() storeEncodings {
	return storeEncodings{prev: e.next, next: newStoreEncodingMaps()}
}

// version is computePolicyVersion(p), the applied version of a policy,
// remembered.
func (e storeEncodings) version(p *policy.Policy) string {
	if e.next != nil {
		if v, ok := e.next.versions[p]; ok {
			return v
		}
		if v, ok := e.prev.versionOf(p); ok {
			e.next.versions[p] = v
			return v
		}
	}
	v := contenthash.Of(e.json(p))
	if e.next != nil {
		e.next.versions[p] = v
	}
	return v
}

// json is policyJSON(p), remembered.
func (e storeEncodings) json(p *policy.Policy) []byte {
	if e.next != nil {
		if b, ok := e.next.json[p]; ok {
			return b
		}
		if e.prev != nil {
			if b, ok := e.prev.json[p]; ok {
				e.next.json[p] = b
				return b
			}
		}
	}
	b := policyJSON(p)
	if e.next != nil {
		e.next.json[p] = b
	}
	return b
}

// lastValidOf is what the build remembered of ref's policies.
func (m *storeEncodingMaps) lastValidOf(ref configMapRef) ([]*policy.Policy, bool) {
	if m == nil {
		return nil, false
	}
	c, ok := m.lastValid[ref]
	return c.sorted, ok
}

func (m *storeEncodingMaps) versionOf(p *policy.Policy) (string, bool) {
	if m == nil {
		return "", false
	}
	v, ok := m.versions[p]
	return v, ok
}

// lastValid is encodeLastValid(policies) for the ConfigMap ref, remembered.
func (e storeEncodings) lastValid(ref configMapRef, policies []*policy.Policy) (string, error) {
	sorted := sortForStore(policies)
	if e.prev != nil {
		if c, ok := e.prev.lastValid[ref]; ok && slices.Equal(c.sorted, sorted) {
			e.next.lastValid[ref] = c
			return c.encoded, nil
		}
	}
	encoded, err := encodeSorted(sorted)
	if err == nil && e.next != nil {
		e.next.lastValid[ref] = encodedLastValid{sorted: sorted, encoded: encoded}
	}
	return encoded, err
}

// computePolicyVersion is the applied version of a policy: a hash of its
// content, leaving out its position in its list.
func computePolicyVersion(p *policy.Policy) string {
	return contenthash.Of(policyJSON(p))
}

// policyJSON encodes a policy as verdicts and versions compare it: its
// place in its list (Source.Index) is left out, since a policy moving
// within its list is not a change. Policy holds only plain values, slices
// and pointers to structs, which always encode; should that ever change,
// the error text stands in.
func policyJSON(p *policy.Policy) []byte {
	c := *p
	c.Source.Index = 0
	b, err := json.Marshal(c)
	if err != nil {
		b = []byte(err.Error())
	}
	return b
}

// subjectName is a subject's name within its ConfigMap, for
// ConfigMapStatus.Verdicts.
func subjectName(s subject) string {
	return s.source.Key + "/" + s.policy + "/" + strconv.Itoa(s.index)
}

// statusOf builds each policy ConfigMap's status from an outcome, without
// sidecar counts. configMaps are every policy ConfigMap; each gets a status,
// even an empty one.
func statusOf(o outcome, recorded map[subject]string, configMaps []*corev1.ConfigMap, enc storeEncodings) map[configMapRef]*ConfigMapStatus {
	out := make(map[configMapRef]*ConfigMapStatus, len(configMaps))
	for _, cm := range configMaps {
		out[configMapRef{cm.Namespace, cm.Name}] = &ConfigMapStatus{Policies: []PolicyStatus{}}
	}
	type policyKey struct {
		cm        configMapRef
		key, name string
	}
	seen := map[policyKey]bool{}
	for _, v := range o.verdicts {
		s := v.subject
		st := out[configMapRef{s.source.Namespace, s.source.ConfigMap}]
		if st == nil || s.policy == "" || s.index != 0 {
			continue // key-level and unnamed entries: their Events say it
		}
		inForce := o.inForce[policyID{Namespace: s.source.Namespace, Name: s.policy}]
		ps := PolicyStatus{Key: s.source.Key, Name: s.policy}
		switch {
		case inForce != nil && (inForce.Source.ConfigMap != s.source.ConfigMap || inForce.Source.Key != s.source.Key):
			// Another definition of the name won; this one is ignored.
			ps.State, ps.Reason, ps.Message = StateIgnored, ReasonPolicyWarning, firstMessage(v.notes)
		default:
			if inForce != nil {
				ps.AppliedVersion = enc.version(inForce)
			}
			ps.State, ps.Reason, ps.Message = stateOf(v.notes, inForce != nil)
		}
		st.Policies = append(st.Policies, ps)
		seen[policyKey{configMapRef{s.source.Namespace, s.source.ConfigMap}, s.source.Key, s.policy}] = true
	}
	// Policies kept because their key cannot be read have no verdict of
	// their own.
	for _, id := range sortedIDs(o.inForce) {
		p := o.inForce[id]
		ref := configMapRef{id.Namespace, p.Source.ConfigMap}
		st := out[ref]
		if st == nil || seen[policyKey{ref, p.Source.Key, id.Name}] {
			continue
		}
		st.Policies = append(st.Policies, PolicyStatus{
			Key: p.Source.Key, Name: id.Name, State: StateKeptLastValid, Reason: ReasonPolicyRejected,
			Message:        "key " + p.Source.Key + " cannot be read; the last valid version stays in force",
			AppliedVersion: enc.version(p),
		})
	}
	for s, fp := range recorded {
		st := out[configMapRef{s.source.Namespace, s.source.ConfigMap}]
		if st == nil {
			continue
		}
		if st.Verdicts == nil {
			st.Verdicts = map[string]string{}
		}
		st.Verdicts[subjectName(s)] = fp
	}
	for _, st := range out {
		slices.SortFunc(st.Policies, func(a, b PolicyStatus) int {
			return strings.Compare(a.Key+"\x00"+a.Name, b.Key+"\x00"+b.Name)
		})
	}
	return out
}

// stateOf reads a policy's state from its verdict's notes: the first
// rejection or missing target explains it, else the applied note.
func stateOf(notes []note, inForce bool) (state, reason, message string) {
	for _, n := range notes {
		if n.reason == ReasonPolicyRejected {
			if inForce {
				return StateKeptLastValid, n.reason, n.message
			}
			return StateRejected, n.reason, n.message
		}
	}
	for _, n := range notes {
		if n.reason == ReasonTargetMissing {
			return StateTargetMissing, n.reason, n.message
		}
	}
	for _, n := range notes {
		if n.reason == ReasonPolicyApplied {
			return StateApplied, n.reason, n.message
		}
	}
	if !inForce {
		return StateRejected, ReasonPolicyRejected, ""
	}
	return StateApplied, ReasonPolicyApplied, ""
}

func firstMessage(notes []note) string {
	if len(notes) == 0 {
		return ""
	}
	return notes[0].message
}

// recordedVerdicts reads the verdict fingerprints a previous leader stored
// on cm.
func recordedVerdicts(cm *corev1.ConfigMap) map[string]string {
	raw, ok := cm.Annotations[AnnotationStatus]
	if !ok {
		return nil
	}
	var st ConfigMapStatus
	if json.Unmarshal([]byte(raw), &st) != nil {
		return nil
	}
	return st.Verdicts
}

// parseSubjectName is the inverse of subjectName within ConfigMap cm. A
// ConfigMap key holds no "/", the index none, but an invalid policy name
// may: it is everything between the first "/" and the last.
func parseSubjectName(cm configMapRef, name string) (subject, bool) {
	key, rest, ok := strings.Cut(name, "/")
	last := strings.LastIndex(rest, "/")
	if !ok || last < 0 {
		return subject{}, false
	}
	index, err := strconv.Atoi(rest[last+1:])
	if err != nil {
		return subject{}, false
	}
	return subject{source: keySource{Namespace: cm.Namespace, ConfigMap: cm.Name, Key: key}, policy: rest[:last], index: index}, true
}
