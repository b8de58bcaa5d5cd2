package integration

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/shadowplane/shadowplane/integration/harness"
	"github.com/shadowplane/shadowplane/internal/certs"
	"github.com/shadowplane/shadowplane/internal/controlplane"
	"github.com/shadowplane/shadowplane/internal/inject"
	"github.com/shadowplane/shadowplane/internal/testtools"
	"github.com/shadowplane/shadowplane/internal/webhook"
	"github.com/shadowplane/shadowplane/policy"
)

// webhookPod is a pod that asks for the sidecar by annotation.
const webhookPod = `apiVersion: v1
kind: Pod
metadata:
  name: checkout-1
  namespace: NS
  labels: {app: checkout}
  annotations: {shadowplane.io/service: checkout, shadowplane.io/ports: "15001:8080"}
spec:
  serviceAccountName: checkout
  containers:
  - name: app
    image: checkout:1
    ports: [{name: http, containerPort: 8080}]
    readinessProbe: {httpGet: {path: /healthz, port: http}}
`

// invalidPolicy names an unknown field on line 6 of its key.
const invalidPolicy = `policies:
- name: broken
  service: checkout
  mirrors:
  - service: checkout-staging
    precent: 10
`

const validPolicy = `policies:
- name: fine
  service: checkout
  mirrors:
  - {service: checkout-staging, percent: 10}
`

