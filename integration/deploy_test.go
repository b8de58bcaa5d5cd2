package integration

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

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
	case *rbacv1.Role:
		_, err = c.RbacV1().Roles(o.Namespace).Create(ctx, o, opts)
	case *rbacv1.RoleBinding:
		_, err = c.RbacV1().RoleBindings(o.Namespace).Create(ctx, o, opts)
	case *appsv1.Deployment:
		_, err = c.AppsV1().Deployments(o.Namespace).Create(ctx, o, opts)
	case *policyv1.PodDisruptionBudget:
		_, err = c.PolicyV1().PodDisruptionBudgets(o.Namespace).Create(ctx, o, opts)
	case *networkingv1.NetworkPolicy:
		_, err = c.NetworkingV1().NetworkPolicies(o.Namespace).Create(ctx, o, opts)
	default:
		return fmt.Errorf("test does not know how to create %T", obj)
	}
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

func applyManifests(t *testing.T, ctx context.Context, c kubernetes.Interface, file string, objects []runtime.Object) {
	t.Helper()
	for _, obj := range objects {
		if err := createObject(ctx, c, obj); err != nil {
			t.Fatalf("%s: create %T: %v", file, obj, err)
		}
	}
}

// TestDeployManifests applies deploy/ to the real API server, then runs the
// control plane in cluster mode, as deployed, as the deployed
// ServiceAccount (impersonation), recording every request it makes. The
// ClusterRole is proven sufficient (it syncs, serves, and posts and updates
// verdict Events on the example policy) and minimal (it grants no verb the
// control plane did not use), and policy ConfigMaps are only ever fetched
// with the label selector.
func TestDeployManifests(t *testing.T) {
	e := env(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	root := testtools.RepoRoot()
	manifests := decodeManifests(t, filepath.Join(root, "deploy/shadowplane.yaml"))
	for _, file := range []string{"deploy/shadowplane.yaml", "deploy/examples/entrance-sidecar.yaml", "deploy/examples/policy.yaml"} {
		applyManifests(t, ctx, e.kube.Client, file, decodeManifests(t, filepath.Join(root, file)))
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

	const account = "system:serviceaccount:shadowplane-system:shadowplane"
	requests := &requestRecorder{}
	saClient := clientAs(t, e, account, requests)
	checkAccess(t, ctx, saClient, []accessCheck{
		{"list", "", "configmaps", "", true},
		{"watch", "", "configmaps", "default", true},
		{"list", "discovery.k8s.io", "endpointslices", "", true},
		{"create", "", "events", "default", true},
		{"patch", "", "events", "default", true},
		{"get", "", "configmaps", "default", false},
		{"update", "", "configmaps", "default", false},
		{"update", "", "events", "default", false},
		{"get", "", "secrets", "", false},
		{"list", "", "secrets", "default", false},
	})
	requests.reset()

	// Cluster mode, as the Deployment runs it: no --namespaces.
	if args := deploymentArgs(t, manifests); slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--namespaces") }) {
		t.Fatalf("deploy/shadowplane.yaml is cluster mode but passes %v", args)
	}
	cp, err := harness.StartControlPlane(ctx, e.kube, harness.ControlPlaneOptions{
		AllowedURLHosts: []string{"10.16.0.147"},
		Logger:          testLogger(t),
		Client:          saClient,
	})
	if err != nil {
		t.Fatalf("control plane as the deployed service account: %v", err)
	}
	defer cp.Stop()

	// The example policy's staging/entrance target does not exist here: the
	// control plane (as the service account) says so with an Event, and
	// says it again, which patches the Event's count.
	repeatTargetMissing(t, ctx, e.kube.Client, "default", "mirror-policies")

	checkVerbsUsed(t, requests.all(), clusterRoleRules(t, manifests))
	for _, r := range requests.all() {
		if r.resource == "configmaps" && (r.verb == "list" || r.verb == "watch") && r.labelSelector != "shadowplane.io/policy=true" {
			t.Errorf("%s %s without the policy label selector: every ConfigMap would be fetched", r.verb, r.path)
		}
	}
}

// TestDeployNamespaced applies deploy/namespaced/ and runs the control plane
// with its --namespaces as its ServiceAccount, which holds a Role in each
// watched namespace and nothing cluster-wide: it syncs, posts Events,
// makes no cluster-scoped request and uses every granted verb; outside its
// namespaces the API server refuses it, and `shadowplane serve` pointed at
// one more namespace reports the refusal (client-go's log, as JSON) and
// never gets ready.
func TestDeployNamespaced(t *testing.T) {
	e := env(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	root := testtools.RepoRoot()
	// Installed into a namespace of its own, so that the cluster-mode
	// ClusterRoleBinding of TestDeployManifests, for the ServiceAccount of
	// the same name in shadowplane-system, grants it nothing.
	const home = "shadowplane-namespaced"
	const account = "system:serviceaccount:" + home + ":shadowplane"
	manifests := decodeManifests(t, filepath.Join(root, "deploy/namespaced/shadowplane.yaml"))
	rbac := decodeManifests(t, filepath.Join(root, "deploy/namespaced/rbac.yaml"))
	relocate(append(manifests, rbac...), "shadowplane-system", home)

	var watched []string
	for _, arg := range deploymentArgs(t, manifests) {
		if list, ok := strings.CutPrefix(arg, "--namespaces="); ok {
			watched = strings.Split(list, ",")
		}
	}
	if len(watched) < 2 {
		t.Fatalf("deploy/namespaced Deployment watches %v, want the example's two namespaces", watched)
	}
	const outside = "team-outside"
	for _, ns := range append([]string{outside}, watched...) {
		must(t, e.kube.EnsureNamespace(ctx, ns))
	}
	applyManifests(t, ctx, e.kube.Client, "deploy/namespaced/shadowplane.yaml", manifests)
	applyManifests(t, ctx, e.kube.Client, "deploy/namespaced/rbac.yaml", rbac)
	rules := roleRules(t, rbac, watched)
	for _, ns := range []string{watched[0], outside} {
		policy := decodeManifests(t, filepath.Join(root, "deploy/examples/policy.yaml"))[0].(*corev1.ConfigMap)
		policy.Namespace = ns
		must(t, createObject(ctx, e.kube.Client, policy))
	}

	requests := &requestRecorder{}
	saClient := clientAs(t, e, account, requests)
	var checks []accessCheck
	for _, ns := range watched {
		checks = append(checks,
			accessCheck{"list", "", "configmaps", ns, true},
			accessCheck{"watch", "discovery.k8s.io", "endpointslices", ns, true},
			accessCheck{"create", "", "events", ns, true},
			accessCheck{"get", "", "secrets", ns, false})
	}
	checks = append(checks,
		accessCheck{"list", "", "configmaps", outside, false},
		accessCheck{"list", "", "configmaps", "", false},
		accessCheck{"watch", "", "services", "", false},
		accessCheck{"list", "discovery.k8s.io", "endpointslices", "", false},
		accessCheck{"create", "", "events", outside, false})
	checkAccess(t, ctx, saClient, checks)
	// The API server refuses, not just the review.
	for _, ns := range []string{outside, metav1.NamespaceAll} {
		if _, err := saClient.CoreV1().ConfigMaps(ns).List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
			t.Errorf("list configmaps in %q as the namespaced account: %v, want Forbidden", ns, err)
		}
	}
	requests.reset()

	cp, err := harness.StartControlPlane(ctx, e.kube, harness.ControlPlaneOptions{
		Namespaces:      watched,
		AllowedURLHosts: []string{"10.16.0.147"},
		Logger:          testLogger(t),
		Client:          saClient,
	})
	if err != nil {
		t.Fatalf("control plane with --namespaces %v under the Roles only: %v", watched, err)
	}
	repeatTargetMissing(t, ctx, e.kube.Client, watched[0], "mirror-policies")
	must(t, cp.Stop())

	used := requests.all()
	checkVerbsUsed(t, used, rules)
	for _, r := range used {
		if !slices.Contains(watched, r.namespace) {
			t.Errorf("request outside the watched namespaces %v: %s %s", watched, r.verb, r.path)
		}
	}
	events, err := e.kube.Client.CoreV1().Events(outside).List(ctx, metav1.ListOptions{})
	must(t, err)
	if len(events.Items) != 0 {
		t.Errorf("%d Events in %s, which the control plane does not watch", len(events.Items), outside)
	}

	// The real binary, one namespace too many: refused, and it says so.
	kubeconfig := kubeconfigAs(t, e, account)
	s := launchServe(t, kubeconfig, "127.0.0.1", "--debug-address", "127.0.0.1:0",
		"--namespaces", strings.Join(append(watched[:1:1], outside), ","))
	if err := harness.WaitUntil(ctx, 30*time.Second, func() (bool, error) {
		return s.klogForbidden(outside), nil
	}); err != nil {
		t.Fatalf("serve with --namespaces including %s logged no refusal through klog: %v\n%s", outside, err, s.proc.Log())
	}
	if _, err := harness.GetJSON(ctx, s.http+"/readyz"); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("/readyz with a refused namespace: %v, want 503", err)
	}
	s.logEntries(t) // every line, client-go's included, is bounded JSON
}

