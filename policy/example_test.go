package policy

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/shadowplane/shadowplane/internal/testtools"
)

// TestCrossClusterExample: deploy/examples/cross-cluster.yaml is a valid
// policy with the TLS and Host settings its comments describe.
func TestCrossClusterExample(t *testing.T) {
	path := filepath.Join(testtools.RepoRoot(), "deploy/examples/cross-cluster.yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	policies, errs := ParseConfigMapFile(path, data, ParseOptions{AllowedURLHosts: []string{"gateway.test-cluster.example.com"}})
	if len(errs) > 0 || len(policies) != 1 {
		t.Fatalf("want one valid policy, got %d and %v", len(policies), errs)
	}
	m := policies[0].Mirrors[0]
	want := MirrorTLS{SNI: "gateway.test-cluster.example.com", CAConfigMap: "test-cluster-ca", CAKey: DefaultCAKey, ClientCertSecret: "test-cluster-client"}
	if m.TLS == nil || *m.TLS != want || m.Host != "entrance.test-cluster.example.com" {
		t.Errorf("mirror = %+v, TLS %+v", m, m.TLS)
	}
}
