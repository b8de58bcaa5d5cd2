// Package integration proves shadowplane's features end to end against the
// real parts: kube-apiserver with etcd, the pinned Envoy binary started from
// `shadowplane bootstrap` output, and HTTP backends on this machine.
package integration

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/shadowplane/shadowplane/integration/harness"
	"github.com/shadowplane/shadowplane/internal/testtools"
)

// sharedEnv is what all tests of the package reuse: one API server and one
// build of the shadowplane command.
type sharedEnv struct {
	once         sync.Once
	err          error
	kube         *harness.Kube
	shadowplane  string
	envoy        string
	endpointHost string
	dir          string
}

var shared sharedEnv

var namespaceSeq atomic.Int64

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.kube != nil {
		_ = shared.kube.Stop()
	}
	if shared.dir != "" {
		os.RemoveAll(shared.dir)
	}
	os.Exit(code)
}

// env starts (once) the API server and builds the command; a missing tool
// fails under CI=true and skips elsewhere.
func env(t testing.TB) *sharedEnv {
	t.Helper()
	for _, tool := range []string{"envoy", "kube-apiserver", "etcd"} {
		testtools.Require(t, tool)
	}
	shared.once.Do(func() {
		shared.envoy = testtools.Path("envoy")
		if shared.dir, shared.err = os.MkdirTemp("", "shadowplane-it-"); shared.err != nil {
			return
		}
		if shared.endpointHost, shared.err = harness.EndpointHost(); shared.err != nil {
			return
		}
		if shared.shadowplane, shared.err = harness.BuildShadowplane(testtools.RepoRoot(), shared.dir); shared.err != nil {
			return
		}
		shared.kube, shared.err = harness.StartKube(testtools.BinDir(), shared.dir)
	})
	if shared.err != nil {
		t.Fatalf("test environment: %v", shared.err)
	}
	return &shared
}

// testLogger sends control-plane logs to the test log, so a failure shows
// what the control plane did.
func testLogger(t testing.TB) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: "shadowplane", Level: hclog.Info, Output: testWriter{t}})
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p))
	return len(p), nil
}

// newNamespace creates a fresh namespace for one test.
func newNamespace(t testing.TB, ctx context.Context) string {
	name := fmt.Sprintf("it-%d-%d", time.Now().Unix()%100000, namespaceSeq.Add(1))
	if err := env(t).kube.EnsureNamespace(ctx, name); err != nil {
		t.Fatalf("namespace %s: %v", name, err)
	}
	return name
}
