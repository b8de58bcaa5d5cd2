package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/shadowplane/shadowplane/integration/harness"
)

// servedBinary is a running `shadowplane serve`.
type servedBinary struct {
	proc *harness.Process
	// http is the base URL of --http-address.
	http string
}

// launchServe starts `shadowplane serve` with JSON logs, a kubeconfig, an
// xDS port on loopback, --http-address on httpHost and the extra args. The
// process is stopped when the test ends, unless it stopped before.
func launchServe(t *testing.T, kubeconfig, httpHost string, args ...string) *servedBinary {
	t.Helper()
	e := env(t)
	xdsPort, err := harness.FreePort()
	must(t, err)
	httpPort, err := harness.FreePort()
	must(t, err)
	httpAddr := net.JoinHostPort(httpHost, fmt.Sprint(httpPort))
	if !slices.Contains(args, "--insecure-xds") && !slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--xds-tls-") }) {
		// As deployed: TLS from the files `shadowplane certgen` writes.
		dir := t.TempDir()
		if out, err := exec.Command(e.shadowplane, "certgen", "--out-dir", dir, "--ip", "127.0.0.1").CombinedOutput(); err != nil {
			t.Fatalf("shadowplane certgen: %v\n%s", err, out)
		}
		args = append(args, "--xds-tls-cert-file", filepath.Join(dir, "tls.crt"), "--xds-tls-key-file", filepath.Join(dir, "tls.key"))
	}
	proc := harness.StartProcessT(t, exec.Command(e.shadowplane, append([]string{"serve",
		"--kubeconfig", kubeconfig,
		"--xds-address", fmt.Sprintf("127.0.0.1:%d", xdsPort),
		"--http-address", httpAddr,
		"--log-format", "json",
		"--shutdown-delay", "2s"}, args...)...),
		filepath.Join(t.TempDir(), "serve.log"))
	return &servedBinary{proc: proc, http: "http://" + httpAddr}
}

// startServe launches `shadowplane serve` and waits until /readyz answers
// 200.
func startServe(t *testing.T, ctx context.Context, kubeconfig, httpHost string, args ...string) *servedBinary {
	t.Helper()
	s := launchServe(t, kubeconfig, httpHost, args...)
	if err := harness.WaitUntil(ctx, 30*time.Second, func() (bool, error) {
		_, err := harness.GetJSON(ctx, s.http+"/readyz")
		return err == nil, err
	}); err != nil {
		t.Fatalf("serve never ready: %v\n%s", err, s.proc.Log())
	}
	return s
}

// logEntries parses the JSON log lines; every line must be hclog JSON with
// a level and a message, within the line bound.
func (s *servedBinary) logEntries(t *testing.T) []map[string]any {
	t.Helper()
	var entries []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(s.proc.Log()), "\n") {
		var entry map[string]any
		if err := json.Unmarshal([]byte(line), &entry); err != nil || entry["@level"] == nil || entry["@message"] == nil {
			t.Errorf("log line is not hclog JSON: %q", line)
			continue
		}
		if len(line) >= 4096 {
			t.Errorf("log line of %d bytes, over the 4 KiB bound", len(line))
		}
		entries = append(entries, entry)
	}
	return entries
}

