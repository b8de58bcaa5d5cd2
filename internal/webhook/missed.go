package webhook

import (
	"context"
	"fmt"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/prometheus/client_golang/prometheus"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"

	"github.com/shadowplane/shadowplane/internal/inject"
)

// ReasonNotInjected is the reason of the Event on a pod that asked for the
// sidecar and runs without it.
const ReasonNotInjected = "SidecarNotInjected"

// DefaultMissedInterval is how often Missed looks for such pods.
const DefaultMissedInterval = 2 * time.Minute

// Missed reports the pods the injection webhook missed: pods that ask for
// the sidecar (annotation shadowplane.io/service) but run without it, because
// they were created while the control plane was away (the webhook fails
// open) or it admitted them uninjected. Each gets one Warning Event, and
// shadowplane_webhook_missed_pods counts them, so a fail-open is seen. Only
// the leader replica looks, so each pod gets one Event however many serve.
type Missed struct {
	client     kubernetes.Interface
	leading    func() bool
	namespaces []string // nil: all
	interval   time.Duration
	log        hclog.Logger
	gauge      prometheus.Gauge
	reported   map[types.UID]bool
}

// NewMissed builds the reporter and registers its gauge.
func NewMissed(client kubernetes.Interface, namespaces []string, leading func() bool, interval time.Duration, log hclog.Logger, registry prometheus.Registerer) *Missed {
	if interval <= 0 {
		interval = DefaultMissedInterval
	}
	m := &Missed{client: client, leading: leading, namespaces: namespaces, interval: interval, log: log, reported: map[types.UID]bool{},
		gauge: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "shadowplane_webhook_missed_pods",
			Help: "Pods that ask for the sidecar (annotation shadowplane.io/service) but run without it: created while the injection webhook was unreachable (it fails open), or admitted uninjected.",
		})}
	if registry != nil {
		registry.MustRegister(m.gauge)
	}
	return m
}

// Run checks now and every interval until ctx ends.
func (m *Missed) Run(ctx context.Context) error {
	for {
		if err := m.check(ctx); err != nil && ctx.Err() == nil {
			m.log.Warn("looking for pods without the sidecar", "error", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(m.interval):
		}
	}
}

func (m *Missed) check(ctx context.Context) error {
	if !m.leading() {
		// A new leader reports afresh; its own gauge says how many.
		m.reported = map[types.UID]bool{}
		m.gauge.Set(0)
		return nil
	}
	namespaces := m.namespaces
	if len(namespaces) == 0 {
		namespaces = []string{metav1.NamespaceAll}
	}
	seen := map[types.UID]bool{}
	for _, ns := range namespaces {
		// ResourceVersion "0": the API server's cache is recent enough.
		pods, err := m.client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{ResourceVersion: "0"})
		if err != nil {
			return fmt.Errorf("list pods: %w", err)
		}
		for i := range pods.Items {
			pod := &pods.Items[i]
			if !missed(pod) {
				continue
			}
			seen[pod.UID] = true
			if m.reported[pod.UID] {
				continue
			}
			if err := m.report(ctx, pod); err != nil {
				return err
			}
		}
	}
	m.reported = seen
	m.gauge.Set(float64(len(seen)))
	return nil
}

// missed: asks for the sidecar, has none, has not opted out, still running.
func missed(pod *corev1.Pod) bool {
	if pod.Annotations[ServiceAnnotation] == "" || pod.Labels[InjectLabel] == "disabled" || pod.DeletionTimestamp != nil {
		return false
	}
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		return false
	}
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range list {
			if c.Name == inject.EnvoyContainer {
				return false
			}
		}
	}
	return true
}

func (m *Missed) report(ctx context.Context, pod *corev1.Pod) error {
	now := metav1.Now()
	_, err := m.client.CoreV1().Events(pod.Namespace).Create(ctx, &corev1.Event{
		ObjectMeta: metav1.ObjectMeta{GenerateName: pod.Name + ".", Namespace: pod.Namespace},
		InvolvedObject: corev1.ObjectReference{Kind: "Pod", APIVersion: "v1", Namespace: pod.Namespace, Name: pod.Name, UID: pod.UID,
			ResourceVersion: pod.ResourceVersion},
		Reason: ReasonNotInjected,
		Message: fmt.Sprintf("pod asks for the shadowplane sidecar (%s=%s) but runs without it: it was created while the injection webhook was unreachable (it fails open), "+
			"or neither it nor its namespace is labelled %s=enabled; delete it to have it re-created with the sidecar", ServiceAnnotation, pod.Annotations[ServiceAnnotation], InjectLabel),
		Type:           corev1.EventTypeWarning,
		Source:         corev1.EventSource{Component: "shadowplane"},
		FirstTimestamp: now, LastTimestamp: now, Count: 1,
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("event on pod %s/%s: %w", pod.Namespace, pod.Name, err)
	}
	m.log.Info("pod runs without the sidecar it asks for", "pod", pod.Namespace+"/"+pod.Name)
	return nil
}
