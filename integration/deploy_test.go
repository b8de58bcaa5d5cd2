package integration

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
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
	batchv1 "k8s.io/api/batch/v1"
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
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/client-go/util/retry"

	"github.com/shadowplane/shadowplane/integration/harness"
	"github.com/shadowplane/shadowplane/internal/certs"
	"github.com/shadowplane/shadowplane/internal/controlplane"
	"github.com/shadowplane/shadowplane/internal/testtools"
	"github.com/shadowplane/shadowplane/watcher"
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
	case *batchv1.Job:
		_, err = c.BatchV1().Jobs(o.Namespace).Create(ctx, o, opts)
	case *batchv1.CronJob:
		_, err = c.BatchV1().CronJobs(o.Namespace).Create(ctx, o, opts)
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

// TestDeployManifests applies deploy/ to the real API server and runs what
// it deploys as the deployed ServiceAccounts (impersonation), recording
// every request each makes:
//   - `shadowplane certgen`, as the certgen Job runs it, creates the CA and
//     serving Secrets, does nothing on a second run and renews on a third;
//     its Role is proven sufficient and minimal, down to the Secret names;
//   - `shadowplane inject --ca-file` output, with the CA certgen made, is
//     accepted by the API server as is;
//   - the control plane, in cluster mode, serves certgen's certificate to a
//     real Envoy sidecar that verifies it and presents its pod's token: the
//     ClusterRole is proven sufficient (it syncs, verifies the sidecar with a
//     TokenReview and its Pod and Service, and posts and updates verdict
//     Events) and minimal (it grants no verb the control plane did not use),
//     and policy ConfigMaps are only ever fetched with the label selector.
func TestDeployManifests(t *testing.T) {
	e := env(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	root := testtools.RepoRoot()
	manifests := decodeManifests(t, filepath.Join(root, "deploy/shadowplane.yaml"))
	for _, file := range []string{"deploy/shadowplane.yaml", "deploy/examples/entrance-sidecar.yaml", "deploy/examples/policy.yaml"} {
		applyManifests(t, ctx, e.kube.Client, file, decodeManifests(t, filepath.Join(root, file)))
	}
	checkServingSecretMounted(t, manifests)

	tls := runCertgen(t, ctx, e, manifests, "shadowplane-system")

	// `shadowplane inject` output, with the CA published, is accepted by
	// the API server as is.
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	must(t, os.WriteFile(caFile, tls.Data[certs.KeyCACert], 0o600))
	injected := filepath.Join(t.TempDir(), "injected.yaml")
	out, err := exec.Command(e.shadowplane, "inject", "-f", filepath.Join(root, "deploy/examples/app-without-sidecar.yaml"),
		"--service", "checkout", "--ports", "15001:8080", "--ca-file", caFile).Output()
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
	if spec := deployment.Spec.Template.Spec; len(spec.Containers) != 1 || len(spec.InitContainers) != 2 || spec.InitContainers[1].RestartPolicy == nil {
		t.Errorf("injected Deployment stored with containers %d and init containers %d, want the app, and the bootstrap and native Envoy sidecar", len(spec.Containers), len(spec.InitContainers))
	}
	if cm, err := e.kube.Client.CoreV1().ConfigMaps("default").Get(ctx, certs.CAConfigMapName, metav1.GetOptions{}); err != nil || cm.Data[certs.KeyCACert] != string(tls.Data[certs.KeyCACert]) {
		t.Errorf("CA ConfigMap default/%s from inject --ca-file: %v", certs.CAConfigMapName, err)
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
		{"create", "authentication.k8s.io", "tokenreviews", "", true},
		{"get", "", "pods", "default", true},
		{"get", "", "services", "default", true},
		{"patch", "", "configmaps", "default", true},
		{"get", "", "configmaps", "default", false},
		{"update", "", "configmaps", "default", false},
		{"update", "coordination.k8s.io", "leases/shadowplane", "shadowplane-system", true},
		{"update", "coordination.k8s.io", "leases/other", "shadowplane-system", false},
		{"get", "coordination.k8s.io", "leases/shadowplane", "default", false},
		{"update", "", "events", "default", false},
		{"list", "", "pods", "default", false},
		{"create", "authentication.k8s.io", "subjectaccessreviews", "", false},
		{"get", "", "secrets", "", false},
		{"get", "", "secrets", "default", false},
		{"list", "", "secrets", "default", true},
		{"watch", "", "secrets", "default", true},
		{"update", "", "secrets", "default", false},
	})
	requests.reset()

	// Cluster mode, as the Deployment runs it: no --namespaces.
	if args := deploymentArgs(t, manifests); slices.ContainsFunc(args, func(a string) bool { return strings.HasPrefix(a, "--namespaces") }) {
		t.Fatalf("deploy/shadowplane.yaml is cluster mode but passes %v", args)
	}
	// As deployed, it campaigns for the Lease (short periods, so it renews
	// while the test runs: get, create, then update).
	cp, err := harness.StartControlPlane(ctx, e.kube, harness.ControlPlaneOptions{
		AllowedURLHosts: []string{"10.16.0.147"},
		Logger:          testLogger(t),
		Client:          saClient,
		LeaderElection: &controlplane.LeaderElection{Namespace: "shadowplane-system", Identity: "deploy-test",
			LeaseDuration: 2 * time.Second, RenewDeadline: time.Second, RetryPeriod: 100 * time.Millisecond},
	})
	if err != nil {
		t.Fatalf("control plane as the deployed service account: %v", err)
	}
	defer cp.Stop()
	serveCertgenSecret(t, cp, tls)

	// A sidecar of the example's entrance Service: it verifies certgen's
	// certificate, and the control plane verifies its token, Pod and Service.
	sidecar := startVerifiedSidecar(t, ctx, e, cp, "default", "entrance")
	defer sidecar.Stop()

	// The example policy's staging/entrance target does not exist here: the
	// control plane (as the service account) says so with an Event, and
	// says it again, which patches the Event's count.
	repeatTargetMissing(t, ctx, e.kube.Client, "default", "mirror-policies")

	// The leader writes the example policy's status.
	if err := harness.WaitUntil(ctx, 20*time.Second, func() (bool, error) {
		cm, err := e.kube.Client.CoreV1().ConfigMaps("default").Get(ctx, "mirror-policies", metav1.GetOptions{})
		return err == nil && cm.Annotations[watcher.AnnotationStatus] != "", err
	}); err != nil {
		t.Errorf("no status annotation on the example policy ConfigMap: %v", err)
	}
	checkVerbsUsed(t, requests.all(), append(clusterRoleRules(t, manifests), roleRulesNamed(t, manifests, "shadowplane")...))
	for _, r := range requests.all() {
		if r.resource == "configmaps" && (r.verb == "list" || r.verb == "watch") &&
			r.labelSelector != "shadowplane.io/policy=true" && r.labelSelector != "shadowplane.io/mirror-tls=true" {
			t.Errorf("%s %s without the policy or mirror-tls label selector: every ConfigMap would be fetched", r.verb, r.path)
		}
		if r.resource == "secrets" && r.labelSelector != "shadowplane.io/mirror-tls=true" {
			t.Errorf("%s %s without the mirror-tls label selector: Secrets shadowplane has no use for would be fetched", r.verb, r.path)
		}
	}
}

