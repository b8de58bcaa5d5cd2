package harness

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/hashicorp/go-hclog"
	"k8s.io/client-go/kubernetes"

	"github.com/shadowplane/shadowplane/internal/controlplane"
	"github.com/shadowplane/shadowplane/xds"
)

// ControlPlane is an in-process shadowplane control plane (the same wiring
// as `shadowplane serve`) on loopback ports.
type ControlPlane struct {
	*controlplane.ControlPlane
	// Certs are the xDS TLS files; nil for an insecure control plane.
	Certs   *XDSCerts
	certDir string
	cancel  context.CancelFunc
	done    chan error
}

// ControlPlaneOptions tune a test control plane.
type ControlPlaneOptions struct {
	Namespaces      []string
	AllowedURLHosts []string
	Logger          hclog.Logger
	// Client overrides kube.Client, e.g. to run as the deployed
	// ServiceAccount through impersonation.
	Client kubernetes.Interface
	// Insecure serves xDS in plain text without identity checks
	// (--insecure-xds); the default is TLS with verified sidecar identity,
	// as deployed.
	Insecure bool
	// MaxConnectionAge overrides the 30-minute default, for tests that
	// need sidecars to reconnect (certificate and token rotation).
	MaxConnectionAge time.Duration
	// Limits override the xDS bounds.
	Limits xds.Limits
	// Observer is told of each step of a push, to time its parts.
	Observer *xds.Observer
	// Webhook serves the admission webhooks when its Address is set.
	Webhook controlplane.WebhookConfig
	// LeaderElection, when set, makes the control plane campaign for the
	// Lease; nil makes it lead alone.
	LeaderElection *controlplane.LeaderElection
}

// StartControlPlane starts the control plane against kube and waits until
// it is ready.
func StartControlPlane(ctx context.Context, kube *Kube, o ControlPlaneOptions) (*ControlPlane, error) {
	logger := o.Logger
	if logger == nil {
		logger = hclog.New(&hclog.LoggerOptions{Name: "shadowplane", Level: hclog.Info, Output: os.Stderr})
	}
	client := o.Client
	if client == nil {
		client = kube.Client
	}
	var certs *XDSCerts
	var certDir string
	if !o.Insecure {
		var err error
		if certDir, err = os.MkdirTemp("", "shadowplane-xds-tls-"); err != nil {
			return nil, err
		}
		if certs, err = NewXDSCerts(certDir); err != nil {
			os.RemoveAll(certDir)
			return nil, err
		}
	}
	cfg := controlplane.Config{
		Client:           client,
		Namespaces:       o.Namespaces,
		XDSAddress:       "127.0.0.1:0",
		HTTPAddress:      "127.0.0.1:0",
		AllowedURLHosts:  o.AllowedURLHosts,
		Logger:           logger,
		InsecureXDS:      o.Insecure,
		MaxConnectionAge: o.MaxConnectionAge,
		Limits:           o.Limits,
		XDSObserver:      o.Observer,
		Webhook:          o.Webhook,
		LeaderElection:   o.LeaderElection,
	}
	if certs != nil {
		cfg.TLSCertFile, cfg.TLSKeyFile = certs.CertFile, certs.KeyFile
	}
	cp, err := controlplane.New(cfg)
	if err != nil {
		os.RemoveAll(certDir)
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	c := &ControlPlane{ControlPlane: cp, Certs: certs, certDir: certDir, cancel: cancel, done: make(chan error, 1)}
	go func() { c.done <- cp.Run(runCtx) }()
	deadline := time.Now().Add(30 * time.Second)
	for !cp.Ready() {
		select {
		case err := <-c.done:
			return nil, fmt.Errorf("control plane stopped at start: %w", err)
		case <-ctx.Done():
			c.Stop()
			return nil, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			c.Stop()
			return nil, fmt.Errorf("control plane not ready after 30s")
		}
	}
	return c, nil
}

// HTTPURL is the base URL of the control plane's HTTP endpoints.
func (c *ControlPlane) HTTPURL() string { return "http://" + c.HTTPAddr.String() }

// Stop stops the control plane and returns what Run returned.
func (c *ControlPlane) Stop() error {
	c.cancel()
	if c.certDir != "" {
		defer os.RemoveAll(c.certDir)
	}
	select {
	case err := <-c.done:
		return err
	case <-time.After(15 * time.Second):
		return fmt.Errorf("control plane did not stop in 15s")
	}
}

// BuildShadowplane builds the shadowplane command into dir and returns its
// path; tests render sidecar bootstraps with it, as operators do.
func BuildShadowplane(repoRoot, dir string) (string, error) {
	out := filepath.Join(dir, "shadowplane")
	cmd := exec.Command("go", "build", "-o", out, "./cmd/shadowplane")
	cmd.Dir = repoRoot
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/shadowplane: %w\n%s", err, b)
	}
	return out, nil
}

// SidecarOptions describe one Envoy sidecar.
type SidecarOptions struct {
	Shadowplane string // path of the shadowplane binary
	Envoy       string // path of the envoy binary
	Dir         string // for bootstrap and log files
	XDSAddress  string // control plane gRPC address
	NodeID      string
	Namespace   string
	Service     string
	ListenPort  uint32
	AppPort     uint32
	Delta       bool
	// ListenAddress is where the listeners bind (default 127.0.0.1).
	ListenAddress string
	// Secure is the sidecar's half of authenticated xDS: the CA it trusts
	// and the token it presents. Nil renders a plain-text bootstrap
	// (`bootstrap --insecure`), for a control plane run with --insecure-xds.
	Secure *SidecarTLS
	// DNSResolver, when set, is the only DNS server (host:port) Envoy asks,
	// e.g. a DNSServer's Addr.
	DNSResolver string
	// StatsFlushInterval, when set, is how often Envoy reports its copy
	// stats (bootstrap --stats-flush-interval).
	StatsFlushInterval time.Duration
	// Logs is Envoy's log level (default DiagnosticLogs).
	Logs EnvoyLogs
}

