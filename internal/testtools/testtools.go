// Package testtools finds the real components the tests run against (Envoy,
// kube-apiserver, etcd), installed by `make tools` into .tools/bin.
//
// Under CI=true a missing tool fails the test: a skipped integration test must
// never pass for a proven feature. Elsewhere it skips with the command that
// installs it, so a quick `go test ./translator` works before `make tools`.
package testtools

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// RepoRoot is the repository's root directory, found from this file's path.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// BinDir is where `make tools` puts the binaries; SHADOWPLANE_TOOLS overrides.
func BinDir() string {
	if d := os.Getenv("SHADOWPLANE_TOOLS"); d != "" {
		return d
	}
	return filepath.Join(RepoRoot(), ".tools", "bin")
}

// Path returns the path of tool name, or "" when it is not installed.
func Path(name string) string {
	p := filepath.Join(BinDir(), name)
	if _, err := os.Stat(p); err != nil {
		return ""
	}
	return p
}

// Require returns the path of tool name, failing (CI) or skipping the test
// when it is missing.
func Require(t testing.TB, name string) string {
	t.Helper()
	if p := Path(name); p != "" {
		return p
	}
	msg := name + " not found in " + BinDir() + ": run `make tools`"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + " (CI=true: a missing tool is a failure)")
	}
	t.Skip(msg)
	return ""
}

// EnvoyValidate runs `envoy --mode validate` on a config file and returns
// Envoy's output and whether it accepted the config.
func EnvoyValidate(t testing.TB, configPath string) (string, bool) {
	t.Helper()
	envoy := Require(t, "envoy")
	out, err := exec.Command(envoy, "--mode", "validate", "-c", configPath, "--log-level", "warn", "--disable-hot-restart").CombinedOutput()
	return string(out), err == nil
}