// runCertgen runs `shadowplane certgen` with the args of the certgen Job in
// manifests, in namespace ns, as the Job's ServiceAccount, through a
// recording proxy: a first run creates both Secrets, a second (the weekly
// CronJob) changes nothing, a third, told to renew early, re-issues the
// serving certificate and keeps the CA. The Role is proven sufficient, and
// minimal: every rule, name by name, was used. It returns the serving
// Secret.
func runCertgen(t *testing.T, ctx context.Context, e *sharedEnv, manifests []runtime.Object, ns string) *corev1.Secret {
	t.Helper()
	job, cron := certgenJobs(t, manifests)
	if !reflect.DeepEqual(job.Spec.Template.Spec, cron.Spec.JobTemplate.Spec.Template.Spec) {
		t.Errorf("the certgen CronJob runs another pod than the certgen Job")
	}
	pod := job.Spec.Template.Spec
	account := "system:serviceaccount:" + ns + ":" + pod.ServiceAccountName
	requests := &requestRecorder{}
	checkAccess(t, ctx, clientAs(t, e, account, requests), []accessCheck{
		{"create", "", "secrets", ns, true},
		{"get", "", "secrets/" + certs.CASecretName, ns, true},
		{"update", "", "secrets/" + certs.ServingSecretName, ns, true},
		{"update", "", "secrets/" + certs.CASecretName, ns, false},
		{"get", "", "secrets/other", ns, false},
		{"list", "", "secrets", ns, false},
		{"delete", "", "secrets/" + certs.ServingSecretName, ns, false},
		{"get", "", "secrets/" + certs.CASecretName, "default", false},
		{"create", "", "configmaps", ns, false},
	})
	requests.reset()

	kubeconfig := recordingKubeconfig(t, e, account, requests)
	certgen := func(extra ...string) string {
		t.Helper()
		cmd := exec.CommandContext(ctx, e.shadowplane, append(append(slices.Clone(pod.Containers[0].Args), "--kubeconfig", kubeconfig), extra...)...)
		cmd.Env = append(os.Environ(), "POD_NAMESPACE="+ns) // as the Job's downward API sets it
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("certgen as %s: %v\n%s", account, err, out)
		}
		return string(out)
	}
	secrets := e.kube.Client.CoreV1().Secrets(ns)
	for i, run := range []struct {
		extra []string
		want  string
	}{
		{nil, "created CA Secret"},
		{nil, "nothing to do"},
		{[]string{"--renew-before", "2400h"}, "issued serving certificate"},
	} {
		var before *corev1.Secret
		if i > 0 {
			before, _ = secrets.Get(ctx, certs.CASecretName, metav1.GetOptions{})
		}
		if out := certgen(run.extra...); !strings.Contains(out, run.want) {
			t.Errorf("certgen run %d %v: %q, want it to say %q", i+1, run.extra, out, run.want)
		}
		if after, _ := secrets.Get(ctx, certs.CASecretName, metav1.GetOptions{}); before != nil && !reflect.DeepEqual(before.Data, after.Data) {
			t.Errorf("certgen run %d changed the CA", i+1)
		}
	}
	checkVerbsUsed(t, requests.all(), roleRulesNamed(t, manifests, pod.ServiceAccountName))

	tls, err := secrets.Get(ctx, certs.ServingSecretName, metav1.GetOptions{})
	must(t, err)
	ca, err := secrets.Get(ctx, certs.CASecretName, metav1.GetOptions{})
	must(t, err)
	if string(tls.Data[certs.KeyCACert]) != string(ca.Data[certs.KeyCACert]) {
		t.Errorf("Secret %s carries another CA than %s", certs.ServingSecretName, certs.CASecretName)
	}
	if _, ok := tls.Data["ca.key"]; ok {
		t.Errorf("the CA key is in Secret %s, which the control plane mounts", certs.ServingSecretName)
	}
	return tls
}

