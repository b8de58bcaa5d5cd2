package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	admissionv1 "k8s.io/api/admission/v1"
	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/shadowplane/shadowplane/internal/inject"
	"github.com/shadowplane/shadowplane/nodemeta"
	"github.com/shadowplane/shadowplane/policy"
)

func testServer() *Server {
	return New(Options{
		Inject: inject.Options{XDSAddress: "shadowplane.shadowplane-system.svc:18000", ShadowplaneImage: "sp:test",
			EnvoyImage: "envoy:test", NativeSidecar: true, DrainToken: "WEBHOOKTESTTOKEN0123456789"},
		Registry: prometheus.NewRegistry(),
	})
}

// review posts an AdmissionReview for obj to path and returns the response.
func review(t *testing.T, s *Server, path string, obj any) *admissionv1.AdmissionResponse {
	t.Helper()
	raw, err := json.Marshal(obj)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(admissionv1.AdmissionReview{
		TypeMeta: metav1.TypeMeta{APIVersion: "admission.k8s.io/v1", Kind: "AdmissionReview"},
		Request:  &admissionv1.AdmissionRequest{UID: types.UID("req-1"), Namespace: "shop", Object: runtime.RawExtension{Raw: raw}},
	})
	rec := httptest.NewRecorder()
	s.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body)))
	if rec.Code != http.StatusOK {
		t.Fatalf("%s: HTTP %d: %s", path, rec.Code, rec.Body.String())
	}
	var out admissionv1.AdmissionReview
	if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil || out.Response == nil {
		t.Fatalf("answer: %v: %s", err, rec.Body.String())
	}
	if out.Response.UID != "req-1" || out.APIVersion != "admission.k8s.io/v1" {
		t.Errorf("answer uid %q, apiVersion %q: want the request's", out.Response.UID, out.APIVersion)
	}
	return out.Response
}

func pod(edit func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{GenerateName: "checkout-", Namespace: "shop", Labels: map[string]string{"app": "checkout"},
			Annotations: map[string]string{ServiceAnnotation: "checkout", PortsAnnotation: "15001:8080"}},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "app", Image: "checkout:1",
			Ports: []corev1.ContainerPort{{Name: "http", ContainerPort: 8080}}}}},
	}
	if edit != nil {
		edit(p)
	}
	return p
}

// TestInjectReview: the patch gives the pod exactly what inject.Pod gives
// it; every pod it cannot inject is admitted as it is, with a warning.
func TestInjectReview(t *testing.T) {
	s := testServer()
	resp := review(t, s, InjectPath, pod(nil))
	if !resp.Allowed || resp.PatchType == nil || *resp.PatchType != admissionv1.PatchTypeJSONPatch {
		t.Fatalf("response = %+v, want allowed with a JSON patch", resp)
	}
	var ops []struct {
		Op    string          `json:"op"`
		Path  string          `json:"path"`
		Value json.RawMessage `json:"value"`
	}
	if err := json.Unmarshal(resp.Patch, &ops); err != nil || len(ops) != 2 {
		t.Fatalf("patch %s: %v", resp.Patch, err)
	}
	want := pod(nil)
	o := s.o.Inject
	o.Service, o.Ports = "checkout", []nodemeta.PortPair{{Listen: 15001, App: 8080}}
	if err := o.Complete(); err != nil {
		t.Fatal(err)
	}
	if _, err := inject.Pod(&want.ObjectMeta, &want.Spec, "Pod/checkout-*", o); err == nil {
		var spec corev1.PodSpec
		var labels map[string]string
		_ = json.Unmarshal(ops[1].Value, &spec)
		_ = json.Unmarshal(ops[0].Value, &labels)
		got, _ := json.Marshal(spec)
		wantSpec, _ := json.Marshal(want.Spec)
		if ops[1].Path != "/spec" || !bytes.Equal(got, wantSpec) {
			t.Errorf("patched spec\n%s\nwant inject.Pod's\n%s", got, wantSpec)
		}
		if ops[0].Path != "/metadata/labels" || labels[inject.SidecarLabel] != "true" || labels["app"] != "checkout" {
			t.Errorf("patched labels %v", labels)
		}
	} else {
		t.Fatal(err)
	}

	tests := []struct {
		name, warning, result string
		edit                  func(*corev1.Pod)
	}{
		{"opted out", "", "disabled", func(p *corev1.Pod) { p.Labels[InjectLabel] = "disabled" }},
		{"no annotations", "needs annotations", "skipped", func(p *corev1.Pod) { p.Annotations = nil }},
		{"bad ports", "needs annotations", "skipped", func(p *corev1.Pod) { p.Annotations[PortsAnnotation] = "15001" }},
		{"hostNetwork", "uses hostNetwork", "refused", func(p *corev1.Pod) { p.Spec.HostNetwork = true }},
		{"port taken", "already uses port 15001", "refused", func(p *corev1.Pod) { p.Spec.Containers[0].Ports[0].ContainerPort = 15001 }},
		{"injected already", "", "present", func(p *corev1.Pod) {
			_, _ = inject.Pod(&p.ObjectMeta, &p.Spec, "pod", s.o.Inject)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := value(s.injects.WithLabelValues(tt.result))
			resp := review(t, s, InjectPath, pod(tt.edit))
			if !resp.Allowed || resp.Patch != nil {
				t.Errorf("response = %+v, want admitted unchanged", resp)
			}
			if got := strings.Join(resp.Warnings, "\n"); (tt.warning == "") != (got == "") || !strings.Contains(got, tt.warning) {
				t.Errorf("warnings %q, want %q", got, tt.warning)
			}
			if got := value(s.injects.WithLabelValues(tt.result)) - before; got != 1 {
				t.Errorf("shadowplane_webhook_inject_total{result=%q} grew by %v, want 1", tt.result, got)
			}
		})
	}
}

