package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	bootstrap "github.com/shadowplane/shadowplane/envoy-bootstrap"
	"github.com/shadowplane/shadowplane/nodemeta"
)

// TestBootstrapRefusesWhatTheServerRefuses: a sidecar the control plane
// would turn away is refused when its bootstrap is rendered, with the
// control plane's own message (xds/contract_test.go checks the server side).
func TestBootstrapRefusesWhatTheServerRefuses(t *testing.T) {
	base := nodemeta.Metadata{NodeID: "entrance-1", Namespace: "shop", Service: "entrance",
		Ports: []nodemeta.PortPair{{Listen: 15001, App: 8080}}}
	tests := []struct {
		name string
		args []string
		// refused edits base into the metadata whose Validate error the
		// command must print; nil means the command succeeds.
		refused func(*nodemeta.Metadata)
	}{
		{name: "valid", args: []string{"--namespace", "shop"}},
		{name: "namespace in upper case", args: []string{"--namespace", "Shop"},
			refused: func(m *nodemeta.Metadata) { m.Namespace = "Shop" }},
		{name: "empty namespace", args: []string{"--namespace", ""},
			refused: func(m *nodemeta.Metadata) { m.Namespace = "" }},
		{name: "listen address a host name", args: []string{"--namespace", "shop", "--listen-address", "localhost"},
			refused: func(m *nodemeta.Metadata) { m.ListenAddress = "localhost" }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"bootstrap", "--node-id", "entrance-1", "--service", "entrance", "--ports", "15001:8080",
				"--xds-address", "127.0.0.1:18000", "--insecure"}, tt.args...)
			stdout, stderr, code := runCLI(t, nil, args...)
			if tt.refused == nil {
				if code != 0 || !strings.Contains(stdout, nodemeta.KeyNamespace+": shop") {
					t.Fatalf("exit %d, stderr %q, stdout:\n%s", code, stderr, stdout)
				}
				return
			}
			refused := base
			tt.refused(&refused)
			want := refused.Validate()
			if want == nil {
				t.Fatal("the table's refused metadata is valid")
			}
			if code == 0 || !strings.Contains(stderr, want.Error()) {
				t.Fatalf("exit %d, stderr %q; want a failure saying %q", code, stderr, want)
			}
		})
	}
}

func TestInjectRefusesInvalidSidecars(t *testing.T) {
	const deployment = `apiVersion: apps/v1
kind: Deployment
metadata: {name: checkout}
spec:
  selector: {matchLabels: {app: checkout}}
  template:
    metadata: {labels: {app: checkout}}
    spec: {containers: [{name: app, image: checkout:1}]}
`
	tests := []struct {
		name, service, ports, want string
	}{
		{"service in upper case", "Checkout", "15001:8080", `"Checkout" is not a Kubernetes Service name`},
		{"listen port twice", "checkout", "15001:8080,15001:9090", "listen port 15001 given twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, stderr, code := runCLI(t, []byte(deployment), "inject", "-f", "-", "--service", tt.service, "--ports", tt.ports)
			if code == 0 || !strings.Contains(stderr, tt.want) {
				t.Fatalf("exit %d, stderr %q; want a failure saying %q", code, stderr, tt.want)
			}
		})
	}
}

// TestBootstrapSecureByDefault: without --insecure the bootstrap talks TLS
// with a token, and writes the SDS files Envoy needs next to it.
func TestBootstrapSecureByDefault(t *testing.T) {
	dir := t.TempDir()
	out := filepath.Join(dir, "envoy.yaml")
	_, stderr, code := runCLI(t, nil, "bootstrap", "--node-id", "entrance-1", "--namespace", "shop", "--service", "entrance",
		"--ports", "15001:8080", "--xds-address", "shadowplane.shadowplane-system.svc:18000", "-o", out)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"sni: shadowplane.shadowplane-system.svc", "envoy.filters.http.credential_injector", filepath.Join(dir, bootstrap.SDSCAFileName)} {
		if !strings.Contains(string(data), want) {
			t.Errorf("bootstrap lacks %q", want)
		}
	}
	for _, name := range []string{bootstrap.SDSCAFileName, bootstrap.SDSTokenFileName} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Errorf("SDS file: %v", err)
		}
	}

	tests := []struct {
		name string
		args []string
		want string
	}{
		{"an IP address needs a server name", []string{"--xds-address", "10.0.0.1:18000", "-o", out}, "give --xds-server-name"},
		{"stdout needs an SDS directory", []string{"--xds-address", "shadowplane.shadowplane-system.svc:18000"}, "--sds-dir is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"bootstrap", "--node-id", "entrance-1", "--namespace", "shop", "--service", "entrance", "--ports", "15001:8080"}, tt.args...)
			_, stderr, code := runCLI(t, nil, args...)
			if code == 0 || !strings.Contains(stderr, tt.want) {
				t.Fatalf("exit %d, stderr %q; want a failure saying %q", code, stderr, tt.want)
			}
		})
	}
}
