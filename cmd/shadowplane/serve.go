package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"github.com/KimMachineGun/automemlimit/memlimit"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	bootstrap "github.com/shadowplane/shadowplane/envoy-bootstrap"
	"github.com/shadowplane/shadowplane/internal/controlplane"
	"github.com/shadowplane/shadowplane/internal/kubeauth"
	"github.com/shadowplane/shadowplane/internal/logging"
	"github.com/shadowplane/shadowplane/xds"
)

func newServeCommand() *cobra.Command {
	var (
		tlsCertFile      string
		tlsKeyFile       string
		insecureXDS      bool
		tokenAudience    string
		maxConnectionAge time.Duration
		kubeconfig       string
		namespaces       []string
		xdsAddress       string
		httpAddress      string
		debugAddress     string
		allowURL         []string
		debounce         time.Duration
		maxDelay         time.Duration
		drainDelay       time.Duration
		logFormat        string
		logLevel         string
		webhookCfg       controlplane.WebhookConfig
		leaderElect      bool
		newStreamsPerSec float64
		newStreamBurst   int
		election         controlplane.LeaderElection
		copyPerPod       bool
	)
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Watch Services, EndpointSlices and policy ConfigMaps and serve xDS to Envoy sidecars",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			jsonFormat, err := logging.ParseFormat(logFormat)
			if err != nil {
				return fmt.Errorf("--log-format: %w", err)
			}
			level, err := logging.ParseLevel(logLevel)
			if err != nil {
				return fmt.Errorf("--log-level: %w", err)
			}
			logger := logging.New(logging.Options{Name: "shadowplane", Level: level, JSON: jsonFormat, Output: cmd.ErrOrStderr()})
			// client-go reports through klog (failed watches, refused
			// requests); those lines belong in the same stream and format.
			logging.RouteKlog(logger.Named("klog"))
			setMemoryLimit(logger, memlimit.FromCgroup)
			restConfig, source, err := loadKubeconfig(kubeconfig)
			if err != nil {
				return err
			}
			// Verifying a new xDS stream costs up to three API calls (a
			// TokenReview, a Pod and a Service get), and the new-stream
			// bucket admits up to its burst at once: client-go's default of
			// 5 requests/s would keep a reconnecting fleet waiting minutes.
			limits := xds.DefaultLimits()
			limits.NewStreamsPerSecond, limits.NewStreamBurst = newStreamsPerSec, newStreamBurst
			restConfig.QPS = float32(3 * limits.NewStreamsPerSecond)
			restConfig.Burst = 3 * limits.NewStreamBurst
			client, err := kubernetes.NewForConfig(restConfig)
			if err != nil {
				return fmt.Errorf("kubernetes client: %w", err)
			}
			if insecureXDS {
				// The default certificate paths do not apply to plain text.
				if !cmd.Flags().Changed("xds-tls-cert-file") {
					tlsCertFile = ""
				}
				if !cmd.Flags().Changed("xds-tls-key-file") {
					tlsKeyFile = ""
				}
			}
			var leaderElection *controlplane.LeaderElection
			if election.Namespace == "" {
				election.Namespace = ownNamespace()
			}
			switch {
			case !leaderElect:
				logger.Info("leader election off (--leader-elect=false): this replica records Events and writes policy status alone; run one replica only")
			case election.Namespace == "":
				logger.Warn("leader election off: not in a pod and no --leader-election-namespace, so this replica records Events and writes policy status alone; give a namespace to run several replicas")
			default:
				if election.Identity == "" {
					election.Identity = replicaIdentity()
				}
				leaderElection = &election
			}
			cp, err := controlplane.New(controlplane.Config{
				LeaderElection:    leaderElection,
				Client:            client,
				Namespaces:        namespaces,
				XDSAddress:        xdsAddress,
				HTTPAddress:       httpAddress,
				DebugAddress:      debugAddress,
				AllowedURLHosts:   allowURL,
				Debounce:          debounce,
				MaxDelay:          maxDelay,
				Logger:            logger,
				ShutdownDelay:     drainDelay,
				TLSCertFile:       tlsCertFile,
				TLSKeyFile:        tlsKeyFile,
				InsecureXDS:       insecureXDS,
				TokenAudience:     tokenAudience,
				MaxConnectionAge:  maxConnectionAge,
				Limits:            limits,
				CopyMetricsPerPod: copyPerPod,
				Webhook:           webhookCfg,
			})
			if err != nil {
				return err
			}
			logger.Info("serving", "version", version, "kubeconfig", source, "api", restConfig.Host,
				"xds", cp.XDSAddr.String(), "http", cp.HTTPAddr.String(), "debug", cp.DebugAddr.String(),
				"namespaces", strings.Join(orAll(namespaces), ","), "allow-url-target", strings.Join(allowURL, ","))
			ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if err := cp.Run(ctx); err != nil {
				logger.Error("stopped", "error", err)
				return err
			}
			logger.Info("stopped")
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&kubeconfig, "kubeconfig", "", "kubeconfig file (default: in-cluster config, then $KUBECONFIG or ~/.kube/config)")
	f.StringSliceVar(&namespaces, "namespaces", nil, "namespaces to watch, comma separated (default: all)")
	f.StringVar(&xdsAddress, "xds-address", ":18000", "gRPC ADS listen address")
	f.StringVar(&httpAddress, "http-address", ":9090", "HTTP listen address for /healthz, /readyz and /metrics")
	f.StringVar(&debugAddress, "debug-address", "127.0.0.1:9091", "HTTP listen address for /debug/proxies, /debug/snapshots and /debug/pprof/; keep it on loopback and reach it with kubectl port-forward (other addresses log a warning)")
	f.StringArrayVar(&allowURL, "allow-url-target", nil, "host pattern a policy may send copies to by URL: exact host or IP, *.example.com, or a CIDR; repeatable (default: none)")
	f.DurationVar(&debounce, "debounce", 10*time.Millisecond, "a change this soon after a push (a burst) waits until changes have been quiet this long; a lone change is pushed at once")
	f.DurationVar(&maxDelay, "max-delay", 50*time.Millisecond, "longest a burst of changes may delay a push of its latest state")
	f.DurationVar(&drainDelay, "shutdown-delay", 5*time.Second, "on SIGTERM, how long /readyz fails before xDS streams are closed, so sidecars reconnect to another replica")
	f.StringVar(&tlsCertFile, "xds-tls-cert-file", "/etc/shadowplane/xds-tls/tls.crt", "xDS serving certificate (PEM), re-read when it changes (shadowplane certgen makes it)")
	f.StringVar(&tlsKeyFile, "xds-tls-key-file", "/etc/shadowplane/xds-tls/tls.key", "key of --xds-tls-cert-file (PEM), re-read when it changes")
	f.BoolVar(&insecureXDS, "insecure-xds", false, "serve xDS in plain text and trust each sidecar's node metadata without verifying its identity: local development only (logs a warning; shadowplane_xds_insecure is 1)")
	f.StringVar(&tokenAudience, "token-audience", kubeauth.DefaultAudience, "audience the sidecars' projected ServiceAccount tokens must carry")
	f.DurationVar(&maxConnectionAge, "xds-max-connection-age", controlplane.DefaultMaxConnectionAge, "end each xDS connection after this long so sidecars re-authenticate with fresh tokens and see rotated certificates")
	f.StringVar(&webhookCfg.Address, "webhook-address", "", "HTTPS listen address of the admission webhooks (sidecar injection, policy validation), e.g. :9443; empty: none")
	f.StringVar(&webhookCfg.CertFile, "webhook-tls-cert-file", "", "webhook serving certificate (default: --xds-tls-cert-file, which certgen issues for the shadowplane Service)")
	f.StringVar(&webhookCfg.KeyFile, "webhook-tls-key-file", "", "key of --webhook-tls-cert-file (default: --xds-tls-key-file)")
	f.StringVar(&webhookCfg.ConfigurationName, "webhook-configuration", "shadowplane", "Mutating- and ValidatingWebhookConfiguration whose caBundle serve keeps equal to --webhook-ca-file; empty: leave them alone")
	f.StringVar(&webhookCfg.CAFile, "webhook-ca-file", "/etc/shadowplane/xds-tls/ca.crt", "CA bundle the API server must trust for the webhooks (the ca.crt of Secret shadowplane-xds-tls)")
	f.StringVar(&webhookCfg.Inject.XDSAddress, "inject-xds-address", "shadowplane."+envOr("POD_NAMESPACE", "shadowplane-system")+".svc:18000", "control plane address injected sidecars use")
	f.StringVar(&webhookCfg.Inject.ShadowplaneImage, "inject-image", "ghcr.io/shadowplane/shadowplane:"+imageTag(), "shadowplane image of injected bootstrap init containers")
	f.StringVar(&webhookCfg.Inject.EnvoyImage, "inject-envoy-image", "envoyproxy/envoy:v1.40.0", "Envoy image of injected sidecars")
	f.BoolVar(&webhookCfg.Inject.NativeSidecar, "inject-native-sidecar", true, "inject Envoy as a native sidecar (Kubernetes 1.29+)")
	f.DurationVar(&webhookCfg.Inject.DrainDelay, "inject-drain-delay", bootstrap.DefaultDrainDelay, "how long injected sidecars drain in their preStop")
	f.Float64Var(&newStreamsPerSec, "xds-new-streams-per-second", xds.DefaultLimits().NewStreamsPerSecond, "new xDS streams admitted per second (each costs up to three API calls to verify); a reconnecting fleet is spread out at this rate")
	f.IntVar(&newStreamBurst, "xds-new-stream-burst", xds.DefaultLimits().NewStreamBurst, "new xDS streams admitted at once beyond --xds-new-streams-per-second")
	f.BoolVar(&leaderElect, "leader-elect", true, "elect one replica with a coordination.k8s.io Lease in --leader-election-namespace to record Events and write each policy ConfigMap's status and last valid versions (every replica serves xDS); false, or outside a pod with no namespace given: this replica does it alone")
	f.StringVar(&election.Namespace, "leader-election-namespace", "", "namespace of the Lease (default: the pod's own namespace, from POD_NAMESPACE or the ServiceAccount mount)")
	f.StringVar(&election.Name, "leader-election-lease", controlplane.DefaultLeaseName, "name of the Lease")
	f.StringVar(&election.Identity, "leader-election-identity", "", "this replica's name in the Lease (default: host name plus a random suffix)")
	f.DurationVar(&election.LeaseDuration, "leader-election-lease-duration", controlplane.DefaultLeaseDuration, "how long a leader that stopped renewing keeps the Lease; a leader that stops cleanly gives it up at once")
	f.DurationVar(&election.RenewDeadline, "leader-election-renew-deadline", controlplane.DefaultRenewDeadline, "how long the leader tries to renew before it stops leading")
	f.DurationVar(&election.RetryPeriod, "leader-election-retry-period", controlplane.DefaultRetryPeriod, "how often replicas try to take or renew the Lease")
	f.BoolVar(&copyPerPod, "copy-metrics-per-pod", false, "label the copy metrics by sidecar pod too (one series per sidecar: for debugging a few pods, not for a large fleet)")
	f.StringVar(&logFormat, "log-format", "text", "log format: text or json")
	f.StringVar(&logLevel, "log-level", "info", "log level: trace, debug, info, warn, error")
	return cmd
}

