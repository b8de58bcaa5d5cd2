package xds

import (
	"fmt"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"github.com/shadowplane/shadowplane/nodemeta"
	"github.com/shadowplane/shadowplane/translator"
)

// groupState is what the server knows about one node group.
type groupState struct {
	group nodemeta.NodeGroup
	// streams counts the open streams of the group's proxies; idleSince is
	// when it last dropped to zero.
	streams   int
	idleSince time.Time
	// members are the group's identified streams, and synced how many of
	// them run the current snapshot (see resyncLocked). Guarded by mu.
	members map[*streamState]struct{}
	synced  int
	// snapshot describes what the cache holds for the group; nil until the
	// first snapshot is set.
	snapshot *groupSnapshot
	// inputs fingerprints the part of the World the snapshot was
	// translated from (groupInputs); an equal fingerprint needs no
	// translation.
	inputs string
	// inputRefs are the objects of the World that inputs fingerprinted
	// (groupInputRefs): while a new World holds the same ones, the group
	// needs not even the fingerprint.
	inputRefs []any
	// lastTranslated is the latest translator output, and retiring the
	// routeTo clusters it dropped that are kept a while (see retire.go).
	// Guarded by translateMu.
	lastTranslated *translator.Output
	retiring       map[string]retiringCluster
}

type groupSnapshot struct {
	versions map[string]string   // by type URL
	names    map[string][]string // by type URL, sorted
	set      time.Time
}

// SetWorld makes w the World every node group is translated from, and
// re-translates each known group. A group's snapshot is replaced only when
// some type's version changed, and then only the changed types are re-sent.
// A nil World is ignored. Safe for concurrent use.
func (s *Server) SetWorld(w *translator.World) {
	if w == nil {
		s.log.Warn("ignoring a nil World")
		return
	}
	s.translateMu.Lock()
	defer s.translateMu.Unlock()

	s.mu.Lock()
	s.world = w
	keys := make([]string, 0, len(s.groups))
	for key := range s.groups {
		keys = append(keys, key)
	}
	groups := make(map[string]nodemeta.NodeGroup, len(keys))
	for _, key := range keys {
		groups[key] = s.groups[key].group
	}
	s.mu.Unlock()

	slices.Sort(keys)
	byService := policiesByService(w)
	s.byService = byService
	for _, key := range keys {
		g := groups[key]
		refs := groupInputRefs(w, g, byService, &s.inputs)
		s.mu.Lock()
		state := s.groups[key]
		same := state != nil && state.snapshot != nil && slices.Equal(state.inputRefs, refs)
		s.mu.Unlock()
		if same {
			// The very objects this group was translated from: no hash,
			// no translation, no serialization.
			s.metrics.groupsSkipped.Inc()
			continue
		}
		inputs := groupInputs(w, g, byService, &s.inputs)
		s.mu.Lock()
		unchanged := state != nil && state.snapshot != nil && state.inputs == inputs
		s.mu.Unlock()
		if unchanged {
			// Nothing this group is translated from changed: no
			// translation, no serialization.
			s.metrics.groupsSkipped.Inc()
		} else {
			s.refreshGroup(w, g, true, inputs)
		}
		s.mu.Lock()
		if state := s.groups[key]; state != nil && state.inputs == inputs {
			state.inputRefs = refs
		}
		s.mu.Unlock()
	}
	s.inputs.sweep()
}

// ensureGroupSnapshot gives a group its first snapshot from the latest
// World, so a new proxy's first request is answered at once. Without a
// World yet the group waits for the first SetWorld: a control plane that
// has just started must not replace a reconnecting proxy's mirrors with a
// forward-only config before it has read the policies.
func (s *Server) ensureGroupSnapshot(key string) {
	s.translateMu.Lock()
	defer s.translateMu.Unlock()

	s.mu.Lock()
	g, w := s.groups[key], s.world
	var group nodemeta.NodeGroup
	needed := g != nil && g.snapshot == nil && w != nil
	if needed {
		group = g.group
	}
	s.mu.Unlock()

	if needed {
		if s.byService == nil {
			s.byService = policiesByService(w)
		}
		s.refreshGroup(w, group, false, groupInputs(w, group, s.byService, &s.inputs))
	}
}

