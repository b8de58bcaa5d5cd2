// Package controlplane wires the watcher, the translator and the xDS server
// into the running control plane. `shadowplane serve` and the integration
// tests both start it through Run, so the tests exercise the shipped wiring.
package controlplane

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/leaderelection"

	"github.com/shadowplane/shadowplane/internal/certs"
	"github.com/shadowplane/shadowplane/internal/copystats"
	"github.com/shadowplane/shadowplane/internal/kubeauth"
	"github.com/shadowplane/shadowplane/translator"
	"github.com/shadowplane/shadowplane/watcher"
	"github.com/shadowplane/shadowplane/xds"
)

// Config is everything `shadowplane serve` needs.
type Config struct {
	Client      kubernetes.Interface
	Namespaces  []string
	XDSAddress  string // gRPC ADS listen address, e.g. ":18000"
	HTTPAddress string // probes and metrics, e.g. ":9090"
	// DebugAddress serves /debug/proxies, /debug/snapshots and pprof, which
	// show every proxy and the process's memory; keep it on loopback
	// (default "127.0.0.1:0", any free port).
	DebugAddress    string
	AllowedURLHosts []string
	Debounce        time.Duration
	MaxDelay        time.Duration
	Logger          hclog.Logger
	// ShutdownDelay is how long /readyz reports not ready before the xDS
	// streams are closed on shutdown (0: close at once).
	ShutdownDelay time.Duration

	// TLSCertFile and TLSKeyFile are the xDS serving certificate and key,
	// re-read when they change. Required unless InsecureXDS.
	TLSCertFile string
	TLSKeyFile  string
	// InsecureXDS serves xDS in plain text and trusts each sidecar's node
	// metadata as claimed: for local development only.
	InsecureXDS bool
	// TokenAudience is the audience sidecar tokens must carry (default
	// kubeauth.DefaultAudience).
	TokenAudience string
	// MaxConnectionAge ends each xDS connection after this long (default 30
	// minutes), so sidecars re-authenticate with fresh tokens and pick up a
	// rotated certificate; Envoy reconnects at once.
	MaxConnectionAge time.Duration
	// Limits bound each xDS client (zero fields: xds.DefaultLimits).
	Limits xds.Limits
	// XDSObserver, when set, is told of each step of a push (benchmarks).
	XDSObserver *xds.Observer
	// CopyMetricsPerPod labels the copy metrics by sidecar (pod) too: one
	// series per sidecar, for debugging a few pods.
	CopyMetricsPerPod bool
	// Webhook configures the admission webhooks (off unless its Address
	// is set).
	Webhook WebhookConfig
	// TLSAlarmInterval is how often the leader looks for mirrors whose TLS
	// handshakes fail in the sidecars' stats, to record a
	// MirrorTLSHandshakeFailing Event (default DefaultTLSAlarmInterval).
	TLSAlarmInterval time.Duration
	// LeaderElection, when set, elects one replica to record Events and
	// write policy status and last valid versions; nil makes this replica
	// the leader from the start (a single replica).
	LeaderElection *LeaderElection
}

// DefaultMaxConnectionAge is Config.MaxConnectionAge's default.
const DefaultMaxConnectionAge = 30 * time.Minute

// ControlPlane is a started control plane.
type ControlPlane struct {
	XDS       *xds.Server
	CopyStats *copystats.Sink
	Watcher   *watcher.Watcher
	XDSAddr   net.Addr
	HTTPAddr  net.Addr
	DebugAddr net.Addr
	// WebhookAddr is the admission webhooks' address, nil when off.
	WebhookAddr net.Addr
	Registry    *prometheus.Registry

	xdsListener net.Listener
	grpcServer  *grpc.Server
	// elector is nil without leader election.
	elector *leaderelection.LeaderElector
	// web are the HTTP servers: probes and metrics, debug, webhooks.
	web []webServer
	// background are further parts that run until the context ends.
	background []func(context.Context) error
	firstWorld atomic.Bool
	draining   atomic.Bool
	// shutdownDelay is how long /readyz fails before the parts stop.
	shutdownDelay time.Duration
}