// TestAdmissionWebhooks registers the mutating and validating webhooks with
// the real kube-apiserver, which calls them over HTTPS with the caBundle
// serve keeps in the configurations: a pod of a labelled namespace is
// injected exactly as `shadowplane inject` injects it; an invalid policy
// ConfigMap is refused with the field and line the watcher names, a valid
// one accepted; with the control plane away, both fail open.
func TestAdmissionWebhooks(t *testing.T) {
	e := env(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	client := e.kube.Client
	ns := newNamespace(t, ctx)
	plainNS := newNamespace(t, ctx)
	labelled, err := client.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	labelled.Labels[webhook.InjectLabel] = "enabled"
	if _, err := client.CoreV1().Namespaces().Update(ctx, labelled, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	// A serving certificate for 127.0.0.1 from internal/certs, as certgen
	// issues one for the Service's DNS names.
	dir := t.TempDir()
	ca, err := certs.NewAuthority("shadowplane-webhook-test", time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	serving, err := ca.Issue(nil, []net.IP{net.ParseIP("127.0.0.1")}, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile, caFile := filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key"), filepath.Join(dir, "ca.crt")
	if err := certs.WriteFiles(serving, certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(caFile, ca.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	port, err := harness.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	address := net.JoinHostPort("127.0.0.1", strconv.Itoa(int(port)))
	configName := "shadowplane-" + ns
	registerWebhooks(t, ctx, e.kube, configName, "https://"+address, ns)

	injectOptions := inject.Options{XDSAddress: "shadowplane.shadowplane-system.svc:18000",
		ShadowplaneImage: "ghcr.io/shadowplane/shadowplane:v0.1.0", EnvoyImage: "envoyproxy/envoy:v1.40.0", NativeSidecar: true}
	cp, err := harness.StartControlPlane(ctx, e.kube, harness.ControlPlaneOptions{
		Namespaces: []string{ns}, Logger: testLogger(t),
		Webhook: controlplane.WebhookConfig{Address: address, CertFile: certFile, KeyFile: keyFile,
			ConfigurationName: configName, CAFile: caFile, Inject: injectOptions},
	})
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = cp.Stop()
		}
	}()

	// serve writes the CA into both configurations; then the API server
	// calls the webhooks (its configuration cache lags a little).
	err = harness.WaitUntil(ctx, 30*time.Second, func() (bool, error) {
		m, err := client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, configName, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		v, err := client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, configName, metav1.GetOptions{})
		return err == nil && string(m.Webhooks[0].ClientConfig.CABundle) == string(ca.CertPEM) &&
			string(v.Webhooks[0].ClientConfig.CABundle) == string(ca.CertPEM), err
	})
	if err != nil {
		t.Fatalf("serve did not write the caBundle: %v", err)
	}

	podYAML := strings.ReplaceAll(webhookPod, "NS", ns)
	var injected *corev1.Pod
	err = harness.WaitUntil(ctx, 30*time.Second, func() (bool, error) {
		pod := decodePod(t, podYAML)
		pod.Name = ""
		pod.GenerateName = "checkout-"
		created, err := client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
		if err != nil {
			return false, err
		}
		if created.Labels[inject.SidecarLabel] == "true" {
			injected = created
			return true, nil
		}
		return false, client.CoreV1().Pods(ns).Delete(ctx, created.Name, metav1.DeleteOptions{})
	})
	if err != nil {
		t.Fatalf("no pod of labelled namespace %s was injected: %v", ns, err)
	}

	// The same pod through `shadowplane inject`, created with a server-side
	// dry run in a namespace without the label, so the API server defaults
	// both alike.
	cliOutput := shadowplaneCLI(t, strings.ReplaceAll(webhookPod, "NS", plainNS), "inject", "-f", "-", "--service", "checkout", "--ports", "15001:8080",
		"--xds-address", injectOptions.XDSAddress, "--image", injectOptions.ShadowplaneImage, "--envoy-image", injectOptions.EnvoyImage)
	cliPod := decodePod(t, cliOutput)
	cliPod.Name, cliPod.GenerateName = "", "checkout-"
	viaCLI, err := client.CoreV1().Pods(plainNS).Create(ctx, cliPod, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(injected.Labels, viaCLI.Labels) {
		t.Errorf("labels: webhook %v, CLI %v", injected.Labels, viaCLI.Labels)
	}
	for _, part := range []struct {
		name           string
		webhook, byCLI any
	}{
		{"initContainers", withoutDrainToken(injected.Spec.InitContainers), withoutDrainToken(viaCLI.Spec.InitContainers)},
		{"containers", withoutDrainToken(injected.Spec.Containers), withoutDrainToken(viaCLI.Spec.Containers)},
		{"volumes", withoutAPIVolumes(injected.Spec.Volumes), withoutAPIVolumes(viaCLI.Spec.Volumes)},
	} {
		if !reflect.DeepEqual(part.webhook, part.byCLI) {
			t.Errorf("%s differ:\nwebhook: %+v\nCLI:     %+v", part.name, part.webhook, part.byCLI)
		}
	}
	if len(injected.Spec.InitContainers) != 2 || injected.Spec.InitContainers[1].Name != inject.EnvoyContainer {
		t.Errorf("webhook pod init containers = %+v, want the bootstrap and the native Envoy sidecar", injected.Spec.InitContainers)
	}

	// Opted out, and without the annotations: admitted as they are.
	for name, edit := range map[string]func(*corev1.Pod){
		"opted-out":   func(p *corev1.Pod) { p.Labels[webhook.InjectLabel] = "disabled" },
		"unannotated": func(p *corev1.Pod) { p.Annotations = nil },
	} {
		pod := decodePod(t, podYAML)
		pod.Name = name
		edit(pod)
		created, err := client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
		if err != nil {
			t.Fatalf("%s pod: %v", name, err)
		}
		if len(created.Spec.InitContainers) != 0 {
			t.Errorf("%s pod was injected", name)
		}
	}
	metrics := getText(t, ctx, cp.HTTPURL()+"/metrics")
	// The opted-out pod never reaches the webhook (objectSelector).
	for _, want := range []string{`shadowplane_webhook_inject_total{result="injected"}`, `shadowplane_webhook_inject_total{result="skipped"} 1`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}

	// Validation: the same message as `shadowplane validate`, field and line.
	policies := client.CoreV1().ConfigMaps(ns)
	bad := policyConfigMap(ns, "broken-policy", invalidPolicy)
	_, err = policies.Create(ctx, bad, metav1.CreateOptions{})
	if err == nil {
		t.Fatal("an invalid policy ConfigMap was accepted")
	}
	want := watcherMessage(t, bad)
	if !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "line 6") {
		t.Errorf("refusal = %q, want it to carry %q (field and line)", err.Error(), want)
	}
	good := policyConfigMap(ns, "fine-policy", validPolicy)
	if _, err := policies.Create(ctx, good, metav1.CreateOptions{}); err != nil {
		t.Fatalf("a valid policy ConfigMap was refused: %v", err)
	}
	good.Data["mirror.yaml"] = invalidPolicy
	if _, err := policies.Update(ctx, good, metav1.UpdateOptions{}); err == nil || !strings.Contains(err.Error(), "precent") {
		t.Errorf("an invalid edit of a policy ConfigMap: %v, want it refused", err)
	}

	// The control plane away: both webhooks fail open.
	if err := cp.Stop(); err != nil {
		t.Fatal(err)
	}
	stopped = true
	pod := decodePod(t, podYAML)
	pod.Name = "while-away"
	created, err := client.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("pod creation with the webhook away: %v (failurePolicy Ignore must admit it)", err)
	}
	if len(created.Spec.InitContainers) != 0 {
		t.Errorf("pod created while the webhook was away has init containers")
	}
	if _, err := policies.Create(ctx, policyConfigMap(ns, "while-away", invalidPolicy), metav1.CreateOptions{}); err != nil {
		t.Errorf("policy ConfigMap with the webhook away: %v (it fails open; the watcher keeps the last valid version)", err)
	}

	// Back, as the chart's ServiceAccount with exactly the chart's
	// ClusterRole: the pod created meanwhile gets a Warning Event and is
	// counted, the caBundle (emptied here) is written again, and the
	// webhook's part of the ClusterRole is all used and enough.
	account := applyChartRBAC(t, ctx, e, ns)
	for _, emptyCABundle := range []func() error{
		func() error {
			m, err := client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, configName, metav1.GetOptions{})
			if err == nil {
				m.Webhooks[0].ClientConfig.CABundle = nil
				_, err = client.AdmissionregistrationV1().MutatingWebhookConfigurations().Update(ctx, m, metav1.UpdateOptions{})
			}
			return err
		},
		func() error {
			v, err := client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Get(ctx, configName, metav1.GetOptions{})
			if err == nil {
				v.Webhooks[0].ClientConfig.CABundle = nil
				_, err = client.AdmissionregistrationV1().ValidatingWebhookConfigurations().Update(ctx, v, metav1.UpdateOptions{})
			}
			return err
		},
	} {
		if err := emptyCABundle(); err != nil {
			t.Fatal(err)
		}
	}
	recorder := &requestRecorder{}
	back, err := harness.StartControlPlane(ctx, e.kube, harness.ControlPlaneOptions{
		Namespaces: []string{ns}, Logger: testLogger(t), Client: clientAs(t, e, account, recorder),
		Webhook: controlplane.WebhookConfig{Address: address, CertFile: certFile, KeyFile: keyFile,
			ConfigurationName: configName, CAFile: caFile, Inject: injectOptions},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = back.Stop() }()
	err = harness.WaitUntil(ctx, 30*time.Second, func() (bool, error) {
		events, err := client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=while-away"})
		if err != nil {
			return false, err
		}
		for _, ev := range events.Items {
			if ev.Reason == webhook.ReasonNotInjected && ev.Type == corev1.EventTypeWarning {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		t.Errorf("no %s Event on the pod created while the webhook was away: %v", webhook.ReasonNotInjected, err)
	}
	if metrics := getText(t, ctx, back.HTTPURL()+"/metrics"); !strings.Contains(metrics, "shadowplane_webhook_missed_pods 1") {
		t.Errorf("shadowplane_webhook_missed_pods is not 1")
	}
	err = harness.WaitUntil(ctx, 30*time.Second, func() (bool, error) {
		m, err := client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, configName, metav1.GetOptions{})
		return err == nil && len(m.Webhooks[0].ClientConfig.CABundle) > 0, err
	})
	if err != nil {
		t.Errorf("the caBundle was not written again: %v", err)
	}
	if err := back.Stop(); err != nil {
		t.Fatal(err)
	}
	var webhookRequests []apiRequest
	for _, r := range recorder.all() {
		if r.group == "admissionregistration.k8s.io" || (r.resource == "pods" && r.verb == "list") {
			webhookRequests = append(webhookRequests, r)
		}
	}
	var webhookRules []rbacv1.PolicyRule
	for _, rule := range chartClusterRole(t, ns).Rules {
		if slices.Contains(rule.APIGroups, "admissionregistration.k8s.io") || (slices.Contains(rule.Resources, "pods") && slices.Contains(rule.Verbs, "list")) {
			webhookRules = append(webhookRules, rule)
		}
	}
	if len(webhookRules) != 2 {
		t.Errorf("the chart's ClusterRole has %d webhook rules, want 2 (configurations, pods)", len(webhookRules))
	}
	checkVerbsUsed(t, webhookRequests, webhookRules)
}

// chartRBAC renders the chart's ServiceAccount, ClusterRole and
// ClusterRoleBinding for a release in namespace.
func chartRBAC(t *testing.T, namespace string) []runtime.Object {
	t.Helper()
	helm := testtools.Require(t, "helm")
	out := runTool(t, helm, "template", "shadowplane", filepath.Join(testtools.RepoRoot(), "deploy/helm/shadowplane"),
		"--namespace", namespace, "--show-only", "templates/rbac.yaml")
	path := filepath.Join(t.TempDir(), "rbac.yaml")
	must(t, os.WriteFile(path, []byte(out), 0o600))
	return decodeManifests(t, path)
}

func chartClusterRole(t *testing.T, namespace string) *rbacv1.ClusterRole {
	t.Helper()
	for _, obj := range chartRBAC(t, namespace) {
		if role, ok := obj.(*rbacv1.ClusterRole); ok {
			return role
		}
	}
	t.Fatal("the chart renders no ClusterRole")
	return nil
}

// applyChartRBAC creates the chart's RBAC for a release in namespace and
// returns the control plane's user name; the cluster-scoped objects go when
// the test ends.
func applyChartRBAC(t *testing.T, ctx context.Context, e *sharedEnv, namespace string) string {
	t.Helper()
	for _, obj := range chartRBAC(t, namespace) {
		if err := createObject(ctx, e.kube.Client, obj); err != nil {
			t.Fatalf("chart RBAC: %T: %v", obj, err)
		}
		switch o := obj.(type) {
		case *rbacv1.ClusterRole:
			t.Cleanup(func() {
				_ = e.kube.Client.RbacV1().ClusterRoles().Delete(context.Background(), o.Name, metav1.DeleteOptions{})
			})
		case *rbacv1.ClusterRoleBinding:
			t.Cleanup(func() {
				_ = e.kube.Client.RbacV1().ClusterRoleBindings().Delete(context.Background(), o.Name, metav1.DeleteOptions{})
			})
		}
	}
	return "system:serviceaccount:" + namespace + ":shadowplane"
}

// registerWebhooks creates the two webhook configurations as deploy/ does,
// but calling url and, for the validating one, scoped to namespace so that
// other tests' deliberately invalid policies are not refused. Both go when
// the test ends.
func registerWebhooks(t *testing.T, ctx context.Context, kube *harness.Kube, name, url, namespace string) {
	t.Helper()
	ignore := admissionregistrationv1.Ignore
	none := admissionregistrationv1.SideEffectClassNone
	timeout := int32(5)
	injectURL, validateURL := url+webhook.InjectPath, url+webhook.ValidatePath
	enabled := &metav1.LabelSelector{MatchLabels: map[string]string{webhook.InjectLabel: "enabled"}}
	notDisabled := &metav1.LabelSelector{MatchExpressions: []metav1.LabelSelectorRequirement{{Key: webhook.InjectLabel, Operator: metav1.LabelSelectorOpNotIn, Values: []string{"disabled"}}}}
	podRule := []admissionregistrationv1.RuleWithOperations{{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
		Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"pods"}}}}
	mutating := &admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Webhooks: []admissionregistrationv1.MutatingWebhook{
			{Name: "namespace.inject.shadowplane.io", ClientConfig: admissionregistrationv1.WebhookClientConfig{URL: &injectURL},
				Rules: podRule, NamespaceSelector: enabled, ObjectSelector: notDisabled, FailurePolicy: &ignore, SideEffects: &none,
				TimeoutSeconds: &timeout, AdmissionReviewVersions: []string{"v1"}},
			{Name: "pod.inject.shadowplane.io", ClientConfig: admissionregistrationv1.WebhookClientConfig{URL: &injectURL},
				Rules: podRule, ObjectSelector: enabled, FailurePolicy: &ignore, SideEffects: &none,
				TimeoutSeconds: &timeout, AdmissionReviewVersions: []string{"v1"}},
		},
	}
	validating := &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name: "policy.validate.shadowplane.io", ClientConfig: admissionregistrationv1.WebhookClientConfig{URL: &validateURL},
			Rules: []admissionregistrationv1.RuleWithOperations{{Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
				Rule: admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"configmaps"}}}},
			ObjectSelector:    &metav1.LabelSelector{MatchLabels: map[string]string{webhook.PolicyLabel: "true"}},
			NamespaceSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"kubernetes.io/metadata.name": namespace}},
			FailurePolicy:     &ignore, SideEffects: &none, TimeoutSeconds: &timeout, AdmissionReviewVersions: []string{"v1"},
		}},
	}
	registrations := kube.Client.AdmissionregistrationV1()
	if _, err := registrations.MutatingWebhookConfigurations().Create(ctx, mutating, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = registrations.MutatingWebhookConfigurations().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
	if _, err := registrations.ValidatingWebhookConfigurations().Create(ctx, validating, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = registrations.ValidatingWebhookConfigurations().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
}

func decodePod(t *testing.T, text string) *corev1.Pod {
	t.Helper()
	for _, doc := range strings.Split(text, "\n---\n") {
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode([]byte(doc), nil, nil)
		if err != nil {
			t.Fatalf("decode: %v\n%s", err, doc)
		}
		if pod, ok := obj.(*corev1.Pod); ok {
			return pod
		}
	}
	t.Fatalf("no Pod in:\n%s", text)
	return nil
}

// withoutAPIVolumes leaves out the ServiceAccount token volume the API
// server adds under a generated name.
func withoutAPIVolumes(volumes []corev1.Volume) []corev1.Volume {
	var out []corev1.Volume
	for _, v := range volumes {
		if !strings.HasPrefix(v.Name, "kube-api-access-") {
			out = append(out, v)
		}
	}
	return out
}

func policyConfigMap(namespace, name, policies string) *corev1.ConfigMap {
	return &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: namespace, Labels: map[string]string{webhook.PolicyLabel: "true"}},
		Data:       map[string]string{"mirror.yaml": policies},
	}
}

