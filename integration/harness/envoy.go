package harness

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Envoy is a running Envoy process with its admin interface on loopback.
type Envoy struct {
	*Process
	AdminAddr string // 127.0.0.1:port
	client    *http.Client
}

// EnvoyLogs is how much a test Envoy logs.
type EnvoyLogs int

const (
	// DiagnosticLogs is info with Envoy's config component at debug: every
	// xDS message received, accepted or rejected, for the log tail a
	// failing test prints.
	DiagnosticLogs EnvoyLogs = iota
	// ProductionLogs is Envoy's default level, info, as the injected
	// sidecar container runs (internal/inject passes no --log-level).
	// Benchmarks that time Envoy use it: the debug lines are formatted and
	// written on Envoy's main thread, which applies xDS, before the ACK.
	ProductionLogs
)

// StartEnvoy runs the Envoy binary with a bootstrap file and waits until its
// admin interface answers (not until it is /ready: that needs the control
// plane's first config).
func StartEnvoy(ctx context.Context, envoyPath, bootstrapPath string, adminPort uint32, dir string) (*Envoy, error) {
	return StartEnvoyArgs(ctx, envoyPath, bootstrapArgs(bootstrapPath), adminPort, dir)
}

// bootstrapArgs are the arguments of a test Envoy run from a bootstrap file.
func bootstrapArgs(bootstrapPath string) []string {
	return []string{"-c", bootstrapPath, "--drain-time-s", "1"}
}

// StartEnvoyArgs is StartEnvoy with Envoy's own arguments (the bootstrap's
// -c among them), e.g. those of an injected pod's sidecar container, and
// DiagnosticLogs.
func StartEnvoyArgs(ctx context.Context, envoyPath string, args []string, adminPort uint32, dir string) (*Envoy, error) {
	return StartEnvoyLogs(ctx, envoyPath, args, DiagnosticLogs, adminPort, dir)
}

// StartEnvoyLogs is StartEnvoyArgs with the log level chosen.
func StartEnvoyLogs(ctx context.Context, envoyPath string, args []string, logs EnvoyLogs, adminPort uint32, dir string) (*Envoy, error) {
	// Several Envoys on one machine must not share hot-restart memory.
	argv := []string{"--disable-hot-restart"}
	if logs == DiagnosticLogs {
		argv = append(argv, "--log-level", "info", "--component-log-level", "upstream:info,config:debug")
	}
	proc, err := StartProcess(exec.Command(envoyPath, append(argv, args...)...), filepath.Join(dir, "envoy-"+strconv.Itoa(int(adminPort))+".log"))
	if err != nil {
		return nil, err
	}
	e := &Envoy{
		Process:   proc,
		AdminAddr: fmt.Sprintf("127.0.0.1:%d", adminPort),
		client:    &http.Client{Timeout: 5 * time.Second},
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := e.Get(ctx, "/server_info"); err == nil {
			return e, nil
		}
		select {
		case <-e.Done():
			return nil, fmt.Errorf("envoy exited at start: %s", e.LogTail(30))
		case <-ctx.Done():
			e.Stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			e.Stop()
			return nil, fmt.Errorf("envoy admin did not answer in 30s: %s", e.LogTail(30))
		}
	}
}

// Get fetches an admin path.
func (e *Envoy) Get(ctx context.Context, path string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+e.AdminAddr+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return body, fmt.Errorf("envoy admin %s: %s: %s", path, resp.Status, strings.TrimSpace(string(body)))
	}
	return body, nil
}

// WaitReady waits for /ready to answer LIVE (all initial config applied).
func (e *Envoy) WaitReady(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		body, err := e.Get(ctx, "/ready")
		if err == nil && strings.TrimSpace(string(body)) == "LIVE" {
			return nil
		}
		if e.Exited() {
			return fmt.Errorf("envoy exited: %s", e.LogTail(30))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("envoy not ready after %s (last: %q %v): %s", timeout, body, err, e.LogTail(30))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Stats returns counters and gauges whose names match the regex filter.
func (e *Envoy) Stats(ctx context.Context, filter string) (map[string]uint64, error) {
	body, err := e.Get(ctx, "/stats?format=json&filter="+url.QueryEscape(filter))
	if err != nil {
		return nil, err
	}
	var doc struct {
		Stats []struct {
			Name  string          `json:"name"`
			Value json.RawMessage `json:"value"`
		} `json:"stats"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("decode stats: %w", err)
	}
	out := map[string]uint64{}
	for _, s := range doc.Stats {
		if s.Name == "" || len(s.Value) == 0 {
			continue // histograms come as a separate object
		}
		var v uint64
		if err := json.Unmarshal(s.Value, &v); err == nil {
			out[s.Name] = v
		}
	}
	return out, nil
}

// Stat returns one counter or gauge (0 when Envoy has not created it).
func (e *Envoy) Stat(ctx context.Context, name string) (uint64, error) {
	stats, err := e.Stats(ctx, "^"+regexp.QuoteMeta(name)+"$")
	if err != nil {
		return 0, err
	}
	return stats[name], nil
}

// RuntimeValue returns the final value of a runtime key from /runtime, and
// whether the key exists.
func (e *Envoy) RuntimeValue(ctx context.Context, key string) (string, bool, error) {
	body, err := e.Get(ctx, "/runtime")
	if err != nil {
		return "", false, err
	}
	var doc struct {
		Entries map[string]struct {
			FinalValue string `json:"final_value"`
		} `json:"entries"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return "", false, fmt.Errorf("decode runtime: %w", err)
	}
	entry, ok := doc.Entries[key]
	return entry.FinalValue, ok, nil
}

// ClusterHosts returns the addresses (host:port) Envoy has for a cluster in
// /clusters?format=json.
func (e *Envoy) ClusterHosts(ctx context.Context, cluster string) ([]string, error) {
	body, err := e.Get(ctx, "/clusters?format=json")
	if err != nil {
		return nil, err
	}
	var doc struct {
		ClusterStatuses []struct {
			Name         string `json:"name"`
			HostStatuses []struct {
				Address struct {
					SocketAddress struct {
						Address   string `json:"address"`
						PortValue int    `json:"port_value"`
					} `json:"socket_address"`
				} `json:"address"`
			} `json:"host_statuses"`
		} `json:"cluster_statuses"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		return nil, fmt.Errorf("decode clusters: %w", err)
	}
	for _, c := range doc.ClusterStatuses {
		if c.Name != cluster {
			continue
		}
		hosts := []string{}
		for _, h := range c.HostStatuses {
			hosts = append(hosts, fmt.Sprintf("%s:%d", h.Address.SocketAddress.Address, h.Address.SocketAddress.PortValue))
		}
		return hosts, nil
	}
	return nil, errors.New("cluster " + cluster + " not found in envoy")
}

// ConfigDump returns /config_dump, optionally for one resource kind, e.g.
// "dynamic_route_configs".
func (e *Envoy) ConfigDump(ctx context.Context, resource string) ([]byte, error) {
	path := "/config_dump"
	if resource != "" {
		path += "?resource=" + resource
	}
	return e.Get(ctx, path)
}