// SidecarTLS are the files a secure sidecar reads, as mounted in a pod.
type SidecarTLS struct {
	CAFile    string
	TokenFile string
}

// Sidecar is a running Envoy started from `shadowplane bootstrap` output.
type Sidecar struct {
	*Envoy
	ListenPort uint32
	URL        string // http://127.0.0.1:<listen>
	// Identity is the sidecar's ServiceAccount, Pod and token, when its
	// control plane is secure.
	Identity *SidecarIdentity
}

// StartSidecar renders the bootstrap with the shadowplane command, starts
// Envoy with it and waits until Envoy has its first config.
func StartSidecar(ctx context.Context, o SidecarOptions) (*Sidecar, error) {
	adminPort, err := FreePort()
	if err != nil {
		return nil, err
	}
	listenAddress := o.ListenAddress
	if listenAddress == "" {
		listenAddress = "127.0.0.1"
	}
	bootstrapPath := filepath.Join(o.Dir, fmt.Sprintf("bootstrap-%s.yaml", o.NodeID))
	args := []string{"bootstrap",
		"--node-id", o.NodeID,
		"--namespace", o.Namespace,
		"--service", o.Service,
		"--ports", fmt.Sprintf("%d:%d", o.ListenPort, o.AppPort),
		"--listen-address", listenAddress,
		"--xds-address", o.XDSAddress,
		"--admin-port", strconv.Itoa(int(adminPort)),
		"-o", bootstrapPath,
	}
	if o.Delta {
		args = append(args, "--delta")
	}
	if o.StatsFlushInterval > 0 {
		args = append(args, "--stats-flush-interval", o.StatsFlushInterval.String())
	}
	if o.Secure == nil {
		args = append(args, "--insecure")
	} else {
		// SDS files per sidecar: sidecars sharing Dir present different tokens.
		sdsDir := filepath.Join(o.Dir, "sds-"+o.NodeID)
		if err := os.MkdirAll(sdsDir, 0o755); err != nil {
			return nil, err
		}
		args = append(args, "--xds-server-name", XDSServerName, "--ca-file", o.Secure.CAFile,
			"--token-file", o.Secure.TokenFile, "--sds-dir", sdsDir)
	}
	if out, err := exec.CommandContext(ctx, o.Shadowplane, args...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("shadowplane bootstrap: %w\n%s", err, out)
	}
	if o.DNSResolver != "" {
		if err := useDNSResolver(bootstrapPath, o.DNSResolver); err != nil {
			return nil, err
		}
	}
	e, err := StartEnvoyLogs(ctx, o.Envoy, bootstrapArgs(bootstrapPath), o.Logs, adminPort, o.Dir)
	if err != nil {
		return nil, err
	}
	if err := e.WaitReady(ctx, 30*time.Second); err != nil {
		e.Stop()
		return nil, err
	}
	return &Sidecar{Envoy: e, ListenPort: o.ListenPort, URL: fmt.Sprintf("http://127.0.0.1:%d", o.ListenPort)}, nil
}

// useDNSResolver makes the c-ares resolver of the bootstrap at path ask
// only the DNS server at hostPort, by adding a top-level key to the YAML.
func useDNSResolver(path, hostPort string) error {
	host, port, err := net.SplitHostPort(hostPort)
	if err != nil {
		return fmt.Errorf("dns resolver %q: %w", hostPort, err)
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(f, `
typedDnsResolverConfig:
  name: envoy.network.dns_resolver.cares
  typedConfig:
    '@type': type.googleapis.com/envoy.extensions.network.dns_resolver.cares.v3.CaresDnsResolverConfig
    resolvers:
    - socketAddress: {address: %q, portValue: %s}
    dnsResolverOptions: {noDefaultSearchDomain: true}
`, host, port)
	return errors.Join(err, f.Close())
}

// WaitUntil polls cond every 10 ms until it returns true or timeout passes.
func WaitUntil(ctx context.Context, timeout time.Duration, cond func() (bool, error)) error {
	_, err := PollUntil(ctx, 10*time.Millisecond, timeout, cond)
	return err
}

// GetJSON fetches url and returns the body, for control-plane endpoints.
func GetJSON(ctx context.Context, url string) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	buf, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return buf, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return buf, nil
}

// StartSidecar starts a sidecar of this control plane: XDSAddress is c's,
// and for a secure c it first creates the sidecar's identity (a
// ServiceAccount named after the Service, Pod o.NodeID, a bound token under
// o.Dir) and renders a TLS bootstrap with it, as a pod would have.
func (c *ControlPlane) StartSidecar(ctx context.Context, kube *Kube, o SidecarOptions) (*Sidecar, error) {
	o.XDSAddress = c.XDSAddr.String()
	var id *SidecarIdentity
	if c.Certs != nil && o.Secure == nil {
		var err error
		id, err = kube.NewSidecarIdentity(ctx, o.Namespace, o.Service, o.Service, o.NodeID, filepath.Join(o.Dir, "identity-"+o.NodeID))
		if err != nil {
			return nil, err
		}
		o.Secure = &SidecarTLS{CAFile: c.Certs.CAFile, TokenFile: id.TokenFile}
	}
	sidecar, err := StartSidecar(ctx, o)
	if sidecar != nil {
		sidecar.Identity = id
	}
	return sidecar, err
}