// TestDeployModesAlike: deploy/namespaced/shadowplane.yaml is the
// cluster-mode file without the ClusterRole and its binding, plus
// --namespaces and a NetworkPolicy limited to those namespaces.
func TestDeployModesAlike(t *testing.T) {
	root := testtools.RepoRoot()
	cluster := decodeManifests(t, filepath.Join(root, "deploy/shadowplane.yaml"))
	namespaced := decodeManifests(t, filepath.Join(root, "deploy/namespaced/shadowplane.yaml"))
	byKind := func(objects []runtime.Object) map[string]runtime.Object {
		out := map[string]runtime.Object{}
		for _, obj := range objects {
			out[fmt.Sprintf("%T", obj)] = obj
		}
		return out
	}
	c, n := byKind(cluster), byKind(namespaced)
	for kind := range c {
		if _, ok := n[kind]; !ok && !strings.Contains(kind, "ClusterRole") {
			t.Errorf("namespaced mode lacks the %s of cluster mode", kind)
		}
	}
	for kind, obj := range n {
		want, ok := c[kind]
		if !ok {
			t.Errorf("namespaced mode has a %s that cluster mode lacks", kind)
			continue
		}
		switch o := obj.DeepCopyObject().(type) {
		case *appsv1.Deployment:
			args := o.Spec.Template.Spec.Containers[0].Args
			o.Spec.Template.Spec.Containers[0].Args = slices.DeleteFunc(args, func(a string) bool { return strings.HasPrefix(a, "--namespaces=") })
			obj = o
		case *networkingv1.NetworkPolicy:
			// Sidecars only from the watched namespaces.
			o.Spec.Ingress[0].From[0].NamespaceSelector = &metav1.LabelSelector{}
			obj = o
		}
		if !reflect.DeepEqual(obj, want) {
			t.Errorf("%s differs between deploy/shadowplane.yaml and deploy/namespaced/shadowplane.yaml beyond --namespaces and the NetworkPolicy's namespaces", kind)
		}
	}
}