// New binds the listeners and builds the parts, without serving yet, so a
// caller learns the bound addresses (port 0) before Run.
func New(cfg Config) (*ControlPlane, error) {
	if cfg.Logger == nil {
		cfg.Logger = hclog.NewNullLogger()
	}
	registry := prometheus.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	cp := &ControlPlane{Registry: registry, shutdownDelay: cfg.ShutdownDelay}
	creds, auth, err := xdsSecurity(cfg)
	if err != nil {
		return nil, err
	}
	cp.XDS = xds.New(xds.Options{
		Logger:   cfg.Logger.Named("xds"),
		Registry: registry,
		Gatherer: registry,
		Auth:     auth,
		Limits:   cfg.Limits,
		Observer: cfg.XDSObserver,
	})
	// Sidecars stream their copy stats over the xDS connection; each
	// stream's node is checked exactly as an ADS stream's.
	cp.CopyStats = copystats.New(copystats.Options{
		Verify:   cp.XDS.VerifyNode,
		Registry: registry,
		Logger:   cfg.Logger.Named("copystats"),
		PerPod:   cfg.CopyMetricsPerPod,
		Synced:   cp.XDS.SyncedProxies,
	})
	// The sidecars' stats show TLS failures no Kubernetes object does: a
	// CA that did not sign the target's certificate, a target that wants a
	// client certificate. The leader records them as Events.
	broadcaster := watcher.NewEventBroadcaster()
	alarm := newTLSAlarm(cp.CopyStats.TLS, func() bool { return cp.Watcher != nil && cp.Watcher.Leader() },
		broadcaster.NewRecorder(scheme.Scheme, corev1.EventSource{Component: watcher.EventComponent}), cfg.Logger.Named("tls-alarm"))
	alarmInterval := positiveOr(cfg.TLSAlarmInterval, DefaultTLSAlarmInterval)
	cp.background = append(cp.background, func(ctx context.Context) error {
		return alarm.run(ctx, alarmInterval, broadcaster, cfg.Client.CoreV1().Events(""))
	})
	w, err := watcher.New(watcher.Options{
		Client:       cfg.Client,
		Namespaces:   cfg.Namespaces,
		Debounce:     cfg.Debounce,
		MaxDelay:     cfg.MaxDelay,
		ParseOptions: ownParseOptions(cfg),
		Logger:       cfg.Logger.Named("watcher"),
		Registry:     registry,
		// Followers serve as usual; the leader alone writes status.
		LeaderElected: cfg.LeaderElection != nil,
		Identity:      identityOf(cfg.LeaderElection),
		SidecarsAcked: func() map[string]int { return cp.XDS.SyncedProxies() },
		OnWorld: func(world *translator.World) {
			alarm.setWorld(world)
			cp.CopyStats.SetWorld(world)
			cp.XDS.SetWorld(world)
			cp.firstWorld.Store(true)
		},
	})
	if err != nil {
		return nil, fmt.Errorf("watcher: %w", err)
	}
	cp.Watcher = w
	if cfg.LeaderElection != nil {
		le, err := cfg.LeaderElection.withDefaults()
		if err != nil {
			return nil, err
		}
		if cp.elector, err = newElector(le, cfg.Client, cfg.Logger.Named("leader"), w.SetLeader); err != nil {
			return nil, err
		}
	}

	if cfg.DebugAddress == "" {
		cfg.DebugAddress = "127.0.0.1:0"
	}
	listeners, err := listenAll(
		[]string{"xDS", "HTTP", "debug"},
		[]string{cfg.XDSAddress, cfg.HTTPAddress, cfg.DebugAddress})
	if err != nil {
		return nil, err
	}
	cp.xdsListener = listeners[0]
	cp.XDSAddr, cp.HTTPAddr, cp.DebugAddr = listeners[0].Addr(), listeners[1].Addr(), listeners[2].Addr()
	if !isLoopback(cp.DebugAddr) {
		cfg.Logger.Warn("the debug endpoints listen beyond loopback: whoever reaches this address reads every proxy's state and can profile the process; keep --debug-address on 127.0.0.1 and use kubectl port-forward",
			"debug", cp.DebugAddr.String())
	}

	maxAge := cfg.MaxConnectionAge
	if maxAge <= 0 {
		maxAge = DefaultMaxConnectionAge
	}
	opts := append(cp.XDS.ServerOptions(),
		grpc.Creds(creds),
		// Notice dead peers; end connections after maxAge (with a grace
		// for the stream to close cleanly) so identity is re-verified.
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 5 * time.Second,
			MaxConnectionAge: maxAge, MaxConnectionAgeGrace: 10 * time.Second}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 15 * time.Second, PermitWithoutStream: true}),
	)
	cp.grpcServer = grpc.NewServer(opts...)
	if cfg.InsecureXDS {
		cfg.Logger.Warn("xDS is served in plain text and sidecar identity is NOT verified (--insecure-xds): any client that reaches the xDS port can read any Service's configuration; use only for local development")
	}
	cp.XDS.Register(cp.grpcServer)
	cp.CopyStats.Register(cp.grpcServer)
	cp.web = []webServer{
		{name: "http server", listener: listeners[1], server: newHTTPServer(cp.XDS.HTTPHandler(cp.Ready, cp.ReadyDetail))},
		{name: "debug server", listener: listeners[2], server: newHTTPServer(debugHandler(cp.XDS.DebugHandler()))},
	}
	if cfg.Webhook.Address != "" {
		if err := cp.addWebhook(cfg, registry); err != nil {
			for _, web := range cp.web {
				web.listener.Close()
			}
			cp.xdsListener.Close()
			return nil, err
		}
	}
	return cp, nil
}

