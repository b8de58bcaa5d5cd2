package kubeauth

import (
	"context"
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/client-go/kubernetes"
)

// ErrPermissionDenied is wrapped by every error that means "the verified
// identity is not entitled to what the client claims".
var ErrPermissionDenied = errors.New("permission denied")

// Claim is what a sidecar says about itself in its node metadata.
type Claim struct {
	NodeID    string
	Namespace string
	Service   string
}

// ClaimVerifier checks a sidecar's claim against its verified identity and
// the Kubernetes objects behind it.
type ClaimVerifier struct {
	client kubernetes.Interface
}

// NewClaimVerifier builds a ClaimVerifier; it needs get on pods and
// services in the sidecars' namespaces.
func NewClaimVerifier(client kubernetes.Interface) *ClaimVerifier {
	return &ClaimVerifier{client: client}
}

// Verify accepts the claim only when the node is the token's pod, in the
// token's namespace, run by the token's ServiceAccount, and selected by the
// Service it claims to front. A refusal wraps ErrPermissionDenied; other
// errors mean the API server could not be asked.
func (v *ClaimVerifier) Verify(ctx context.Context, id Identity, c Claim) error {
	if c.Namespace != id.Namespace {
		return fmt.Errorf("%w: identity %s may not claim namespace %q", ErrPermissionDenied, id, c.Namespace)
	}
	if c.NodeID != id.PodName {
		return fmt.Errorf("%w: identity %s may not claim node id %q (the node id must be the pod name)", ErrPermissionDenied, id, c.NodeID)
	}
	pod, err := v.client.CoreV1().Pods(id.Namespace).Get(ctx, id.PodName, metav1.GetOptions{})
	if apierrors.IsForbidden(err) {
		// Namespaced mode: the control plane may read only the namespaces
		// it serves, so a sidecar elsewhere is not one of its sidecars.
		return fmt.Errorf("%w: namespace %q is not served by this control plane", ErrPermissionDenied, id.Namespace)
	}
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("%w: pod %s/%s of the token does not exist", ErrPermissionDenied, id.Namespace, id.PodName)
	}
	if err != nil {
		return fmt.Errorf("get pod %s/%s: %w", id.Namespace, id.PodName, err)
	}
	if string(pod.UID) != id.PodUID {
		return fmt.Errorf("%w: pod %s/%s has uid %s, the token was issued to uid %s (a pod of the same name was replaced)",
			ErrPermissionDenied, id.Namespace, id.PodName, pod.UID, id.PodUID)
	}
	if pod.Spec.ServiceAccountName != id.ServiceAccount {
		return fmt.Errorf("%w: pod %s/%s runs as ServiceAccount %q, not %q",
			ErrPermissionDenied, id.Namespace, id.PodName, pod.Spec.ServiceAccountName, id.ServiceAccount)
	}
	svc, err := v.client.CoreV1().Services(id.Namespace).Get(ctx, c.Service, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return fmt.Errorf("%w: identity %s claims Service %q, which does not exist", ErrPermissionDenied, id, c.Service)
	}
	if err != nil {
		return fmt.Errorf("get service %s/%s: %w", id.Namespace, c.Service, err)
	}
	// A Service without a selector selects no pod by itself: only a
	// selector that matches the pod entitles it to the Service's config.
	if len(svc.Spec.Selector) == 0 || !labels.SelectorFromValidatedSet(svc.Spec.Selector).Matches(labels.Set(pod.Labels)) {
		return fmt.Errorf("%w: Service %s/%s does not select pod %s", ErrPermissionDenied, id.Namespace, c.Service, id.PodName)
	}
	return nil
}
