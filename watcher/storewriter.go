package watcher

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/hashicorp/go-hclog"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/clock"

	"github.com/shadowplane/shadowplane/policy"
)

const (
	// statusRefresh is how often the leader recounts the sidecars that
	// acknowledged each policy; a changed count is written at most this
	// often per ConfigMap.
	statusRefresh = time.Second
	// patchTimeout bounds one annotation patch.
	patchTimeout = 10 * time.Second
	// inFlight is how long a written value is trusted to be on its way to
	// the informer cache before it is written again.
	inFlight = 3 * time.Second
)

// desiredAnnotations is what the leader wants on one policy ConfigMap,
// before sidecar counts.
type desiredAnnotations struct {
	lastValid string
	status    *ConfigMapStatus
	// inForce are the policies read from the ConfigMap that are in force,
	// by key and name, to count their sidecars.
	inForce map[[2]string]*policy.Policy
}

// writtenAnnotations is the last patch sent for one ConfigMap.
type writtenAnnotations struct {
	lastValid, status string
	at                time.Time
}

// storeWriter writes the leader's annotations (AnnotationLastValid and
// AnnotationStatus) on the policy ConfigMaps, off the watcher's build loop:
// each build replaces what is desired, and the writer patches what differs
// from the informer cache. Only the leader writes; every replica computes
// the same desired state, so a new leader has it at once.
type storeWriter struct {
	client   kubernetes.Interface
	log      hclog.Logger
	clock    clock.Clock
	identity string
	// acked counts the synced sidecars by the Service they front; nil
	// counts none.
	acked func() map[string]int
	// cached returns a ConfigMap from the informer cache, nil when absent.
	cached   func(configMapRef) *corev1.ConfigMap
	isLeader func() bool
	disabled bool
	metrics  *metrics
	kick     chan struct{}

	mu      sync.Mutex
	desired map[configMapRef]desiredAnnotations
	written map[configMapRef]writtenAnnotations // owned by run
}

// desiredLastValid is the last-valid annotation the latest build wants on
// ref, written or not yet.
func (s *storeWriter) desiredLastValid(ref configMapRef) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.desired[ref]
	return d.lastValid, ok
}

// set replaces the desired annotations and wakes the writer.
func (s *storeWriter) set(desired map[configMapRef]desiredAnnotations) {
	s.mu.Lock()
	s.desired = desired
	s.mu.Unlock()
	s.wake()
}

func (s *storeWriter) wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// run writes until ctx is done.
func (s *storeWriter) run(ctx context.Context) {
	s.written = map[configMapRef]writtenAnnotations{}
	for {
		t := s.clock.NewTimer(statusRefresh)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-s.kick:
		case <-t.C():
		}
		t.Stop()
		if s.isLeader() && !s.disabled {
			s.writeAll(ctx)
		}
	}
}

// writeAll patches every ConfigMap whose annotations differ from the
// desired ones.
func (s *storeWriter) writeAll(ctx context.Context) {
	s.mu.Lock()
	desired := s.desired
	s.mu.Unlock()
	refs := make([]configMapRef, 0, len(desired))
	for ref := range desired {
		refs = append(refs, ref)
	}
	slices.SortFunc(refs, func(a, b configMapRef) int {
		return compareKeySources(keySource{Namespace: a.Namespace, ConfigMap: a.Name}, keySource{Namespace: b.Namespace, ConfigMap: b.Name})
	})
	for ref := range s.written {
		if _, ok := desired[ref]; !ok {
			delete(s.written, ref)
		}
	}
	var acked map[string]int
	if s.acked != nil {
		acked = s.acked()
	}
	for _, ref := range refs {
		// Leadership is checked before each patch: a replica that lost the
		// Lease during a pass (a stall longer than the lease) must not go on
		// writing what its older view holds.
		if ctx.Err() != nil || !s.isLeader() {
			return
		}
		d := desired[ref]
		status, err := s.encodeStatus(d, acked)
		if err != nil {
			s.log.Error("cannot encode policy status", "namespace", ref.Namespace, "configmap", ref.Name, "error", err)
			continue
		}
		cm := s.cached(ref)
		if cm == nil {
			continue
		}
		if cm.Annotations[AnnotationLastValid] == d.lastValid && cm.Annotations[AnnotationStatus] == status {
			continue
		}
		w := s.written[ref]
		if w.lastValid == d.lastValid && w.status == status && s.clock.Since(w.at) < inFlight {
			continue // written; the cache has not caught up yet
		}
		if err := s.patch(ctx, ref, d.lastValid, status); err != nil {
			s.metrics.storeWrites.WithLabelValues("error").Inc()
			s.log.Warn("cannot write the policy status and last valid versions; will retry", "namespace", ref.Namespace, "configmap", ref.Name, "error", err)
			continue
		}
		s.metrics.storeWrites.WithLabelValues("ok").Inc()
		s.written[ref] = writtenAnnotations{lastValid: d.lastValid, status: status, at: s.clock.Now()}
	}
}

