// Package peers runs other control planes beside shadowplane, against the
// same kube-apiserver and the same pinned Envoy, so `make bench-peers` can
// compare them in one run. Today the peer is istiod (pilot-discovery),
// built by `make istiod` from the Go module pinned in tools/istiod.
package peers

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"

	"github.com/shadowplane/shadowplane/integration/harness"
)

// Where `make istiod` puts istiod and Istio's CRDs, relative to the tools
// bin directory; ISTIOD_BIN and ISTIO_CRDS override them.
const (
	IstiodBinEnv  = "ISTIOD_BIN"
	IstioCRDsEnv  = "ISTIO_CRDS"
	istiodBinName = "pilot-discovery"
	istioCRDsFile = "../istio/crd-all.gen.yaml"
)

// LocateIstiod returns the istiod binary and Istio's CRD file. Either one
// missing is an error naming the command that installs it: the peer
// benchmark never passes without istiod.
func LocateIstiod(binDir string, getenv func(string) string) (bin, crds string, err error) {
	bin = getenv(IstiodBinEnv)
	if bin == "" {
		bin = filepath.Join(binDir, istiodBinName)
	}
	crds = getenv(IstioCRDsEnv)
	if crds == "" {
		crds = filepath.Join(binDir, istioCRDsFile)
	}
	var errs []error
	for _, p := range []string{bin, crds} {
		if _, err := os.Stat(p); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", p, err))
		}
	}
	if len(errs) > 0 {
		return "", "", fmt.Errorf("istiod is not installed (run `make istiod`): %w", errors.Join(errs...))
	}
	return bin, crds, nil
}

// InstallIstioCRDs applies Istio's CRDs from path and waits until the API
// server serves them.
func InstallIstioCRDs(cfg *rest.Config, path string) error {
	if _, err := envtest.InstallCRDs(cfg, envtest.CRDInstallOptions{Paths: []string{path}, ErrorIfPathMissing: true}); err != nil {
		return fmt.Errorf("install Istio CRDs from %s: %w", path, err)
	}
	return nil
}

// IstioNamespace is where istiod runs and keeps its CA.
const IstioNamespace = "istio-system"

// meshConfig is the istiod mesh config of the benchmark. Tracing is off:
// Istio's tracing references a collector cluster that only Istio's own
// bootstrap defines. Metrics providers stay at the code default (none).
const meshConfig = "enableTracing: false\n"

// IstiodOptions describe one istiod run.
type IstiodOptions struct {
	Bin        string
	Kubeconfig string
	Dir        string // working directory: istiod writes its DNS certificates under it
	// Env adds to istiod's environment, e.g. PILOT_DEBOUNCE_AFTER=10ms.
	Env []string
}

// Istiod is a running istiod with its plain-text xDS port on loopback.
type Istiod struct {
	*harness.Process
	XDSAddr        string // 127.0.0.1:port, plain-text gRPC ADS (istiod's 15010)
	MonitoringAddr string // /metrics
}

// istiodEnv is what every run sets: the identity istiod would get from its
// Deployment, and the features a bare API server and the upstream Envoy
// lack. Metadata exchange filters are istio-proxy extensions the upstream
// Envoy would reject; Gateway API CRDs are not installed.
var istiodEnv = []string{
	"POD_NAMESPACE=" + IstioNamespace,
	"POD_NAME=istiod-bench",
	"REVISION=default",
	"CLUSTER_ID=Kubernetes",
	"PILOT_CERT_PROVIDER=istiod",
	"PILOT_ENABLE_METADATA_EXCHANGE=false",
	"PILOT_ENABLE_ALPN_FILTER=false",
	"PILOT_ENABLE_GATEWAY_API=false",
	"PILOT_ENABLE_GATEWAY_API_STATUS=false",
	"PILOT_ENABLE_GATEWAY_API_DEPLOYMENT_CONTROLLER=false",
	"INJECTION_WEBHOOK_CONFIG_NAME=",
	"VALIDATION_WEBHOOK_CONFIG_NAME=",
}

// StartIstiod starts pilot-discovery against the API server of o.Kubeconfig
// and waits until it reports ready.
func StartIstiod(ctx context.Context, o IstiodOptions) (*Istiod, error) {
	meshPath := filepath.Join(o.Dir, "mesh.yaml")
	if err := os.WriteFile(meshPath, []byte(meshConfig), 0o644); err != nil {
		return nil, err
	}
	ports := map[string]uint32{}
	for _, name := range []string{"grpc", "secure-grpc", "http", "https", "monitoring", "ctrlz"} {
		p, err := harness.FreePort()
		if err != nil {
			return nil, err
		}
		ports[name] = p
	}
	addr := func(name string) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(int(ports[name]))) }
	cmd := exec.Command(o.Bin, "discovery",
		"--kubeconfig", o.Kubeconfig,
		"--meshConfig", meshPath,
		"--networksConfig", filepath.Join(o.Dir, "mesh-networks.yaml"), // absent: no networks
		"--grpcAddr", addr("grpc"),
		"--secureGRPCAddr", addr("secure-grpc"),
		"--httpAddr", addr("http"),
		"--httpsAddr", addr("https"),
		"--monitoringAddr", addr("monitoring"),
		"--ctrlz_port", strconv.Itoa(int(ports["ctrlz"])),
		"--log_output_level", "default:warn",
	)
	cmd.Dir = o.Dir
	cmd.Env = append(append(os.Environ(), istiodEnv...), o.Env...)
	proc, err := harness.StartProcess(cmd, filepath.Join(o.Dir, "istiod.log"))
	if err != nil {
		return nil, err
	}
	i := &Istiod{Process: proc, XDSAddr: addr("grpc"), MonitoringAddr: addr("monitoring")}
	if err := waitHTTP200(ctx, proc, "http://"+addr("http")+"/ready", 90*time.Second); err != nil {
		proc.Stop()
		return nil, fmt.Errorf("istiod: %w\n%s", err, proc.LogTail(40))
	}
	return i, nil
}

// waitHTTP200 polls url until it answers 200, the process ends, or timeout
// passes.
func waitHTTP200(ctx context.Context, proc *harness.Process, url string, timeout time.Duration) error {
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(timeout)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		if resp, err := client.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-proc.Done():
			return fmt.Errorf("exited before %s answered 200: %v", url, proc.Err())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not answer 200 within %s", url, timeout)
		}
	}
}
