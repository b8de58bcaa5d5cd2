package watcher

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/hashicorp/go-hclog"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	clienttesting "k8s.io/client-go/testing"
	"k8s.io/utils/clock"
)

// TestStoreWriterStopsWhenDeposed: a replica that loses the Lease during a
// pass sends no further patch.
func TestStoreWriterStopsWhenDeposed(t *testing.T) {
	a := policyConfigMap("default", "a", nil)
	a.ResourceVersion = "41"
	b := policyConfigMap("default", "b", nil)
	b.ResourceVersion = "42"
	client := fake.NewClientset(a, b)
	var leader atomic.Bool
	leader.Store(true)
	var patches []clienttesting.PatchAction
	client.PrependReactor("patch", "configmaps", func(act clienttesting.Action) (bool, runtime.Object, error) {
		patches = append(patches, act.(clienttesting.PatchAction))
		leader.Store(false) // the Lease is lost while this patch is in flight
		return true, a, nil
	})
	m, _ := newMetrics(nil)
	s := &storeWriter{client: client, log: hclog.NewNullLogger(), clock: clock.RealClock{}, identity: "old",
		cached: func(ref configMapRef) *corev1.ConfigMap {
			if ref.Name == "a" {
				return a
			}
			return b
		}, isLeader: leader.Load, metrics: m, kick: make(chan struct{}, 1),
		written: map[configMapRef]writtenAnnotations{}}
	s.desired = map[configMapRef]desiredAnnotations{
		{"default", "a"}: {lastValid: "[]", status: &ConfigMapStatus{}},
		{"default", "b"}: {lastValid: "[]", status: &ConfigMapStatus{}},
	}
	s.writeAll(context.Background())
	if len(patches) != 1 {
		t.Fatalf("a replica that lost the Lease after its first patch sent %d patches, want 1", len(patches))
	}
}