// repeatTargetMissing waits for the TargetMissing Event of the example
// policy (its staging/entrance target does not exist), then points the
// policy at qa/entrance and back, so the control plane reports the same
// Event again: client-go patches the count of a repeated Event.
func repeatTargetMissing(t *testing.T, ctx context.Context, c kubernetes.Interface, ns, name string) {
	t.Helper()
	waitEvent := func(target string, count int32) {
		t.Helper()
		err := harness.WaitUntil(ctx, 30*time.Second, func() (bool, error) {
			events, err := c.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
			if err != nil {
				return false, err
			}
			for _, ev := range events.Items {
				if ev.Reason == "TargetMissing" && strings.Contains(ev.Message, target) && ev.Count >= count {
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			t.Fatalf("no TargetMissing Event naming %s with count %d on %s/%s: %v", target, count, ns, name, err)
		}
	}
	setTarget := func(from, to string) {
		t.Helper()
		cm, err := c.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
		must(t, err)
		cm.Data["policies.yaml"] = strings.Replace(cm.Data["policies.yaml"], "namespace: "+from, "namespace: "+to, 1)
		_, err = c.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{})
		must(t, err)
	}
	waitEvent("staging/entrance", 1)
	setTarget("staging", "qa")
	waitEvent("qa/entrance", 1)
	setTarget("qa", "staging")
	waitEvent("staging/entrance", 2)
}

// deploymentArgs are the control plane container's args in manifests.
func deploymentArgs(t *testing.T, manifests []runtime.Object) []string {
	t.Helper()
	for _, obj := range manifests {
		if d, ok := obj.(*appsv1.Deployment); ok {
			return d.Spec.Template.Spec.Containers[0].Args
		}
	}
	t.Fatal("no Deployment in the manifests")
	return nil
}

func clusterRoleRules(t *testing.T, manifests []runtime.Object) []rbacv1.PolicyRule {
	t.Helper()
	for _, obj := range manifests {
		if r, ok := obj.(*rbacv1.ClusterRole); ok {
			return r.Rules
		}
	}
	t.Fatal("no ClusterRole in the manifests")
	return nil
}

// roleRules returns the rules of the Roles, which must be the same in
// every watched namespace, and one in each.
func roleRules(t *testing.T, manifests []runtime.Object, watched []string) []rbacv1.PolicyRule {
	t.Helper()
	var rules []rbacv1.PolicyRule
	var namespaces []string
	for _, obj := range manifests {
		r, ok := obj.(*rbacv1.Role)
		if !ok {
			continue
		}
		namespaces = append(namespaces, r.Namespace)
		if rules != nil && !reflect.DeepEqual(rules, r.Rules) {
			t.Errorf("Role in %s grants %v, unlike the others: %v", r.Namespace, r.Rules, rules)
		}
		rules = r.Rules
	}
	sort.Strings(namespaces)
	if want := slices.Sorted(slices.Values(watched)); !slices.Equal(namespaces, want) {
		t.Errorf("Roles in %v, want one per --namespaces entry %v", namespaces, want)
	}
	return rules
}

// relocate moves the objects of namespace from to namespace to, the
// Namespace itself and RBAC subjects included.
func relocate(objects []runtime.Object, from, to string) {
	for _, obj := range objects {
		m, err := meta.Accessor(obj)
		if err != nil {
			continue
		}
		if _, ok := obj.(*corev1.Namespace); ok && m.GetName() == from {
			m.SetName(to)
		}
		if m.GetNamespace() == from {
			m.SetNamespace(to)
		}
		if rb, ok := obj.(*rbacv1.RoleBinding); ok {
			for i := range rb.Subjects {
				if rb.Subjects[i].Namespace == from {
					rb.Subjects[i].Namespace = to
				}
			}
		}
	}
}

// checkVerbsUsed fails for each verb the rules grant that no request used
// (least privilege), and for each request the rules do not grant.
func checkVerbsUsed(t *testing.T, used []apiRequest, rules []rbacv1.PolicyRule) {
	t.Helper()
	granted := map[string]bool{}
	for _, rule := range rules {
		for _, group := range rule.APIGroups {
			for _, resource := range rule.Resources {
				for _, verb := range rule.Verbs {
					granted[verbKey(verb, group, resource)] = true
				}
			}
		}
	}
	seen := map[string]bool{}
	for _, r := range used {
		if r.resource == "" {
			continue // discovery and other non-resource paths
		}
		key := verbKey(r.verb, r.group, r.resource)
		seen[key] = true
		if !granted[key] {
			t.Errorf("the control plane made a request its RBAC does not grant: %s %s", key, r.path)
		}
	}
	for key := range granted {
		if !seen[key] {
			t.Errorf("RBAC grants %s, which the control plane never used", key)
		}
	}
}

func verbKey(verb, group, resource string) string {
	if group == "" {
		return verb + " " + resource
	}
	return verb + " " + resource + "." + group
}

type accessCheck struct {
	verb, group, resource, namespace string
	allowed                          bool
}

// checkAccess asks the API server what the client may do.
func checkAccess(t *testing.T, ctx context.Context, c kubernetes.Interface, checks []accessCheck) {
	t.Helper()
	for _, check := range checks {
		review, err := c.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
			Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
				Verb: check.verb, Group: check.group, Resource: check.resource, Namespace: check.namespace,
			}},
		}, metav1.CreateOptions{})
		must(t, err)
		if review.Status.Allowed != check.allowed {
			t.Errorf("%s %s in namespace %q: allowed=%v, want %v", check.verb, verbKey("", check.group, check.resource), check.namespace, review.Status.Allowed, check.allowed)
		}
	}
}

