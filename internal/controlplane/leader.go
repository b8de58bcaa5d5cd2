package controlplane

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/leaderelection"
	"k8s.io/client-go/tools/leaderelection/resourcelock"
)

// Defaults of LeaderElection, client-go's usual ones.
const (
	DefaultLeaseName     = "shadowplane"
	DefaultLeaseDuration = 15 * time.Second
	DefaultRenewDeadline = 10 * time.Second
	DefaultRetryPeriod   = 2 * time.Second
)

// LeaderElection elects, among the replicas, the one that records Events
// and writes each policy ConfigMap's status and last valid versions, with a
// coordination.k8s.io Lease. Every replica serves xDS either way.
type LeaderElection struct {
	// Namespace and Name locate the Lease (Name default DefaultLeaseName).
	Namespace string
	Name      string
	// Identity is this replica's name in the Lease; unique per replica.
	Identity string
	// Zero durations take the defaults above.
	LeaseDuration time.Duration
	RenewDeadline time.Duration
	RetryPeriod   time.Duration
}

func (le LeaderElection) withDefaults() (LeaderElection, error) {
	if le.Namespace == "" {
		return le, errors.New("leader election: the Lease namespace is required")
	}
	if le.Identity == "" {
		return le, errors.New("leader election: the replica identity is required")
	}
	if le.Name == "" {
		le.Name = DefaultLeaseName
	}
	le.LeaseDuration = positiveOr(le.LeaseDuration, DefaultLeaseDuration)
	le.RenewDeadline = positiveOr(le.RenewDeadline, DefaultRenewDeadline)
	le.RetryPeriod = positiveOr(le.RetryPeriod, DefaultRetryPeriod)
	return le, nil
}

func positiveOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// newElector builds the elector; lead is told when this replica starts and
// stops leading.
func newElector(le LeaderElection, client kubernetes.Interface, log hclog.Logger, lead func(bool)) (*leaderelection.LeaderElector, error) {
	lock := &resourcelock.LeaseLock{
		LeaseMeta:  metav1.ObjectMeta{Namespace: le.Namespace, Name: le.Name},
		Client:     client.CoordinationV1(),
		LockConfig: resourcelock.ResourceLockConfig{Identity: le.Identity},
	}
	elector, err := leaderelection.NewLeaderElector(leaderelection.LeaderElectionConfig{
		Lock:          lock,
		Name:          le.Name,
		LeaseDuration: le.LeaseDuration,
		RenewDeadline: le.RenewDeadline,
		RetryPeriod:   le.RetryPeriod,
		// On shutdown the Lease is given up at once, so another replica
		// leads within RetryPeriod rather than LeaseDuration.
		ReleaseOnCancel: true,
		Callbacks: leaderelection.LeaderCallbacks{
			OnStartedLeading: func(context.Context) { lead(true) },
			OnStoppedLeading: func() { lead(false) },
			OnNewLeader: func(identity string) {
				log.Info("leader elected", "leader", identity, "lease", le.Namespace+"/"+le.Name, "self", identity == le.Identity)
			},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("leader election: %w", err)
	}
	return elector, nil
}

// runElection campaigns until ctx is done: a replica that loses the Lease
// (e.g. it could not renew while the API server was away) campaigns again.
func runElection(ctx context.Context, elector *leaderelection.LeaderElector) error {
	for ctx.Err() == nil {
		elector.Run(ctx)
	}
	return nil
}
