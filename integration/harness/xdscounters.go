package harness

import (
	"fmt"
)

// XDSResponses returns, by short xDS type (listener, route, cluster,
// endpoint, runtime), how many responses the control plane has sent to
// proxies: the shadowplane_xds_responses_total series. Where Pushes counts
// snapshot changes, this counts what actually went out on the streams.
func (c *ControlPlane) XDSResponses() (map[string]uint64, error) {
	families, err := c.Registry.Gather()
	if err != nil {
		return nil, fmt.Errorf("gather control-plane metrics: %w", err)
	}
	out := map[string]uint64{}
	for _, f := range families {
		if f.GetName() != "shadowplane_xds_responses_total" {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "type" {
					out[l.GetValue()] = uint64(m.GetCounter().GetValue())
				}
			}
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("control plane exports no shadowplane_xds_responses_total")
	}
	return out, nil
}

// EventToSnapshot returns the sum (seconds) and count of the
// shadowplane_event_to_snapshot_seconds histogram: per snapshot, the time
// from the first Kubernetes event the watcher observed to the snapshot
// being set (debounce, World building, translation, SetSnapshot).
func (c *ControlPlane) EventToSnapshot() (sum float64, count uint64, err error) {
	families, err := c.Registry.Gather()
	if err != nil {
		return 0, 0, fmt.Errorf("gather control-plane metrics: %w", err)
	}
	for _, f := range families {
		if f.GetName() == "shadowplane_event_to_snapshot_seconds" {
			for _, m := range f.GetMetric() {
				sum += m.GetHistogram().GetSampleSum()
				count += m.GetHistogram().GetSampleCount()
			}
			return sum, count, nil
		}
	}
	return 0, 0, fmt.Errorf("control plane exports no shadowplane_event_to_snapshot_seconds")
}
