package main

import (
	"strings"
	"testing"

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
				"--xds-address", "127.0.0.1:18000"}, tt.args...)
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
