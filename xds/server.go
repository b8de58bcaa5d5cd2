package xds

import (
	"context"
	"sync"
	"time"

	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
	"google.golang.org/grpc"

	"github.com/shadowplane/shadowplane/nodemeta"
	"github.com/shadowplane/shadowplane/policy"
	"github.com/shadowplane/shadowplane/translator"
)

// Defaults for Options.
const (
	DefaultIdleGroupTTL  = 5 * time.Minute
	DefaultSweepInterval = 30 * time.Second
)

// Options configure a Server.
type Options struct {
	// Logger receives the server's logs and go-control-plane's; nil
	// discards them.
	Logger hclog.Logger
	// Registry receives the server's metrics. Nil means a private registry,
	// still served by HTTPHandler's /metrics. A Server registers fixed
	// metric names, so give each Server its own registry.
	Registry prometheus.Registerer
	// Gatherer is what /metrics serves. Nil means Registry when it is also
	// a Gatherer (as *prometheus.Registry is), else prometheus.DefaultGatherer.
	Gatherer prometheus.Gatherer
	// IdleGroupTTL is how long a node group keeps its snapshot with no
	// proxy connected (default 5 minutes); go-control-plane never frees
	// snapshots by itself.
	IdleGroupTTL time.Duration
	// SweepInterval is how often Run looks for idle groups (default 30s).
	SweepInterval time.Duration
	// Auth verifies sidecar identity; nil trusts node metadata as claimed,
	// which only --insecure-xds allows (and /metrics shows).
	Auth *Auth
	// Limits bound each client; zero fields take DefaultLimits.
	Limits Limits
	// Observer, when set, is told when snapshots are set, responses sent
	// and ACKs received: for benchmarks.
	Observer *Observer
}

// Server is shadowplane's xDS server: a snapshot cache keyed by node group,
// go-control-plane's ADS server over it, and the per-proxy state its
// callbacks record.
type Server struct {
	log            hclog.Logger
	cache          *groupCache
	xds            serverv3.Server
	metrics        *metrics
	authMetrics    *authMetrics
	gatherer       prometheus.Gatherer
	auth           *Auth
	limits         Limits
	connMu         sync.Mutex
	connStreams    map[string]int // open streams by peer address (one connection)
	newStreams     *rate.Limiter
	boundsExceeded *prometheus.CounterVec
	observer       Observer

	idleTTL       time.Duration
	sweepInterval time.Duration

	// translate is translator.Translate; tests substitute output they
	// control.
	translate func(*translator.World, nodemeta.NodeGroup) *translator.Output

	// ctx bounds every xDS stream and SetSnapshot; stop ends them when Run
	// returns.
	ctx  context.Context
	stop context.CancelFunc

	// translateMu serialises translation and SetSnapshot, so a snapshot
	// built from an older World never replaces one built from a newer
	// World, and the cache always holds what groups[].snapshot records.
	// Lock order: translateMu before mu. Never hold mu across SetSnapshot:
	// the cache pushes into streams whose goroutines take mu in callbacks.
	translateMu sync.Mutex
	// inputs caches what groupInputs reads of each policy, and byService
	// indexes the latest World's policies; both guarded by translateMu.
	inputs    inputCache
	byService map[string][]*policy.Policy

	mu     sync.Mutex
	world  *translator.World
	groups map[string]*groupState
	// snapshotGroups counts the groups holding a snapshot.
	snapshotGroups int
	streams        map[streamKey]*streamState
	pushCounts     map[string]uint64
}

// New builds a Server. Call Register to serve it over gRPC and Run to free
// idle node groups.
func New(opts Options) *Server {
	logger := opts.Logger
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	reg, gatherer := opts.Registry, opts.Gatherer
	if reg == nil {
		private := prometheus.NewRegistry()
		reg = private
		if gatherer == nil {
			gatherer = private
		} else {
			gatherer = prometheus.Gatherers{gatherer, private}
		}
	}
	if gatherer == nil {
		if g, ok := reg.(prometheus.Gatherer); ok {
			gatherer = g
		} else {
			gatherer = prometheus.DefaultGatherer
		}
	}

	ctx, stop := context.WithCancel(context.Background())
	s := &Server{
		log:            logger,
		metrics:        newMetrics(reg),
		authMetrics:    newAuthMetrics(reg, opts.Auth == nil),
		auth:           opts.Auth,
		limits:         opts.Limits.withDefaults(),
		boundsExceeded: newBoundsCounter(reg),
		observer:       orNoObserver(opts.Observer),
		connStreams:    map[string]int{},
		gatherer:       gatherer,
		idleTTL:        positiveOr(opts.IdleGroupTTL, DefaultIdleGroupTTL),
		sweepInterval:  positiveOr(opts.SweepInterval, DefaultSweepInterval),
		translate:      translator.Translate,
		ctx:            ctx,
		stop:           stop,
		groups:         map[string]*groupState{},
		streams:        map[streamKey]*streamState{},
		pushCounts:     map[string]uint64{},
	}
	s.newStreams = rate.NewLimiter(rate.Limit(s.limits.NewStreamsPerSecond), s.limits.NewStreamBurst)
	cplLog := hclogAdapter{log: logger.Named("go-control-plane")}
	s.cache = newGroupCache(ctx, groupHash{}, cplLog)
	// The option type is shared by the SotW and delta servers; the logger
	// must be set for delta, which has no default.
	s.xds = serverv3.NewServer(ctx, s.cache, callbacks{s: s}, sotw.WithOrderedADS(), sotw.WithLogger(cplLog))
	return s
}

func orNoObserver(o *Observer) Observer {
	if o == nil {
		return Observer{}
	}
	return *o
}

// Register serves the Aggregated Discovery Service, state-of-the-world and
// delta, on g. Sidecars use ADS only, so the per-type services are not
// registered.
func (s *Server) Register(g *grpc.Server) {
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(g, s.xds)
}

// Run frees the snapshots of node groups that have had no proxy connected
// for IdleGroupTTL, until ctx ends. When it returns it ends every open xDS
// stream, so a graceful gRPC stop can complete; proxies reconnect to
// another replica.
func (s *Server) Run(ctx context.Context) error {
	defer s.stop()
	ticker := time.NewTicker(s.sweepInterval)
	defer ticker.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case now := <-ticker.C:
			s.sweepIdleGroups(now)
		}
	}
}

// Pushes returns, by short type name (listener, route, cluster, endpoint,
// runtime), how many times a node group's snapshot changed that type's
// version: the same counts as shadowplane_xds_pushes_total.
func (s *Server) Pushes() map[string]uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]uint64, len(translator.ResourceTypes))
	for _, t := range translator.ResourceTypes {
		out[t.Name] = s.pushCounts[t.Name]
	}
	return out
}

// hasWorld reports whether SetWorld has been called.
func (s *Server) hasWorld() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.world != nil
}