// clientAs is a client impersonating user whose requests are recorded.
func clientAs(t *testing.T, e *sharedEnv, user string, recorder *requestRecorder) kubernetes.Interface {
	t.Helper()
	cfg := rest.CopyConfig(e.kube.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user}
	cfg.Wrap(recorder.wrap)
	c, err := kubernetes.NewForConfig(cfg)
	must(t, err)
	return c
}

// kubeconfigAs writes a kubeconfig that impersonates user.
func kubeconfigAs(t *testing.T, e *sharedEnv, user string) string {
	t.Helper()
	cfg, err := clientcmd.LoadFromFile(e.kube.KubeconfigPath)
	must(t, err)
	for _, auth := range cfg.AuthInfos {
		auth.Impersonate = user
	}
	path := filepath.Join(t.TempDir(), "kubeconfig")
	must(t, clientcmd.WriteToFile(*cfg, path))
	return path
}

// klogForbidden reports whether serve logged, through klog as JSON, that
// the API server refused it something in namespace ns.
func (s *servedBinary) klogForbidden(ns string) bool {
	for _, line := range strings.Split(s.proc.Log(), "\n") {
		if strings.Contains(line, `"@module":"shadowplane.klog`) && strings.Contains(line, "forbidden") && strings.Contains(line, ns) {
			return true
		}
	}
	return false
}