// webServer is an HTTP server and its listener.
type webServer struct {
	name     string
	listener net.Listener
	server   *http.Server
}

func newHTTPServer(handler http.Handler) *http.Server {
	return &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second}
}

// listenAll listens on every address, or on none.
func listenAll(names, addresses []string) ([]net.Listener, error) {
	var listeners []net.Listener
	for i, addr := range addresses {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			for _, open := range listeners {
				open.Close()
			}
			return nil, fmt.Errorf("listen for %s on %s: %w", names[i], addr, err)
		}
		listeners = append(listeners, l)
	}
	return listeners, nil
}

// isLoopback reports whether a bound address is reachable from this host
// only.
func isLoopback(addr net.Addr) bool {
	tcp, ok := addr.(*net.TCPAddr)
	return ok && tcp.IP.IsLoopback()
}

// Ready is true once the informers synced and the first snapshot input was
// handed to the xDS server.
func (cp *ControlPlane) Ready() bool {
	return !cp.draining.Load() && cp.Watcher.Synced() && cp.firstWorld.Load()
}

// ReadyDetail explains a degraded but ready state for the /readyz body: a
// Kubernetes watch that is down while the last known config is served. It
// never makes the control plane unready, since serving the last config is
// the right thing to do while the API server is away.
func (cp *ControlPlane) ReadyDetail() string {
	since, down := cp.Watcher.WatchDown()
	if !down {
		return ""
	}
	return fmt.Sprintf("kubernetes watch down for %s: serving the last known config", time.Since(since).Round(time.Second))
}