// watcherMessage is what the watcher (policy.ParsePolicies, as for its
// Events) says of the ConfigMap's first problem.
func watcherMessage(t *testing.T, cm *corev1.ConfigMap) string {
	t.Helper()
	for key, data := range cm.Data {
		_, errs := policy.ParsePolicies(cm.Namespace, cm.Name, key, []byte(data), policy.ParseOptions{})
		if len(errs) > 0 {
			return errs[0].Error()
		}
	}
	t.Fatalf("the parser finds no problem in %v", cm.Data)
	return ""
}

func getText(t *testing.T, ctx context.Context, url string) string {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(body)
}

// withoutDrainToken copies containers with the sidecar's drain token (the
// bootstrap's --drain-token and the preStop header), which each injection
// draws at random, blanked (inject.TestDrainTokenIsRandomAndMatches checks
// that the two agree).
func withoutDrainToken(containers []corev1.Container) []corev1.Container {
	out := make([]corev1.Container, len(containers))
	for i, c := range containers {
		c = *c.DeepCopy()
		for j, arg := range c.Args {
			if strings.HasPrefix(arg, "--drain-token=") {
				c.Args[j] = "--drain-token=(random)"
			}
		}
		if c.Lifecycle != nil && c.Lifecycle.PreStop != nil && c.Lifecycle.PreStop.HTTPGet != nil {
			for j := range c.Lifecycle.PreStop.HTTPGet.HTTPHeaders {
				c.Lifecycle.PreStop.HTTPGet.HTTPHeaders[j].Value = "(random)"
			}
		}
		out[i] = c
	}
	return out
}