// apiRequest is one API request, as RBAC sees it.
type apiRequest struct {
	verb, group, resource, namespace string
	labelSelector                    string
	path                             string
}

// requestRecorder records the requests of a client (rest.Config.Wrap).
type requestRecorder struct {
	mu       sync.Mutex
	requests []apiRequest
}

func (r *requestRecorder) wrap(next http.RoundTripper) http.RoundTripper {
	return roundTripperFunc(func(req *http.Request) (*http.Response, error) {
		r.mu.Lock()
		r.requests = append(r.requests, parseAPIRequest(req))
		r.mu.Unlock()
		return next.RoundTrip(req)
	})
}

func (r *requestRecorder) all() []apiRequest {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.requests)
}

func (r *requestRecorder) reset() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.requests = nil
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }

// parseAPIRequest names a request's RBAC verb, group, resource and
// namespace from its method and path:
// /api/v1[/namespaces/NS]/RESOURCE[/NAME] or
// /apis/GROUP/VERSION[/namespaces/NS]/RESOURCE[/NAME]. Other paths
// (discovery) get no resource.
func parseAPIRequest(req *http.Request) apiRequest {
	r := apiRequest{path: req.URL.RequestURI(), labelSelector: req.URL.Query().Get("labelSelector")}
	parts := strings.Split(strings.Trim(req.URL.Path, "/"), "/")
	switch {
	case len(parts) >= 3 && parts[0] == "api":
		parts = parts[2:]
	case len(parts) >= 4 && parts[0] == "apis":
		r.group, parts = parts[1], parts[3:]
	default:
		return r
	}
	if len(parts) >= 3 && parts[0] == "namespaces" {
		r.namespace, parts = parts[1], parts[2:]
	}
	r.resource = parts[0]
	named := len(parts) > 1
	switch req.Method {
	case http.MethodGet:
		switch {
		case named:
			r.verb = "get"
		case req.URL.Query().Get("watch") == "true" || req.URL.Query().Get("watch") == "1":
			r.verb = "watch"
		default:
			r.verb = "list"
		}
	case http.MethodPost:
		r.verb = "create"
	case http.MethodPatch:
		r.verb = "patch"
	case http.MethodPut:
		r.verb = "update"
	case http.MethodDelete:
		r.verb = "delete"
		if !named {
			r.verb = "deletecollection"
		}
	}
	return r
}

func bufioReader(data []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(data)) }