// encodeStatus fills in the sidecar counts (by Service) and renders the
// status.
func (s *storeWriter) encodeStatus(d desiredAnnotations, acked map[string]int) (string, error) {
	st := *d.status
	st.CountedBy = s.identity
	st.Policies = slices.Clone(st.Policies)
	for i := range st.Policies {
		p := d.inForce[[2]string{st.Policies[i].Key, st.Policies[i].Name}]
		if p != nil && st.Policies[i].AppliedVersion != "" {
			st.Policies[i].SidecarsAcked = acked[p.Namespace+"/"+p.Service]
		}
	}
	b, err := json.Marshal(st)
	return string(b), err
}

// patch merges the two annotations into the ConfigMap; nothing else of it
// is touched, so it never conflicts with a user's edit. (It is not made
// conditional on the resourceVersion read: a user's edit right after a
// valid version would then refuse the write that stores that version, and
// the older stored version would win over it.)
func (s *storeWriter) patch(ctx context.Context, ref configMapRef, lastValid, status string) error {
	body, err := json.Marshal(map[string]any{"metadata": map[string]any{"annotations": map[string]string{
		AnnotationLastValid: lastValid,
		AnnotationStatus:    status,
	}}})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, patchTimeout)
	defer cancel()
	_, err = s.client.CoreV1().ConfigMaps(ref.Namespace).Patch(ctx, ref.Name, types.MergePatchType, body, metav1.PatchOptions{FieldManager: EventComponent})
	if apierrors.IsNotFound(err) {
		return nil // deleted meanwhile; the next build forgets it
	}
	if err != nil {
		return fmt.Errorf("patch ConfigMap %s/%s: %w", ref.Namespace, ref.Name, err)
	}
	return nil
}

// desiredFrom turns an outcome into the annotations every policy ConfigMap
// should carry.
func desiredFrom(o outcome, recorded map[subject]string, configMaps []*corev1.ConfigMap, enc storeEncodings) (map[configMapRef]desiredAnnotations, error) {
	statuses := statusOf(o, recorded, configMaps, enc)
	byConfigMap := map[configMapRef][]*policy.Policy{}
	for id, p := range o.inForce {
		ref := configMapRef{id.Namespace, p.Source.ConfigMap}
		byConfigMap[ref] = append(byConfigMap[ref], p)
	}
	out := make(map[configMapRef]desiredAnnotations, len(statuses))
	for ref, st := range statuses {
		lastValid, err := enc.lastValid(ref, byConfigMap[ref])
		if err != nil {
			return nil, err
		}
		inForce := map[[2]string]*policy.Policy{}
		for _, p := range byConfigMap[ref] {
			inForce[[2]string{p.Source.Key, p.Name}] = p
		}
		out[ref] = desiredAnnotations{lastValid: lastValid, status: st, inForce: inForce}
	}
	return out, nil
}

// echoes reports whether a ConfigMap update changed only the last-valid
// annotation, to what this replica would write itself: the leader's write
// of the policies every replica already has in force, which needs no
// World.
func (s *storeWriter) echoes(oldObj, newObj any) bool {
	a, okA := oldObj.(*corev1.ConfigMap)
	b, okB := newObj.(*corev1.ConfigMap)
	if !okA || !okB || !maps.Equal(a.Labels, b.Labels) || !maps.Equal(a.Data, b.Data) {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.desired[configMapRef{b.Namespace, b.Name}]
	return ok && b.Annotations[AnnotationLastValid] == d.lastValid
}
