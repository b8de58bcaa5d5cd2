package watcher

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/record"
	"k8s.io/utils/clock"

	"github.com/shadowplane/shadowplane/policy"
	"github.com/shadowplane/shadowplane/translator"
)

// Defaults for Options fields left zero.
const (
	DefaultPolicyLabel = "shadowplane.io/policy=true"
	DefaultDebounce    = 10 * time.Millisecond
	DefaultMaxDelay    = 50 * time.Millisecond
)

// EventComponent is the source component of the Events the watcher records.
const EventComponent = "shadowplane"

// Options configure a Watcher.
type Options struct {
	// Client talks to the Kubernetes API. Required.
	Client kubernetes.Interface
	// Namespaces to watch; empty means all namespaces.
	Namespaces []string
	// PolicyLabel is the label selector of policy ConfigMaps
	// (default DefaultPolicyLabel).
	PolicyLabel string
	// Debounce is the burst window: a change after this long without a
	// World handed on is handed on at once; a change sooner than that (or
	// while a World is being handed on) waits until changes have been quiet
	// this long (default DefaultDebounce).
	Debounce time.Duration
	// MaxDelay is the longest a burst of changes may hold a World back
	// (default DefaultMaxDelay; raised to Debounce if smaller).
	MaxDelay time.Duration
	// ParseOptions are passed to policy.ParsePolicies.
	ParseOptions policy.ParseOptions
	// Logger receives every verdict and lifecycle message (default: hclog's
	// default logger named "watcher").
	Logger hclog.Logger
	// Registry, when set, receives the watcher's metrics.
	Registry prometheus.Registerer
	// Recorder records the verdict Events. When nil, Run records them to the
	// API through Client as component EventComponent.
	Recorder record.EventRecorder
	// LeaderElected says leadership is decided elsewhere and told through
	// Watcher.SetLeader; until then the watcher follows: it serves, but
	// records no Event and writes no annotation. When false the watcher
	// leads from the start (a single replica).
	LeaderElected bool
	// Identity names this replica in the status it writes (default: the
	// host name).
	Identity string
	// SidecarsAcked counts, by "namespace/name" of the Service they front,
	// the connected sidecars that have acknowledged their current
	// configuration, for the status of the policies of that Service; nil
	// counts none. It is called once per status refresh.
	SidecarsAcked func() map[string]int
	// OnWorld receives each new World. It is called from one goroutine, never
	// concurrently, and must not modify the World. Required.
	OnWorld func(*translator.World)

	// clock is replaced by tests to drive the debounce deterministically.
	clock clock.Clock
	// noStoreWrites turns the leader's annotation writes off, for tests
	// that are not about them.
	noStoreWrites bool
}

// withDefaults validates o and returns a copy with defaults filled in and the
// parsed policy label selector.
func (o Options) withDefaults() (Options, labels.Selector, error) {
	if o.Client == nil {
		return o, nil, errors.New("watcher: Options.Client is required")
	}
	if o.OnWorld == nil {
		return o, nil, errors.New("watcher: Options.OnWorld is required")
	}
	if o.PolicyLabel == "" {
		o.PolicyLabel = DefaultPolicyLabel
	}
	selector, err := labels.Parse(o.PolicyLabel)
	if err != nil {
		return o, nil, fmt.Errorf("watcher: policy label selector %q: %w", o.PolicyLabel, err)
	}
	if o.Debounce <= 0 {
		o.Debounce = DefaultDebounce
	}
	if o.MaxDelay <= 0 {
		o.MaxDelay = DefaultMaxDelay
	}
	if o.MaxDelay < o.Debounce {
		o.MaxDelay = o.Debounce
	}
	namespaces, err := normalizeNamespaces(o.Namespaces)
	if err != nil {
		return o, nil, err
	}
	o.Namespaces = namespaces
	if o.Logger == nil {
		o.Logger = hclog.Default().Named("watcher")
	}
	if o.Identity == "" {
		o.Identity, _ = os.Hostname()
	}
	if o.clock == nil {
		o.clock = clock.RealClock{}
	}
	return o, selector, nil
}

// normalizeNamespaces checks, sorts and dedupes the namespaces to watch. A
// name that cannot be a namespace is refused here, at start, rather than
// left to fail every list request.
func normalizeNamespaces(in []string) ([]string, error) {
	out := make([]string, 0, len(in))
	for _, ns := range in {
		if ns == "" {
			return nil, errors.New("watcher: Options.Namespaces holds an empty name; leave the list empty to watch all namespaces")
		}
		if problems := validation.IsDNS1123Label(ns); len(problems) > 0 {
			return nil, fmt.Errorf("watcher: namespace %q: %s", ns, strings.Join(problems, "; "))
		}
		out = append(out, ns)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}
