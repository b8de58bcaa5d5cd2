package integration

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"

	"github.com/shadowplane/shadowplane/integration/harness"
	"github.com/shadowplane/shadowplane/internal/testtools"
)

// decodeManifests reads every object of a multi-document YAML file.
func decodeManifests(t *testing.T, path string) []runtime.Object {
	t.Helper()
	data, err := os.ReadFile(path)
	must(t, err)
	reader := utilyaml.NewYAMLReader(bufioReader(data))
	var objects []runtime.Object
	for {
		doc, err := reader.Read()
		if errors.Is(err, io.EOF) {
			return objects
		}
		must(t, err)
		if len(bytes.TrimSpace(doc)) == 0 {
			continue
		}
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(doc, nil, nil)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		objects = append(objects, obj)
	}
}

// createObject creates one typed object with the typed clients (dry-run
// first, so schema errors name the manifest).
func createObject(ctx context.Context, c kubernetes.Interface, obj runtime.Object) error {
	opts := metav1.CreateOptions{}
	var err error
	switch o := obj.(type) {
	case *corev1.Namespace:
		_, err = c.CoreV1().Namespaces().Create(ctx, o, opts)
	case *corev1.ServiceAccount:
		_, err = c.CoreV1().ServiceAccounts(o.Namespace).Create(ctx, o, opts)
	case *corev1.Service:
		_, err = c.CoreV1().Services(o.Namespace).Create(ctx, o, opts)
	case *corev1.ConfigMap:
		_, err = c.CoreV1().ConfigMaps(o.Namespace).Create(ctx, o, opts)
	case *rbacv1.ClusterRole:
		_, err = c.RbacV1().ClusterRoles().Create(ctx, o, opts)
	case *rbacv1.ClusterRoleBinding:
		_, err = c.RbacV1().ClusterRoleBindings().Create(ctx, o, opts)
	case *appsv1.Deployment:
		_, err = c.AppsV1().Deployments(o.Namespace).Create(ctx, o, opts)
	case *policyv1.PodDisruptionBudget:
		_, err = c.PolicyV1().PodDisruptionBudgets(o.Namespace).Create(ctx, o, opts)
	default:
		return fmt.Errorf("test does not know how to create %T", obj)
	}
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// TestDeployManifests applies deploy/ to the real API server, then runs the
// control plane as the deployed ServiceAccount (impersonation), so the RBAC
// in deploy/shadowplane.yaml is proven sufficient: it syncs, serves, and
// posts verdict Events on the example policy.
func TestDeployManifests(t *testing.T) {
	e := env(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	root := testtools.RepoRoot()
	for _, file := range []string{"deploy/shadowplane.yaml", "deploy/examples/entrance-sidecar.yaml", "deploy/examples/policy.yaml"} {
		for _, obj := range decodeManifests(t, filepath.Join(root, file)) {
			if err := createObject(ctx, e.kube.Client, obj); err != nil {
				t.Fatalf("%s: create %T: %v", file, obj, err)
			}
		}
	}

	// `shadowplane inject` output is accepted by the API server as is.
	injected := filepath.Join(t.TempDir(), "injected.yaml")
	out, err := exec.Command(e.shadowplane, "inject", "-f", filepath.Join(root, "deploy/examples/app-without-sidecar.yaml"),
		"--service", "checkout", "--ports", "15001:8080").Output()
	if err != nil {
		t.Fatalf("shadowplane inject: %v", err)
	}
	must(t, os.WriteFile(injected, out, 0o600))
	for _, obj := range decodeManifests(t, injected) {
		if err := createObject(ctx, e.kube.Client, obj); err != nil {
			t.Fatalf("injected manifest: create %T: %v\n%s", obj, err, out)
		}
	}
	deployment, err := e.kube.Client.AppsV1().Deployments("default").Get(ctx, "checkout", metav1.GetOptions{})
	must(t, err)
	if n := len(deployment.Spec.Template.Spec.Containers); n != 2 {
		t.Errorf("injected Deployment stored with %d containers, want app + sidecar", n)
	}

	asServiceAccount := rest.CopyConfig(e.kube.Config)
	asServiceAccount.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:shadowplane-system:shadowplane"}
	saClient, err := kubernetes.NewForConfig(asServiceAccount)
	must(t, err)

	// Least privilege: the account may read what it watches, not Secrets.
	for _, check := range []struct {
		verb, group, resource string
		allowed               bool
	}{
		{"watch", "", "configmaps", true},
		{"list", "discovery.k8s.io", "endpointslices", true},
		{"create", "", "events", true},
		{"get", "", "secrets", false},
		{"update", "", "configmaps", false},
	} {
		review, err := saClient.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
			Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
				Verb: check.verb, Group: check.group, Resource: check.resource,
			}},
		}, metav1.CreateOptions{})
		must(t, err)
		if review.Status.Allowed != check.allowed {
			t.Errorf("service account %s %s.%s: allowed=%v, want %v", check.verb, check.resource, check.group, review.Status.Allowed, check.allowed)
		}
	}

	cp, err := harness.StartControlPlane(ctx, e.kube, harness.ControlPlaneOptions{
		Namespaces:      []string{"default"},
		AllowedURLHosts: []string{"10.16.0.147"},
		Logger:          testLogger(t),
		Client:          saClient,
	})
	if err != nil {
		t.Fatalf("control plane as the deployed service account: %v", err)
	}
	defer cp.Stop()

	// The example policy's staging/entrance target does not exist here: the
	// control plane (as the service account) must say so with an Event.
	err = harness.WaitUntil(ctx, 30*time.Second, func() (bool, error) {
		events, err := e.kube.Client.CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=mirror-policies"})
		if err != nil {
			return false, err
		}
		for _, ev := range events.Items {
			if ev.Reason == "TargetMissing" && strings.Contains(ev.Message, "staging") {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("no TargetMissing Event posted by the service account on default/mirror-policies: %v", err)
	}
}

func bufioReader(data []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(data)) }