// serveCertgenSecret makes the test control plane serve the certificate of
// certgen's Secret, as the Deployment mounts it, and its sidecars trust
// certgen's CA: the files are swapped the way the kubelet updates mounted
// volumes, and the control plane re-reads them at the next handshake.
func serveCertgenSecret(t *testing.T, cp *harness.ControlPlane, tls *corev1.Secret) {
	t.Helper()
	must(t, certs.WriteFiles(certs.Pair{CertPEM: tls.Data[corev1.TLSCertKey], KeyPEM: tls.Data[corev1.TLSPrivateKeyKey]}, cp.Certs.CertFile, cp.Certs.KeyFile))
	must(t, harness.WriteProjected(cp.Certs.CADir, map[string][]byte{certs.KeyCACert: tls.Data[certs.KeyCACert]}))
}

// startVerifiedSidecar starts a real Envoy sidecar of Service service in ns
// over TLS, with the identity a pod would have (ServiceAccount, Pod, bound
// token), and waits until it has its config: the control plane reviewed its
// token and read its Pod and Service.
func startVerifiedSidecar(t *testing.T, ctx context.Context, e *sharedEnv, cp *harness.ControlPlane, ns, service string) *harness.Sidecar {
	t.Helper()
	listenPort, err := harness.FreePort()
	must(t, err)
	appPort, err := harness.FreePort()
	must(t, err)
	sidecar, err := cp.StartSidecar(ctx, e.kube, harness.SidecarOptions{
		Shadowplane: e.shadowplane, Envoy: e.envoy, Dir: t.TempDir(),
		NodeID: service + "-deploy-0", Namespace: ns, Service: service,
		ListenPort: listenPort, AppPort: appPort,
	})
	if err != nil {
		t.Fatalf("secure sidecar of %s/%s: %v", ns, service, err)
	}
	return sidecar
}