// refreshGroup translates w for one group and sets the group's snapshot if
// any version changed. Callers hold translateMu. observeEvent says whether
// w's ObservedAt dates this change (true for SetWorld, false when a new
// proxy merely joins); inputs is groupInputs(w, group).
func (s *Server) refreshGroup(w *translator.World, group nodemeta.NodeGroup, observeEvent bool, inputs string) {
	key := group.Key()
	logger := s.log.With("group", key)

	out, ok := s.translateGroup(w, group)
	if !ok {
		return
	}
	s.mu.Lock()
	state := s.groups[key]
	s.mu.Unlock()
	if state != nil {
		var again time.Time
		if out, again = state.retainRouteClusters(out, time.Now()); !again.IsZero() {
			s.refreshGroupAt(key, again)
		}
	}
	built, err := buildSnapshot(out)
	if err != nil {
		s.metrics.snapshotErrors.WithLabelValues(reasonInvalid).Inc()
		logger.Error("translation produced an unusable snapshot; keeping the previous one", "error", err)
		return
	}

	s.mu.Lock()
	var previous map[string]string
	if g := s.groups[key]; g != nil && g.snapshot != nil {
		previous = g.snapshot.versions
		g.inputs = inputs
	}
	s.mu.Unlock()
	changed := changedTypes(previous, built.versions)
	if len(changed) == 0 {
		return
	}

	if s.observer.SnapshotSet != nil {
		s.observeSnapshot(key, changed, built.versions, w, observeEvent)
	}
	// SetSnapshot fails only when a resource cannot be marshalled, before
	// it stores anything: the group keeps its previous snapshot, and the
	// record below must too.
	if err := s.cache.SetSnapshot(s.ctx, key, built); err != nil {
		s.metrics.snapshotErrors.WithLabelValues(reasonSetSnapshot).Inc()
		logger.Error("cannot encode the new snapshot; keeping the previous one", "error", err)
		return
	}
	now := time.Now()

	s.mu.Lock()
	if g := s.groups[key]; g != nil {
		if g.snapshot == nil {
			s.snapshotGroups++
		}
		g.snapshot = &groupSnapshot{versions: built.versions, names: built.names, set: now}
		g.inputs = inputs
		for st := range g.members {
			s.resyncLocked(st)
		}
	}
	for _, t := range changed {
		s.pushCounts[t]++
		s.metrics.pushes.WithLabelValues(t).Inc()
	}
	s.metrics.groups.Set(float64(s.snapshotGroups))
	s.mu.Unlock()

	if observeEvent && !w.ObservedAt.IsZero() {
		s.metrics.eventToSnapshot.Observe(now.Sub(w.ObservedAt).Seconds())
	}
	if len(built.unversioned) > 0 {
		logger.Warn("translator gave no version for some types; using a content hash", "types", strings.Join(built.unversioned, ","))
	}
	for _, warning := range out.Warnings {
		logger.Warn("translation warning", "warning", warning)
	}
	logger.Info("snapshot set", "changed", strings.Join(changed, ","))
}

// observeSnapshot tells the Observer of a snapshot about to be set.
func (s *Server) observeSnapshot(group string, changed []string, versions map[string]string, w *translator.World, observeEvent bool) {
	translated := time.Now()
	byName := make(map[string]string, len(changed))
	for _, t := range translator.ResourceTypes {
		if slices.Contains(changed, t.Name) {
			byName[t.Name] = versions[t.URL]
		}
	}
	var observedAt time.Time
	if observeEvent {
		observedAt = w.ObservedAt
	}
	s.observer.SnapshotSet(group, byName, observedAt, translated)
}

// translateGroup runs the translator, timing it. A panic is a translator
// bug: it is logged and counted, and the group keeps its previous snapshot
// instead of taking the control plane down.
func (s *Server) translateGroup(w *translator.World, group nodemeta.NodeGroup) (out *translator.Output, ok bool) {
	start := time.Now()
	defer func() {
		s.metrics.translation.Observe(time.Since(start).Seconds())
		if r := recover(); r != nil {
			s.metrics.snapshotErrors.WithLabelValues(reasonTranslatePanic).Inc()
			s.log.Error("translator panicked; keeping the previous snapshot", "group", group.Key(),
				"panic", fmt.Sprint(r), "stack", string(debug.Stack()))
			out, ok = nil, false
		}
	}()
	return s.translate(w, group), true
}

// changedTypes returns the short names of the types whose version differs,
// in ADS order.
func changedTypes(previous, next map[string]string) []string {
	var changed []string
	for _, t := range translator.ResourceTypes {
		if previous == nil || previous[t.URL] != next[t.URL] {
			changed = append(changed, t.Name)
		}
	}
	return changed
}

// sweepIdleGroups clears the snapshots of groups with no proxy connected
// for idleTTL; go-control-plane would otherwise keep them forever.
func (s *Server) sweepIdleGroups(now time.Time) {
	// translateMu keeps a concurrent SetWorld from setting a snapshot for a
	// group between its removal here and ClearSnapshot.
	s.translateMu.Lock()
	defer s.translateMu.Unlock()

	s.mu.Lock()
	var idle []string
	for key, g := range s.groups {
		if g.streams == 0 && now.Sub(g.idleSince) >= s.idleTTL {
			idle = append(idle, key)
			if g.snapshot != nil {
				s.snapshotGroups--
			}
			delete(s.groups, key)
		}
	}
	s.metrics.groups.Set(float64(s.snapshotGroups))
	s.mu.Unlock()

	for _, key := range idle {
		// A proxy of this group connecting now registers the group afresh
		// and waits on translateMu for its first snapshot.
		s.cache.ClearSnapshot(key)
		s.log.Debug("cleared the snapshot of an idle node group", "group", key)
	}
}
