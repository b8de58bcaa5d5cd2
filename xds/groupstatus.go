package xds

import (
	"time"

	"github.com/shadowplane/shadowplane/translator"
)

// GroupStatus describes one node group's snapshot for debugging.
type GroupStatus struct {
	// Proxies is the number of connected proxy streams of the group.
	Proxies int `json:"proxies"`
	// IdleSince is when the group's last proxy disconnected; the snapshot
	// is freed IdleGroupTTL after it.
	IdleSince *time.Time `json:"idleSince,omitempty"`
	// SetAt is when the snapshot last changed; nil while the group waits
	// for the first World.
	SetAt *time.Time `json:"setAt,omitempty"`
	// Types by short type name; empty while the group has no snapshot.
	Types map[string]SnapshotType `json:"types"`
}

// SnapshotType is one xDS type of a snapshot.
type SnapshotType struct {
	Version   string   `json:"version"`
	Resources []string `json:"resources"`
}

// Snapshots returns every known node group's snapshot, by group key.
func (s *Server) Snapshots() map[string]GroupStatus {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]GroupStatus, len(s.groups))
	for key, g := range s.groups {
		gs := GroupStatus{Proxies: g.streams, Types: map[string]SnapshotType{}}
		if g.streams == 0 && !g.idleSince.IsZero() {
			idle := g.idleSince
			gs.IdleSince = &idle
		}
		if g.snapshot != nil {
			set := g.snapshot.set
			gs.SetAt = &set
			for _, t := range translator.ResourceTypes {
				gs.Types[t.Name] = SnapshotType{
					Version:   g.snapshot.versions[t.URL],
					Resources: append([]string{}, g.snapshot.names[t.URL]...),
				}
			}
		}
		out[key] = gs
	}
	return out
}