// checkServingSecretMounted: the Deployment mounts certgen's serving Secret
// where its --xds-tls-cert-file and --xds-tls-key-file point.
func checkServingSecretMounted(t *testing.T, manifests []runtime.Object) {
	t.Helper()
	var volume string
	var pod corev1.PodSpec
	for _, obj := range manifests {
		if d, ok := obj.(*appsv1.Deployment); ok {
			pod = d.Spec.Template.Spec
		}
	}
	for _, v := range pod.Volumes {
		if v.Secret != nil && v.Secret.SecretName == certs.ServingSecretName {
			volume = v.Name
		}
	}
	var dir string
	for _, m := range pod.Containers[0].VolumeMounts {
		if m.Name == volume && m.ReadOnly {
			dir = m.MountPath
		}
	}
	if dir == "" {
		t.Fatalf("the Deployment does not mount Secret %s read-only", certs.ServingSecretName)
	}
	for _, want := range []string{"--xds-tls-cert-file=" + dir + "/tls.crt", "--xds-tls-key-file=" + dir + "/tls.key"} {
		if !slices.Contains(pod.Containers[0].Args, want) {
			t.Errorf("the control plane's args %v lack %s", pod.Containers[0].Args, want)
		}
	}
}

func certgenJobs(t *testing.T, manifests []runtime.Object) (*batchv1.Job, *batchv1.CronJob) {
	t.Helper()
	var job *batchv1.Job
	var cron *batchv1.CronJob
	for _, obj := range manifests {
		switch o := obj.(type) {
		case *batchv1.Job:
			job = o
		case *batchv1.CronJob:
			cron = o
		}
	}
	if job == nil || cron == nil {
		t.Fatal("no certgen Job and CronJob in the manifests")
	}
	return job, cron
}

