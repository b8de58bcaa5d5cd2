package kubeauth

import (
	"context"
	"errors"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"
)

func TestClaimVerifier(t *testing.T) {
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: "checkout-7d9f", UID: "1111", Labels: map[string]string{"app": "checkout"}},
		Spec:       corev1.PodSpec{ServiceAccountName: "checkout"},
	}
	svc := func(name string, sel map[string]string) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: "shop", Name: name}, Spec: corev1.ServiceSpec{Selector: sel}}
	}
	client := fake.NewClientset(pod,
		svc("checkout", map[string]string{"app": "checkout"}),
		svc("payments", map[string]string{"app": "payments"}),
		svc("headless", nil))
	v := NewClaimVerifier(client)
	id := Identity{Namespace: "shop", ServiceAccount: "checkout", PodName: "checkout-7d9f", PodUID: "1111"}
	claim := Claim{NodeID: "checkout-7d9f", Namespace: "shop", Service: "checkout"}

	tests := []struct {
		name   string
		id     Identity
		claim  Claim
		errHas string
	}{
		{"own pod and service", id, claim, ""},
		{"other namespace", id, Claim{NodeID: claim.NodeID, Namespace: "bank", Service: "checkout"}, `may not claim namespace "bank"`},
		{"other node id", id, Claim{NodeID: "payments-1", Namespace: "shop", Service: "checkout"}, `may not claim node id "payments-1"`},
		{"service that does not select the pod", id, Claim{NodeID: claim.NodeID, Namespace: "shop", Service: "payments"}, "does not select pod"},
		{"service without selector", id, Claim{NodeID: claim.NodeID, Namespace: "shop", Service: "headless"}, "does not select pod"},
		{"missing service", id, Claim{NodeID: claim.NodeID, Namespace: "shop", Service: "nope"}, "does not exist"},
		{"replaced pod", Identity{Namespace: "shop", ServiceAccount: "checkout", PodName: "checkout-7d9f", PodUID: "9999"}, claim, "was replaced"},
		{"other service account", Identity{Namespace: "shop", ServiceAccount: "default", PodName: "checkout-7d9f", PodUID: "1111"}, claim, `runs as ServiceAccount "checkout"`},
		{"missing pod", Identity{Namespace: "shop", ServiceAccount: "checkout", PodName: "gone", PodUID: "1"}, Claim{NodeID: "gone", Namespace: "shop", Service: "checkout"}, "does not exist"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := v.Verify(context.Background(), tc.id, tc.claim)
			if tc.errHas == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if !errors.Is(err, ErrPermissionDenied) || !strings.Contains(err.Error(), tc.errHas) {
				t.Fatalf("err = %v; want ErrPermissionDenied containing %q", err, tc.errHas)
			}
		})
	}
}

// TestClaimVerifierOutsideServedNamespaces: in namespaced mode the API
// server forbids reading pods elsewhere; that is a refusal, not an outage
// the sidecar should retry forever.
func TestClaimVerifierOutsideServedNamespaces(t *testing.T) {
	client := fake.NewClientset()
	client.PrependReactor("get", "pods", func(k8stesting.Action) (bool, runtime.Object, error) {
		return true, nil, apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "x", errors.New("not in the Role"))
	})
	id := Identity{Namespace: "elsewhere", ServiceAccount: "a", PodName: "p", PodUID: "u"}
	err := NewClaimVerifier(client).Verify(context.Background(), id, Claim{NodeID: "p", Namespace: "elsewhere", Service: "s"})
	if !errors.Is(err, ErrPermissionDenied) || !strings.Contains(err.Error(), "not served by this control plane") {
		t.Fatalf("err = %v, want ErrPermissionDenied naming the unserved namespace", err)
	}
}
