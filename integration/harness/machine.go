package harness

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
)

// MachineDescription names the CPU count and model, the Go version and the
// version of the Envoy at envoyPath, for benchmark tables.
func MachineDescription(envoyPath string) string {
	model := "unknown CPU"
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if name, ok := strings.CutPrefix(line, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(name), ":"))
				break
			}
		}
	}
	envoy := "unknown"
	if out, err := exec.Command(envoyPath, "--version").Output(); err == nil {
		// "<path>  version: <sha>/1.40.0/Clean/RELEASE/BoringSSL"
		if _, version, ok := strings.Cut(string(out), "version: "); ok {
			if parts := strings.Split(strings.TrimSpace(version), "/"); len(parts) > 1 {
				envoy = parts[1]
			}
		}
	}
	return fmt.Sprintf("nproc %d, %s, %s, Envoy %s", runtime.NumCPU(), model, runtime.Version(), envoy)
}