// TestDeployNamespaced applies deploy/namespaced/ and runs the control plane
// with its --namespaces as its ServiceAccount, which holds a Role in each
// watched namespace and, cluster-wide, only TokenReview: it syncs, verifies
// a real sidecar over TLS, posts Events, makes no cluster-scoped request
// but the TokenReview and uses every granted verb; outside its namespaces
// the API server refuses it, and `shadowplane serve` pointed at one more
// namespace reports the refusal (client-go's log, as JSON) and never gets
// ready.
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
	// The Roles, and the one ClusterRole: TokenReview.
	rules := append(roleRules(t, rbac, watched), clusterRoleRules(t, manifests)...)
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
			accessCheck{"get", "", "pods", ns, true},
			accessCheck{"get", "", "services", ns, true},
			accessCheck{"get", "", "secrets", ns, false},
			accessCheck{"list", "", "secrets", ns, true})
	}
	checks = append(checks,
		accessCheck{"list", "", "configmaps", outside, false},
		accessCheck{"list", "", "secrets", outside, false},
		accessCheck{"list", "", "configmaps", "", false},
		accessCheck{"watch", "", "services", "", false},
		accessCheck{"list", "discovery.k8s.io", "endpointslices", "", false},
		accessCheck{"create", "", "events", outside, false},
		accessCheck{"get", "", "pods", outside, false},
		accessCheck{"get", "", "services", outside, false},
		accessCheck{"create", "authentication.k8s.io", "tokenreviews", "", true})
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
	must(t, e.kube.ApplyService(ctx, watched[0], "entrance", harness.ServicePort{Name: "http", Port: 80, TargetPort: 15001}))
	sidecar := startVerifiedSidecar(t, ctx, e, cp, watched[0], "entrance")
	repeatTargetMissing(t, ctx, e.kube.Client, watched[0], "mirror-policies")
	sidecar.Stop()
	must(t, cp.Stop())

	used := requests.all()
	checkVerbsUsed(t, used, rules)
	for _, r := range used {
		if r.namespace == "" && r.resource == "tokenreviews" && r.verb == "create" {
			continue // cluster-scoped by nature; it reads nothing
		}
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
// cluster-mode file (certgen included) with another ClusterRole and binding
// (TokenReview only), plus --namespaces and a NetworkPolicy limited to those
// namespaces.
func TestDeployModesAlike(t *testing.T) {
	root := testtools.RepoRoot()
	cluster := decodeManifests(t, filepath.Join(root, "deploy/shadowplane.yaml"))
	namespaced := decodeManifests(t, filepath.Join(root, "deploy/namespaced/shadowplane.yaml"))
	byKindAndName := func(objects []runtime.Object) map[string]runtime.Object {
		out := map[string]runtime.Object{}
		for _, obj := range objects {
			m, err := meta.Accessor(obj)
			must(t, err)
			out[fmt.Sprintf("%T %s", obj, m.GetName())] = obj
		}
		return out
	}
	c, n := byKindAndName(cluster), byKindAndName(namespaced)
	for kind := range c {
		if _, ok := n[kind]; !ok && !strings.Contains(kind, "ClusterRole") {
			t.Errorf("namespaced mode lacks the %s of cluster mode", kind)
		}
	}
	for kind, obj := range n {
		want, ok := c[kind]
		if !ok {
			if !strings.Contains(kind, "ClusterRole") {
				t.Errorf("namespaced mode has a %s that cluster mode lacks", kind)
			}
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
		// The leader patches the status annotation meanwhile: retry a lost
		// race, as kubectl edit would.
		must(t, retry.RetryOnConflict(retry.DefaultRetry, func() error {
			cm, err := c.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			cm.Data["policies.yaml"] = strings.Replace(cm.Data["policies.yaml"], "namespace: "+from, "namespace: "+to, 1)
			_, err = c.CoreV1().ConfigMaps(ns).Update(ctx, cm, metav1.UpdateOptions{})
			return err
		}))
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

// roleRulesNamed returns the rules of the Role bound to ServiceAccount
// account in manifests.
func roleRulesNamed(t *testing.T, manifests []runtime.Object, account string) []rbacv1.PolicyRule {
	t.Helper()
	var roleName string
	for _, obj := range manifests {
		if b, ok := obj.(*rbacv1.RoleBinding); ok && b.RoleRef.Kind == "Role" &&
			slices.ContainsFunc(b.Subjects, func(s rbacv1.Subject) bool { return s.Kind == "ServiceAccount" && s.Name == account }) {
			roleName = b.RoleRef.Name
		}
	}
	for _, obj := range manifests {
		if r, ok := obj.(*rbacv1.Role); ok && roleName != "" && r.Name == roleName {
			return r.Rules
		}
	}
	t.Fatalf("no Role bound to ServiceAccount %s in the manifests", account)
	return nil
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
		var subjects []rbacv1.Subject
		switch b := obj.(type) {
		case *rbacv1.RoleBinding:
			subjects = b.Subjects
		case *rbacv1.ClusterRoleBinding:
			subjects = b.Subjects
		}
		for i := range subjects {
			if subjects[i].Namespace == from {
				subjects[i].Namespace = to
			}
		}
	}
}

// checkVerbsUsed fails for each verb the rules grant that no request used
// (least privilege), and for each request the rules do not grant. A rule
// with resourceNames grants, and must be used, name by name.
func checkVerbsUsed(t *testing.T, used []apiRequest, rules []rbacv1.PolicyRule) {
	t.Helper()
	granted := map[string]bool{}
	for _, rule := range rules {
		for _, group := range rule.APIGroups {
			for _, resource := range rule.Resources {
				for _, verb := range rule.Verbs {
					key := verbKey(verb, group, resource)
					if len(rule.ResourceNames) == 0 {
						granted[key] = true
					}
					for _, name := range rule.ResourceNames {
						granted[key+"/"+name] = true
					}
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
		switch {
		case granted[key]:
			seen[key] = true
		case r.name != "" && granted[key+"/"+r.name]:
			seen[key+"/"+r.name] = true
		default:
			t.Errorf("a request the RBAC does not grant: %s %s", key, r.path)
		}
	}
	for key := range granted {
		if !seen[key] {
			t.Errorf("RBAC grants %s, which was never used", key)
		}
	}
}

func verbKey(verb, group, resource string) string {
	if group == "" {
		return verb + " " + resource
	}
	return verb + " " + resource + "." + group
}

// accessCheck is one question to the API server's authorizer; resource
// may name one object as resource/name, like `kubectl auth can-i`.
type accessCheck struct {
	verb, group, resource, namespace string
	allowed                          bool
}

// checkAccess asks the API server what the client may do.
func checkAccess(t *testing.T, ctx context.Context, c kubernetes.Interface, checks []accessCheck) {
	t.Helper()
	for _, check := range checks {
		resource, name, _ := strings.Cut(check.resource, "/")
		review, err := c.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
			Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
				Verb: check.verb, Group: check.group, Resource: resource, Name: name, Namespace: check.namespace,
			}},
		}, metav1.CreateOptions{})
		must(t, err)
		if review.Status.Allowed != check.allowed {
			t.Errorf("%s in namespace %q: allowed=%v, want %v", verbKey(check.verb, check.group, check.resource), check.namespace, review.Status.Allowed, check.allowed)
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

// recordingKubeconfig writes a kubeconfig for a command run by the test
// (certgen): it points at a plain-HTTP proxy on 127.0.0.1 that records each
// request and forwards it to the API server impersonating user, so the API
// server authorizes the command as user and the test sees what it asked.
func recordingKubeconfig(t *testing.T, e *sharedEnv, user string, recorder *requestRecorder) string {
	t.Helper()
	cfg := rest.CopyConfig(e.kube.Config)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: user}
	transport, err := rest.TransportFor(cfg)
	must(t, err)
	target, err := url.Parse(cfg.Host)
	must(t, err)
	proxy := httputil.NewSingleHostReverseProxy(target)
	proxy.Transport = recorder.wrap(transport)
	server := httptest.NewServer(proxy)
	t.Cleanup(server.Close)

	kubeconfig := clientcmdapi.NewConfig()
	kubeconfig.Clusters["recorded"] = &clientcmdapi.Cluster{Server: server.URL}
	kubeconfig.AuthInfos["recorded"] = &clientcmdapi.AuthInfo{}
	kubeconfig.Contexts["recorded"] = &clientcmdapi.Context{Cluster: "recorded", AuthInfo: "recorded"}
	kubeconfig.CurrentContext = "recorded"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	must(t, clientcmd.WriteToFile(*kubeconfig, path))
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
	name                             string // of the object, for requests that name one
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
	if named {
		r.name = parts[1]
	}
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
