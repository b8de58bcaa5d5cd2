package harness

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// ServerInfo is what Envoy's /server_info says about the process.
type ServerInfo struct {
	State string
	// Uptime is the uptime of the current hot-restart epoch, computed when
	// the admin request is served (the server.uptime gauge only moves at
	// stats flushes). It restarts from zero when Envoy restarts.
	Uptime time.Duration
}

// ServerInfo fetches /server_info.
func (e *Envoy) ServerInfo(ctx context.Context) (ServerInfo, error) {
	body, err := e.Get(ctx, "/server_info")
	if err != nil {
		return ServerInfo{}, err
	}
	var doc struct {
		State              string `json:"state"`
		UptimeCurrentEpoch string `json:"uptime_current_epoch"` // protobuf JSON Duration, e.g. "12s"
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return ServerInfo{}, fmt.Errorf("decode server_info: %w", err)
	}
	uptime, err := time.ParseDuration(doc.UptimeCurrentEpoch)
	if err != nil {
		return ServerInfo{}, fmt.Errorf("server_info uptime_current_epoch %q: %w", doc.UptimeCurrentEpoch, err)
	}
	return ServerInfo{State: doc.State, Uptime: uptime}, nil
}