// TestServeBinary runs the real `shadowplane serve` command against the API
// server the way a pod runs it: probes and metrics on the pod address, the
// debug endpoints on the default loopback listener only. It gets ready,
// serves each path on its own listener, logs JSON, and stops cleanly on
// SIGTERM.
func TestServeBinary(t *testing.T) {
	e := env(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s := startServe(t, ctx, e.kube.KubeconfigPath, e.endpointHost)

	if _, err := harness.GetJSON(ctx, s.http+"/healthz"); err != nil {
		t.Errorf("/healthz: %v", err)
	}
	metrics, err := harness.GetJSON(ctx, s.http+"/metrics")
	must(t, err)
	for _, name := range []string{"shadowplane_xds_connected_proxies", "shadowplane_policies", "go_goroutines", "shadowplane_xds_refused_streams_total", "shadowplane_xds_bounds_exceeded_total"} {
		if !strings.Contains(string(metrics), name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	if !strings.Contains(string(metrics), "shadowplane_xds_insecure 0") {
		t.Errorf("/metrics does not say shadowplane_xds_insecure 0 for a TLS control plane")
	}

	// Debug and pprof: on 127.0.0.1:9091 (the default), nowhere else.
	const debug = "http://127.0.0.1:9091"
	for _, path := range []string{"/debug/proxies", "/debug/snapshots", "/debug/pprof/", "/debug/pprof/heap"} {
		if _, err := harness.GetJSON(ctx, debug+path); err != nil {
			t.Errorf("debug listener %s: %v", path, err)
		}
		if _, err := harness.GetJSON(ctx, s.http+path); err == nil || !strings.Contains(err.Error(), "404") {
			t.Errorf("%s on the pod-address listener: %v, want 404", path, err)
		}
	}
	if conn, err := net.DialTimeout("tcp", net.JoinHostPort(e.endpointHost, "9091"), time.Second); err == nil {
		conn.Close()
		t.Errorf("the debug port answers on %s: it must listen on loopback only", e.endpointHost)
	}
	// `shadowplane status` finds the debug listener by default.
	if out, err := exec.CommandContext(ctx, e.shadowplane, "status").CombinedOutput(); err != nil || !strings.Contains(string(out), "no proxies connected") {
		t.Errorf("shadowplane status with its default address: %v\n%s", err, out)
	}

	must(t, s.proc.Signal(syscall.SIGTERM))
	// During the shutdown delay /readyz fails, so the Service sends new
	// sidecar streams to other replicas before this one closes its own.
	if err := harness.WaitUntil(ctx, 1500*time.Millisecond, func() (bool, error) {
		_, err := harness.GetJSON(ctx, s.http+"/readyz")
		return err != nil && strings.Contains(err.Error(), "503"), nil
	}); err != nil {
		t.Errorf("/readyz did not turn 503 after SIGTERM: %v", err)
	}
	select {
	case <-s.proc.Done():
		if err := s.proc.Err(); err != nil {
			t.Errorf("serve exited with %v after SIGTERM\n%s", err, s.proc.Log())
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("serve did not stop within 15s of SIGTERM\n%s", s.proc.Log())
	}
	entries := s.logEntries(t)
	if len(entries) < 2 {
		t.Fatalf("expected log lines, got %q", s.proc.Log())
	}
	var serving bool
	for _, entry := range entries {
		if entry["@message"] == "serving" {
			serving = entry["debug"] == "127.0.0.1:9091"
		}
		if msg, _ := entry["@message"].(string); entry["@level"] == "warn" && strings.Contains(msg, "debug") {
			t.Errorf("warning with the debug listener on loopback: %v", entry)
		}
	}
	if !serving {
		t.Errorf("no \"serving\" line naming debug 127.0.0.1:9091:\n%s", s.proc.Log())
	}
}

// TestServeWarnsOfDebugBeyondLoopback: --debug-address on a routable
// address works but logs a warning.
func TestServeWarnsOfDebugBeyondLoopback(t *testing.T) {
	e := env(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	debugPort, err := harness.FreePort()
	must(t, err)
	debugAddr := net.JoinHostPort(e.endpointHost, fmt.Sprint(debugPort))
	s := startServe(t, ctx, e.kube.KubeconfigPath, "127.0.0.1", "--debug-address", debugAddr)
	if _, err := harness.GetJSON(ctx, "http://"+debugAddr+"/debug/proxies"); err != nil {
		t.Errorf("debug on %s: %v", debugAddr, err)
	}
	var warned bool
	for _, entry := range s.logEntries(t) {
		msg, _ := entry["@message"].(string)
		if entry["@level"] == "warn" && strings.Contains(msg, "debug endpoints listen beyond loopback") && entry["debug"] == debugAddr {
			warned = true
		}
	}
	if !warned {
		t.Errorf("no warning about the debug listener on %s:\n%s", debugAddr, s.proc.Log())
	}
}

// TestServeInsecureXDS: plain text only when asked for, and then loudly:
// a warning at start and shadowplane_xds_insecure 1. Without certificates
// and without the flag, serve refuses to start and says what to do.
func TestServeInsecureXDS(t *testing.T) {
	e := env(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	refused := launchServe(t, e.kube.KubeconfigPath, "127.0.0.1", "--debug-address", "127.0.0.1:0",
		"--xds-tls-cert-file", "/nonexistent/tls.crt", "--xds-tls-key-file", "/nonexistent/tls.key")
	select {
	case <-refused.proc.Done():
		if !strings.Contains(refused.proc.Log(), "/nonexistent/tls.crt") {
			t.Errorf("serve without its certificate: want an error naming the file, got:\n%s", refused.proc.Log())
		}
	case <-time.After(20 * time.Second):
		t.Fatal("serve without its certificate kept running")
	}

	s := startServe(t, ctx, e.kube.KubeconfigPath, "127.0.0.1", "--insecure-xds", "--debug-address", "127.0.0.1:0")
	metrics, err := harness.GetJSON(ctx, s.http+"/metrics")
	must(t, err)
	if !strings.Contains(string(metrics), "shadowplane_xds_insecure 1") {
		t.Error("/metrics does not say shadowplane_xds_insecure 1 under --insecure-xds")
	}
	warned := false
	for _, entry := range s.logEntries(t) {
		if entry["@level"] == "warn" && strings.Contains(fmt.Sprint(entry["@message"]), "plain text") {
			warned = true
		}
	}
	if !warned {
		t.Errorf("no warning about plain-text xDS in the log:\n%s", s.proc.Log())
	}
}
