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
