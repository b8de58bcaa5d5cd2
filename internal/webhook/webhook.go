// Package webhook serves shadowplane's two admission webhooks over HTTPS:
// a mutating one that adds the sidecar to pods whose namespace or pod is
// labelled shadowplane.io/inject=enabled, with the same code as `shadowplane
// inject` (package inject), and a validating one that refuses a policy
// ConfigMap the watcher would find invalid, with the same parser and the same
// field-and-line messages as the watcher and `shadowplane validate`. Both are
// registered with failurePolicy Ignore: a control plane that is away never
// blocks pod creation or a ConfigMap edit (the watcher still keeps the last
// valid policy), and pods created without the sidecar meanwhile are reported
// afterwards (see Missed).
package webhook

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/version"

	"github.com/shadowplane/shadowplane/internal/inject"
	"github.com/shadowplane/shadowplane/nodemeta"
	"github.com/shadowplane/shadowplane/policy"
)

// The labels and annotations the webhooks read.
const (
	// InjectLabel set to "enabled" on a namespace or a pod asks for the
	// sidecar; "disabled" on a pod opts it out of a labelled namespace.
	InjectLabel = "shadowplane.io/inject"
	// ServiceAnnotation and PortsAnnotation on the pod (template) say what
	// `shadowplane inject` takes as --service and --ports.
	ServiceAnnotation = "shadowplane.io/service"
	PortsAnnotation   = "shadowplane.io/ports"
	// PolicyLabel marks the ConfigMaps the validating webhook checks.
	PolicyLabel = "shadowplane.io/policy"
)

// Paths the webhook configurations call.
const (
	InjectPath   = "/inject"
	ValidatePath = "/validate"
)

// maxReviewBytes bounds a request body: an AdmissionReview carries one
// object, at most the API server's 1.5 MiB, twice on an update.
const maxReviewBytes = 4 << 20

// Options configure the webhooks.
type Options struct {
	// Inject is what every injected pod gets (control plane address,
	// images, native sidecar); Service and Ports come from each pod's
	// annotations.
	Inject inject.Options
	// ParseOptions are the watcher's, so one policy gets one verdict.
	ParseOptions policy.ParseOptions
	Logger       hclog.Logger
	Registry     prometheus.Registerer
}

// Server answers AdmissionReviews.
type Server struct {
	o        Options
	log      hclog.Logger
	injects  *prometheus.CounterVec
	validate *prometheus.CounterVec
}

// New builds the server and registers its metrics.
func New(o Options) *Server {
	if o.Logger == nil {
		o.Logger = hclog.NewNullLogger()
	}
	s := &Server{
		o:   o,
		log: o.Logger,
		injects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shadowplane_webhook_inject_total",
			Help: "Pods the injection webhook was asked about, by result: injected, present (had the sidecar), disabled (opted out), skipped (no service/ports annotations), refused (cannot be adopted safely), error.",
		}, []string{"result"}),
		validate: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "shadowplane_webhook_validate_total",
			Help: "Policy ConfigMaps the validating webhook checked, by result: accepted, refused, error.",
		}, []string{"result"}),
	}
	if o.Registry != nil {
		o.Registry.MustRegister(s.injects, s.validate)
	}
	return s
}

// Handler serves InjectPath and ValidatePath.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc(InjectPath, s.serve(s.inject))
	mux.HandleFunc(ValidatePath, s.serve(s.validatePolicies))
	return mux
}

// serve decodes an AdmissionReview, lets review answer it and writes the
// answer back with the request's uid.
func (s *Server) serve(review func(*admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			http.Error(w, "POST an AdmissionReview", http.StatusMethodNotAllowed)
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, maxReviewBytes))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var in admissionv1.AdmissionReview
		if err := json.Unmarshal(body, &in); err != nil || in.Request == nil {
			http.Error(w, fmt.Sprintf("not an AdmissionReview: %v", err), http.StatusBadRequest)
			return
		}
		resp := review(in.Request)
		resp.UID = in.Request.UID
		out := admissionv1.AdmissionReview{TypeMeta: in.TypeMeta, Response: resp}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	}
}

// inject adds the sidecar to a pod being created. It never refuses the pod:
// a pod it cannot inject is admitted as it is, with a warning kubectl shows.
func (s *Server) inject(req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	allow := &admissionv1.AdmissionResponse{Allowed: true}
	var pod corev1.Pod
	if err := json.Unmarshal(req.Object.Raw, &pod); err != nil {
		s.injects.WithLabelValues("error").Inc()
		allow.Warnings = []string{"shadowplane: not injected: " + err.Error()}
		return allow
	}
	name := "Pod/" + pod.Name
	if pod.Name == "" {
		name = "Pod/" + pod.GenerateName + "*"
	}
	if pod.Labels[InjectLabel] == "disabled" {
		s.injects.WithLabelValues("disabled").Inc()
		return allow
	}
	o := s.o.Inject
	o.Service = pod.Annotations[ServiceAnnotation]
	ports, err := nodemeta.ParsePorts(pod.Annotations[PortsAnnotation])
	if o.Service == "" || err != nil {
		s.injects.WithLabelValues("skipped").Inc()
		allow.Warnings = []string{fmt.Sprintf("shadowplane: %s not injected: it needs annotations %s (the Service it sits behind) and %s (listen:app port pairs, e.g. 15001:8080)",
			name, ServiceAnnotation, PortsAnnotation)}
		return allow
	}
	o.Ports = ports
	if err := o.Complete(); err != nil {
		return s.notInjected(allow, name, "refused", err)
	}
	before, err := json.Marshal(pod)
	if err != nil {
		return s.notInjected(allow, name, "error", err)
	}
	change, err := inject.Pod(&pod.ObjectMeta, &pod.Spec, name, o)
	if err != nil {
		return s.notInjected(allow, name, "refused", err)
	}
	if !change.Changed {
		s.injects.WithLabelValues("present").Inc()
		return allow
	}
	patch, err := podPatch(before, pod)
	if err != nil {
		return s.notInjected(allow, name, "error", err)
	}
	patchType := admissionv1.PatchTypeJSONPatch
	allow.Patch, allow.PatchType = patch, &patchType
	s.injects.WithLabelValues("injected").Inc()
	s.log.Debug("injected", "pod", name, "namespace", req.Namespace)
	return allow
}