// TestValidateReview: an invalid policy is refused with the parser's own
// message (field and line), a valid one admitted, other keys ignored.
func TestValidateReview(t *testing.T) {
	s := testServer()
	const bad = "policies:\n- name: broken\n  service: checkout\n  mirrors:\n  - service: staging\n    precent: 10\n"
	cm := func(data map[string]string) *corev1.ConfigMap {
		return &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "mirrors", Labels: map[string]string{PolicyLabel: "true"}}, Data: data}
	}
	_, errs := policy.ParsePolicies("shop", "mirrors", "a.yaml", []byte(bad), policy.ParseOptions{})
	if len(errs) == 0 {
		t.Fatal("the parser accepts the bad policy")
	}
	resp := review(t, s, ValidatePath, cm(map[string]string{"a.yaml": bad}))
	if resp.Allowed || resp.Result == nil || resp.Result.Code != http.StatusUnprocessableEntity ||
		!strings.Contains(resp.Result.Message, errs[0].Error()) || !strings.Contains(resp.Result.Message, "line 6") {
		t.Errorf("response = %+v, want refused with %q", resp, errs[0].Error())
	}
	const good = "policies:\n- name: fine\n  service: checkout\n  mirrors:\n  - {service: staging, percent: 10}\n"
	for name, data := range map[string]map[string]string{
		"valid":            {"a.yaml": good},
		"not a policy key": {"README": "precent: 10"},
	} {
		if resp := review(t, s, ValidatePath, cm(data)); !resp.Allowed {
			t.Errorf("%s: refused: %+v", name, resp.Result)
		}
	}
	if got := value(s.validate.WithLabelValues("refused")); got != 1 {
		t.Errorf("refused count = %v, want 1", got)
	}
}

func TestNotAReview(t *testing.T) {
	s := testServer()
	for _, tc := range []struct {
		method, body string
		want         int
	}{
		{http.MethodGet, "", http.StatusMethodNotAllowed},
		{http.MethodPost, "{", http.StatusBadRequest},
		{http.MethodPost, "{}", http.StatusBadRequest},
	} {
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, httptest.NewRequest(tc.method, InjectPath, strings.NewReader(tc.body)))
		if rec.Code != tc.want {
			t.Errorf("%s %q: HTTP %d, want %d", tc.method, tc.body, rec.Code, tc.want)
		}
	}
}