// ownNamespace is the pod's namespace, from the ServiceAccount mount or
// POD_NAMESPACE; "" outside a pod.
func ownNamespace() string {
	if ns := os.Getenv("POD_NAMESPACE"); ns != "" {
		return ns
	}
	b, err := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// replicaIdentity is the host name (the pod name) plus a random suffix, so
// that two processes on one host never share an identity.
func replicaIdentity() string {
	host, _ := os.Hostname()
	var suffix [4]byte
	_, _ = rand.Read(suffix[:])
	return host + "_" + hex.EncodeToString(suffix[:])
}

func orAll(namespaces []string) []string {
	if len(namespaces) == 0 {
		return []string{"(all)"}
	}
	return namespaces
}

// loadKubeconfig picks the API server: --kubeconfig if given, else the
// in-cluster service account, else $KUBECONFIG or ~/.kube/config.
func loadKubeconfig(path string) (*rest.Config, string, error) {
	if path == "" {
		if c, err := rest.InClusterConfig(); err == nil {
			return c, "in-cluster", nil
		}
	}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = path
	c, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{}).ClientConfig()
	if err != nil {
		return nil, "", fmt.Errorf("no Kubernetes API configuration (not in a cluster, and kubeconfig: %w)", err)
	}
	source := path
	if source == "" {
		source = "default loading rules ($KUBECONFIG or ~/.kube/config)"
	}
	return c, source, nil
}