func (s *Server) notInjected(allow *admissionv1.AdmissionResponse, name, result string, err error) *admissionv1.AdmissionResponse {
	s.injects.WithLabelValues(result).Inc()
	s.log.Info("pod admitted without the sidecar", "pod", name, "reason", err)
	allow.Warnings = []string{fmt.Sprintf("shadowplane: %s not injected: %v", name, err)}
	return allow
}

// podPatch is the JSON patch from the pod as sent to the injected pod: the
// labels and the whole spec replaced (both exist on any pod the API server
// hands a webhook, the spec always and the labels once defaulted to {}).
func podPatch(before []byte, after corev1.Pod) ([]byte, error) {
	var original struct {
		Metadata struct {
			Labels map[string]string `json:"labels"`
		} `json:"metadata"`
	}
	if err := json.Unmarshal(before, &original); err != nil {
		return nil, err
	}
	op := "replace"
	if original.Metadata.Labels == nil {
		op = "add"
	}
	return json.Marshal([]map[string]any{
		{"op": op, "path": "/metadata/labels", "value": after.Labels},
		{"op": "replace", "path": "/spec", "value": after.Spec},
	})
}

// validatePolicies refuses a policy ConfigMap with an invalid policy, with
// every problem's field and line, as the watcher would report them.
func (s *Server) validatePolicies(req *admissionv1.AdmissionRequest) *admissionv1.AdmissionResponse {
	var cm corev1.ConfigMap
	if err := json.Unmarshal(req.Object.Raw, &cm); err != nil {
		s.validate.WithLabelValues("error").Inc()
		// Fail open, as the configuration does: the watcher still judges it.
		return &admissionv1.AdmissionResponse{Allowed: true, Warnings: []string{"shadowplane: not validated: " + err.Error()}}
	}
	if cm.Namespace == "" {
		cm.Namespace = req.Namespace
	}
	problems, warnings := Check(&cm, s.o.ParseOptions)
	if len(problems) == 0 {
		s.validate.WithLabelValues("accepted").Inc()
		return &admissionv1.AdmissionResponse{Allowed: true, Warnings: warnings}
	}
	s.validate.WithLabelValues("refused").Inc()
	return &admissionv1.AdmissionResponse{
		Allowed:  false,
		Warnings: warnings,
		Result: &metav1.Status{
			Status:  metav1.StatusFailure,
			Reason:  metav1.StatusReasonInvalid,
			Code:    http.StatusUnprocessableEntity,
			Message: "shadowplane: invalid policy: " + strings.Join(problems, "; "),
		},
	}
}

// Check runs the watcher's parser over every policy key of a ConfigMap and
// returns its errors and warnings as the watcher words them.
func Check(cm *corev1.ConfigMap, opts policy.ParseOptions) (problems, warnings []string) {
	// Keys in order, so one ConfigMap always gets one message.
	for _, key := range slices.Sorted(maps.Keys(cm.Data)) {
		if !policy.IsPolicyKey(key) {
			continue
		}
		_, errs := policy.ParsePolicies(cm.Namespace, cm.Name, key, []byte(cm.Data[key]), opts)
		for _, e := range errs {
			if e.Warning {
				warnings = append(warnings, e.Error())
			} else {
				problems = append(problems, e.Error())
			}
		}
	}
	return problems, warnings
}

// NativeSidecarsFrom is the first Kubernetes minor version (1.x) that runs
// init containers with restartPolicy Always as sidecars by default (the
// SidecarContainers feature, beta and on since 1.29).
const NativeSidecarsFrom = 29

// SupportsNativeSidecars reads the API server's version: an older cluster
// would reject (or, with the gate off, mishandle) a native sidecar.
func SupportsNativeSidecars(info *version.Info) (bool, error) {
	if info.Major != "1" {
		return info.Major > "1", nil
	}
	// GKE and EKS report minors like "29+".
	minor, err := strconv.Atoi(strings.TrimSuffix(info.Minor, "+"))
	if err != nil {
		return false, fmt.Errorf("API server minor version %q: %w", info.Minor, err)
	}
	return minor >= NativeSidecarsFrom, nil
}