// TestKeepCABundle: every webhook of both configurations gets the CA; a
// second pass changes nothing; a missing configuration is no error.
func TestKeepCABundle(t *testing.T) {
	ca := []byte("-----BEGIN CERTIFICATE-----\nca\n-----END CERTIFICATE-----\n")
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(caFile, ca, 0o600); err != nil {
		t.Fatal(err)
	}
	client := fake.NewClientset(&admissionregistrationv1.MutatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "shadowplane"},
		Webhooks:   []admissionregistrationv1.MutatingWebhook{{Name: "a"}, {Name: "b"}},
	})
	ctx := context.Background()
	if err := syncCABundle(ctx, client, "shadowplane", caFile); err != nil {
		t.Fatal(err)
	}
	m, _ := client.AdmissionregistrationV1().MutatingWebhookConfigurations().Get(ctx, "shadowplane", metav1.GetOptions{})
	for _, w := range m.Webhooks {
		if !bytes.Equal(w.ClientConfig.CABundle, ca) {
			t.Errorf("webhook %s caBundle = %q", w.Name, w.ClientConfig.CABundle)
		}
	}
	writes := len(client.Actions())
	if err := syncCABundle(ctx, client, "shadowplane", caFile); err != nil {
		t.Fatal(err)
	}
	for _, a := range client.Actions()[writes:] {
		if a.GetVerb() != "get" {
			t.Errorf("second pass made a %s", a.GetVerb())
		}
	}
}

// TestMissed: a pod that asks for the sidecar and runs without it gets one
// Event from the leader, however often it is seen; opted-out, injected and
// finished pods none.
func TestMissed(t *testing.T) {
	asks := func(name string, edit func(*corev1.Pod)) *corev1.Pod {
		p := pod(edit)
		p.Name, p.UID = name, types.UID(name)
		return p
	}
	client := fake.NewClientset(
		asks("missed", nil),
		asks("opted-out", func(p *corev1.Pod) { p.Labels[InjectLabel] = "disabled" }),
		asks("not-asking", func(p *corev1.Pod) { p.Annotations = nil }),
		asks("done", func(p *corev1.Pod) { p.Status.Phase = corev1.PodSucceeded }),
		asks("injected", func(p *corev1.Pod) { _, _ = inject.Pod(&p.ObjectMeta, &p.Spec, "pod", testServer().o.Inject) }),
	)
	leader := false
	m := NewMissed(client, nil, func() bool { return leader }, 0, hclog.NewNullLogger(), prometheus.NewRegistry())
	ctx := context.Background()
	if err := m.check(ctx); err != nil {
		t.Fatal(err)
	}
	if events, _ := client.CoreV1().Events("shop").List(ctx, metav1.ListOptions{}); len(events.Items) != 0 {
		t.Errorf("a follower reported %d pods; only the leader reports", len(events.Items))
	}
	leader = true
	for range 2 {
		if err := m.check(ctx); err != nil {
			t.Fatal(err)
		}
	}
	events, _ := client.CoreV1().Events("shop").List(ctx, metav1.ListOptions{})
	if len(events.Items) != 1 || events.Items[0].InvolvedObject.Name != "missed" || events.Items[0].Reason != ReasonNotInjected {
		t.Errorf("events = %+v, want one %s on pod missed", events.Items, ReasonNotInjected)
	}
	if got := value(m.gauge); got != 1 {
		t.Errorf("missed pods gauge = %v, want 1", got)
	}
}

// value reads a counter or gauge.
func value(m prometheus.Metric) float64 {
	var out dto.Metric
	if err := m.Write(&out); err != nil {
		return -1
	}
	if out.Counter != nil {
		return out.Counter.GetValue()
	}
	return out.Gauge.GetValue()
}

func TestSupportsNativeSidecars(t *testing.T) {
	for _, tc := range []struct {
		major, minor string
		want         bool
		err          bool
	}{
		{"1", "34", true, false},
		{"1", "29", true, false},
		{"1", "29+", true, false},
		{"1", "28", false, false},
		{"1", "x", false, true},
		{"2", "0", true, false},
	} {
		got, err := SupportsNativeSidecars(&version.Info{Major: tc.major, Minor: tc.minor})
		if got != tc.want || (err != nil) != tc.err {
			t.Errorf("%s.%s: %v, %v; want %v, error %v", tc.major, tc.minor, got, err, tc.want, tc.err)
		}
	}
}