// Run serves until ctx is done or a part fails.
func (cp *ControlPlane) Run(ctx context.Context) error {
	// The parts run on their own context so that, on shutdown, /readyz can
	// fail for ShutdownDelay first: the Service stops routing new sidecar
	// streams here before the open ones are ended and reconnect elsewhere.
	partsCtx, cancel := context.WithCancel(context.Background())
	defer cancel()
	parts := 3 + len(cp.web) + len(cp.background)
	if cp.elector != nil {
		parts++
	}
	errs := make(chan error, parts)
	for _, part := range cp.background {
		go func() { errs <- part(partsCtx) }()
	}
	if cp.elector != nil {
		go func() { errs <- runElection(partsCtx, cp.elector) }()
	}
	go func() { errs <- cp.XDS.Run(partsCtx) }()
	go func() { errs <- wrap("watcher", cp.Watcher.Run(partsCtx)) }()
	go func() { errs <- wrap("xds grpc server", cp.grpcServer.Serve(cp.xdsListener)) }()
	for _, web := range cp.web {
		go func() {
			err := web.server.Serve(web.listener)
			if errors.Is(err, http.ErrServerClosed) {
				err = nil
			}
			errs <- wrap(web.name, err)
		}()
	}

	// A part that ends without error (e.g. on ctx) does not stop the
	// others; the first failure does.
	var first error
	running := parts
wait:
	for running > 0 {
		select {
		case <-ctx.Done():
			cp.draining.Store(true)
			if cp.shutdownDelay > 0 {
				time.Sleep(cp.shutdownDelay)
			}
			break wait
		case err := <-errs:
			running--
			if err != nil {
				first = err
				break wait
			}
		}
	}
	cp.draining.Store(true)
	cancel()
	shutdownCtx, done := context.WithTimeout(context.Background(), 5*time.Second)
	defer done()
	for _, web := range cp.web {
		_ = web.server.Shutdown(shutdownCtx)
	}
	stopped := make(chan struct{})
	go func() { cp.grpcServer.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-shutdownCtx.Done():
		cp.grpcServer.Stop()
	}
	// Every part ends before Run returns (the elector, say, gives up the
	// Lease and reports it), so nothing of this control plane outlives it.
	for ; running > 0; running-- {
		select {
		case <-errs:
		case <-shutdownCtx.Done():
			return first
		}
	}
	return first
}

func wrap(what string, err error) error {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, grpc.ErrServerStopped) {
		return nil
	}
	return fmt.Errorf("%s: %w", what, err)
}

// xdsSecurity is the xDS port's transport credentials and identity check:
// TLS from the certificate files and TokenReview-verified sidecar identity,
// or, only with InsecureXDS, plain text trusting node metadata.
func xdsSecurity(cfg Config) (credentials.TransportCredentials, *xds.Auth, error) {
	if cfg.InsecureXDS {
		if cfg.TLSCertFile != "" || cfg.TLSKeyFile != "" {
			return nil, nil, errors.New("--insecure-xds and a TLS certificate both given: choose one")
		}
		return insecure.NewCredentials(), nil, nil
	}
	if cfg.TLSCertFile == "" || cfg.TLSKeyFile == "" {
		return nil, nil, errors.New("xDS needs a TLS certificate and key (--xds-tls-cert-file, --xds-tls-key-file; `shadowplane certgen` makes them), or --insecure-xds for local development")
	}
	source, err := certs.NewFileSource(cfg.TLSCertFile, cfg.TLSKeyFile)
	if err != nil {
		return nil, nil, fmt.Errorf("xDS TLS: %w", err)
	}
	authn := kubeauth.New(kubeauth.Options{Client: cfg.Client, Audience: cfg.TokenAudience})
	claims := kubeauth.NewClaimVerifier(cfg.Client)
	return credentials.NewTLS(source.ServerTLSConfig()), &xds.Auth{Authenticate: authn.Authenticate, Verify: claims.Verify}, nil
}

// identityOf is the replica identity the status names: the Lease identity,
// or the watcher's default (the host name) without an election.
func identityOf(le *LeaderElection) string {
	if le == nil {
		return ""
	}
	return le.Identity
}
