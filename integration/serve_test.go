package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shadowplane/shadowplane/integration/harness"
)

// TestServeBinary runs the real `shadowplane serve` command against the API
// server: it gets ready, serves health and metrics, logs JSON, and stops
// cleanly on SIGTERM.
func TestServeBinary(t *testing.T) {
	e := env(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	xdsPort, err := harness.FreePort()
	must(t, err)
	httpPort, err := harness.FreePort()
	must(t, err)
	serve := harness.StartProcessT(t, exec.Command(e.shadowplane, "serve",
		"--kubeconfig", e.kube.KubeconfigPath,
		"--xds-address", fmt.Sprintf("127.0.0.1:%d", xdsPort),
		"--http-address", fmt.Sprintf("127.0.0.1:%d", httpPort),
		"--log-format", "json",
		"--shutdown-delay", "2s"), filepath.Join(t.TempDir(), "serve.log"))

	base := fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	if err := harness.WaitUntil(ctx, 30*time.Second, func() (bool, error) {
		_, err := harness.GetJSON(ctx, base+"/readyz")
		return err == nil, err
	}); err != nil {
		t.Fatalf("serve never ready: %v\n%s", err, serve.Log())
	}
	if _, err := harness.GetJSON(ctx, base+"/healthz"); err != nil {
		t.Errorf("/healthz: %v", err)
	}
	metrics, err := harness.GetJSON(ctx, base+"/metrics")
	must(t, err)
	for _, name := range []string{"shadowplane_xds_connected_proxies", "shadowplane_policies", "go_goroutines"} {
		if !strings.Contains(string(metrics), name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}

	must(t, serve.Signal(syscall.SIGTERM))
	// During the shutdown delay /readyz fails, so the Service sends new
	// sidecar streams to other replicas before this one closes its own.
	if err := harness.WaitUntil(ctx, 1500*time.Millisecond, func() (bool, error) {
		_, err := harness.GetJSON(ctx, base+"/readyz")
		return err != nil && strings.Contains(err.Error(), "503"), nil
	}); err != nil {
		t.Errorf("/readyz did not turn 503 after SIGTERM: %v", err)
	}
	select {
	case <-serve.Done():
		if err := serve.Err(); err != nil {
			t.Errorf("serve exited with %v after SIGTERM\n%s", err, serve.Log())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("serve did not stop within 15s of SIGTERM\n%s", serve.Log())
	}
	// Every log line is a JSON object with a level and a message.
	logs := serve.Log()
	lines := strings.Split(strings.TrimSpace(logs), "\n")
	if len(lines) < 2 {
		t.Fatalf("expected log lines, got %q", logs)
	}
	for _, line := range lines {
		var entry map[string]any
		if err := json.Unmarshal([]byte(line), &entry); err != nil || entry["@level"] == nil || entry["@message"] == nil {
			t.Errorf("log line is not hclog JSON: %q", line)
		}
	}
}
