// Package inject adds a shadowplane Envoy sidecar to Kubernetes workload
// manifests and pods, like `istioctl kube-inject` but without a mesh: an init
// container renders the bootstrap with `shadowplane bootstrap`, an Envoy
// container (a native sidecar where the cluster has them) serves it. The
// Service reaches Envoy through a named targetPort: the name moves from the
// app's container port to Envoy's in the same template change, so during the
// rollout old pods map it to the app and new pods to Envoy, and no request
// goes to a port nobody listens on. Uninject moves it back. By default the
// sidecar talks to the control plane over TLS, trusting the CA from ConfigMap
// shadowplane-ca and proving who it is with a projected ServiceAccount token.
package inject

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"slices"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer/json"
	"k8s.io/apimachinery/pkg/util/intstr"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"

	bootstrap "github.com/shadowplane/shadowplane/envoy-bootstrap"
	"github.com/shadowplane/shadowplane/internal/certs"
	"github.com/shadowplane/shadowplane/nodemeta"
)

// Names of what the injection adds; finding EnvoyContainer means a workload
// is injected already.
const (
	InitContainer  = "shadowplane-bootstrap"
	EnvoyContainer = "shadowplane-envoy"
	ConfigVolume   = "shadowplane-envoy-config"
	TokenVolume    = "shadowplane-token"
	CAVolume       = "shadowplane-ca"
	// SidecarLabel marks the pods the control plane's NetworkPolicy admits
	// to xDS.
	SidecarLabel = "shadowplane.io/sidecar"
	// TokenExpirationSeconds is the projected token's lifetime; the kubelet
	// refreshes it at 80 % of that.
	TokenExpirationSeconds = 3600
	// configDir holds the bootstrap and its SDS files (an emptyDir). It is
	// a sibling of the CA mount, not its parent: a mount inside a read-only
	// mount could not be created.
	configDir = "/etc/shadowplane/envoy"
	// sidecarUID runs both added containers: unprivileged, as in the
	// distroless "nonroot" image.
	sidecarUID = 65532
)

// Options say what to inject.
type Options struct {
	Service          string // the Service the workload's pods sit behind
	Ports            []nodemeta.PortPair
	XDSAddress       string
	Delta            bool
	ShadowplaneImage string
	EnvoyImage       string
	// XDSServerName is the DNS name the control plane's certificate must
	// carry; default: the host of XDSAddress.
	XDSServerName string
	// Insecure renders a plain-text bootstrap without token or CA, for a
	// control plane run with --insecure-xds.
	Insecure bool
	// CABundle, when set, is the PEM CA bundle (one CA, or the old and the
	// new one during a rotation) published as ConfigMap shadowplane-ca in
	// every namespace of an injected workload.
	CABundle []byte
	// NativeSidecar runs Envoy as an init container with restartPolicy
	// Always (Kubernetes 1.29 and later): ready before the app starts,
	// stopped after it. Otherwise Envoy is an ordinary container.
	NativeSidecar bool
	// HealthPort is the sidecar's readiness and drain port (default
	// DefaultHealthPort); DrainDelay how long its preStop holds the pod's
	// termination (default bootstrap.DefaultDrainDelay).
	HealthPort uint32
	DrainDelay time.Duration
	// DrainToken is the secret the preStop hook sends to the sidecar's
	// drain path (bootstrap.DrainTokenHeader); empty means a new random
	// one for each workload or pod injected.
	DrainToken string
}

// DefaultHealthPort is where the kubelet probes the sidecar (Istio's).
const DefaultHealthPort = 15021

func (o Options) healthPort() uint32 {
	if o.HealthPort == 0 {
		return DefaultHealthPort
	}
	return o.HealthPort
}

func (o Options) drainDelay() time.Duration {
	if o.DrainDelay == 0 {
		return bootstrap.DefaultDrainDelay
	}
	return o.DrainDelay
}

// Result reports what Manifests or Remove changed.
type Result struct {
	Workloads    []string // kind/name of workloads changed
	Unchanged    []string // kind/name of workloads left as they were (injected already, or without sidecar)
	Services     []string // Services whose targetPort changed
	CAConfigMaps []string // namespace/name of the published CA ConfigMaps ("" namespace: kubectl's current one)
	// Notes say what is left to do by hand, e.g. a Service to point at the
	// sidecar once the rollout is done.
	Notes []string
}

// Manifests reads YAML or JSON documents, injects every Deployment,
// StatefulSet, DaemonSet and Pod (those injected already stay as they are),
// points the Service named o.Service at the sidecar by port name where that
// loses nothing, and writes all documents back as YAML (other kinds
// unchanged). With o.CABundle, the CA ConfigMaps come first, so the pods find
// them.
func Manifests(in io.Reader, out io.Writer, o Options) (Result, error) {
	var res Result
	if err := o.Complete(); err != nil {
		return res, err
	}
	objects, err := decode(in)
	if err != nil {
		return res, err
	}
	var namespaces []string
	names, err := eachWorkload(objects, &res, func(w workload) (PodChange, bool, error) {
		injectedBefore := findEnvoy(w.spec) != nil
		change, err := Pod(w.meta, w.spec, w.name, o)
		if err == nil && !slices.Contains(namespaces, w.namespace) {
			namespaces = append(namespaces, w.namespace)
		}
		return change, injectedBefore, err
	})
	if err != nil {
		return res, err
	}
	for i, obj := range objects {
		if svc, ok := obj.(*corev1.Service); ok && svc.Name == o.Service {
			if err := pointServiceAtSidecar(svc, o.Ports, names, &res); err != nil {
				return res, fmt.Errorf("document %d: %w", i+1, err)
			}
		}
	}
	if o.CABundle != nil {
		objects = publishCA(objects, namespaces, o.CABundle, &res)
	}
	return res, encode(objects, out)
}

// Remove is uninject: it takes the sidecar out of every workload and gives
// each Envoy port name back to the app port it forwarded to. A Service named
// service that still targets a listen port by number (as inject before named
// ports did) is pointed at the name instead, so the rollout loses nothing.
func Remove(in io.Reader, out io.Writer, service string) (Result, error) {
	var res Result
	objects, err := decode(in)
	if err != nil {
		return res, err
	}
	names, err := eachWorkload(objects, &res, func(w workload) (PodChange, bool, error) {
		change, err := Unpod(w.meta, w.spec)
		if err != nil {
			err = fmt.Errorf("%s: %w", w.name, err)
		}
		return change, true, err
	})
	if err != nil {
		return res, err
	}
	for _, obj := range objects {
		svc, ok := obj.(*corev1.Service)
		if !ok || svc.Name != service {
			continue
		}
		changed := false
		for i, p := range svc.Spec.Ports {
			if p.TargetPort.Type != intstr.Int {
				continue
			}
			if name, ok := names[uint32(p.TargetPort.IntVal)]; ok {
				svc.Spec.Ports[i].TargetPort = intstr.FromString(name.name)
				changed = true
			}
		}
		if changed {
			res.Services = append(res.Services, "Service/"+svc.Name)
		}
	}
	return res, encode(objects, out)
}

// eachWorkload runs change on the pod part of every workload in objects,
// records in res which it changed, and collects the names of Envoy's ports
// (sidecarBefore: the workload had the sidecar before the change).
func eachWorkload(objects []runtime.Object, res *Result, change func(workload) (c PodChange, sidecarBefore bool, err error)) (portNames, error) {
	names := portNames{}
	for i, obj := range objects {
		w, ok := podOf(obj)
		if !ok {
			continue
		}
		c, sidecarBefore, err := change(w)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", i+1, err)
		}
		if !c.Changed {
			res.Unchanged = append(res.Unchanged, w.name)
		} else {
			res.Workloads = append(res.Workloads, w.name)
		}
		if err := names.add(w.name, c, sidecarBefore); err != nil {
			return nil, err
		}
	}
	return names, nil
}

// portNames maps each listen port to the name of Envoy's port in the
// workloads seen, and whether every pod may already resolve it safely.
type portNames map[uint32]struct {
	name     string
	switchOK bool
}

// add records one workload's names; workloads behind one Service must agree.
func (n portNames) add(workload string, change PodChange, injectedBefore bool) error {
	for listen, name := range change.PortNames {
		moved := injectedBefore || slices.Contains(change.Moved, listen)
		if seen, ok := n[listen]; ok && seen.name != name {
			return fmt.Errorf("%s names listen port %d %q, another workload %q: one Service cannot reach both by name", workload, listen, name, seen.name)
		}
		entry := n[listen]
		entry.name, entry.switchOK = name, moved && (entry.name == "" || entry.switchOK)
		n[listen] = entry
	}
	return nil
}

// pointServiceAtSidecar makes each Service port that reaches an app port
// target the name of Envoy's port for it. A port already targeting that name
// needs nothing. A port targeting the app port by number is switched to the
// name when every pod resolves the name safely (the name was the app port's,
// or the workload had the sidecar already); otherwise it stays on the app
// until the rollout is done, and a note says so.
func pointServiceAtSidecar(svc *corev1.Service, pairs []nodemeta.PortPair, names portNames, res *Result) error {
	if len(svc.Spec.Ports) > 1 {
		for _, p := range svc.Spec.Ports {
			if p.Name == "" {
				return fmt.Errorf("Service %s has %d ports and port %d has no name: name every port (Kubernetes requires it) so that each maps to one container port", svc.Name, len(svc.Spec.Ports), p.Port)
			}
		}
	}
	matched, changed := false, false
	for i, p := range svc.Spec.Ports {
		target := p.TargetPort
		if target.Type == intstr.String {
			for _, entry := range names {
				if entry.name == target.StrVal {
					matched = true
				}
			}
			continue
		}
		if target.IntVal == 0 {
			target = intstr.FromInt32(p.Port)
		}
		for _, pair := range pairs {
			if uint32(target.IntVal) != pair.App && uint32(target.IntVal) != pair.Listen {
				continue
			}
			matched = true
			entry, ok := names[pair.Listen]
			switch {
			case !ok:
				return fmt.Errorf("Service %s targets port %d by number and no workload in the input has the sidecar for it: inject the workload in the same run (its port names decide)", svc.Name, target.IntVal)
			case entry.switchOK || uint32(target.IntVal) == pair.Listen:
				svc.Spec.Ports[i].TargetPort = intstr.FromString(entry.name)
				changed = true
			default:
				res.Notes = append(res.Notes, fmt.Sprintf("Service %s port %d targets the app's port %d by number, and that container port has no name the old pods could resolve: "+
					"it stays on the app (traffic bypasses the sidecar) while the new pods roll out; once `kubectl rollout status` is done, run inject again on this output to point it at the sidecar's port %q",
					svc.Name, p.Port, target.IntVal, entry.name))
			}
		}
	}
	if !matched {
		return fmt.Errorf("Service %s: no port targets an app port of --ports %s, nor the name of one; set its targetPort by hand", svc.Name, nodemeta.FormatPorts(pairs))
	}
	if changed {
		res.Services = append(res.Services, "Service/"+svc.Name)
	}
	return nil
}

// workload is the pod part of a Deployment, StatefulSet, DaemonSet or Pod.
type workload struct {
	meta      *metav1.ObjectMeta // of the pod template (a bare Pod's own)
	spec      *corev1.PodSpec
	name      string // kind/name
	namespace string
}

// podOf returns the pod part of a workload; a bare Pod is its own template.
func podOf(obj runtime.Object) (workload, bool) {
	switch w := obj.(type) {
	case *appsv1.Deployment:
		return workload{&w.Spec.Template.ObjectMeta, &w.Spec.Template.Spec, "Deployment/" + w.Name, w.Namespace}, true
	case *appsv1.StatefulSet:
		return workload{&w.Spec.Template.ObjectMeta, &w.Spec.Template.Spec, "StatefulSet/" + w.Name, w.Namespace}, true
	case *appsv1.DaemonSet:
		return workload{&w.Spec.Template.ObjectMeta, &w.Spec.Template.Spec, "DaemonSet/" + w.Name, w.Namespace}, true
	case *corev1.Pod:
		return workload{&w.ObjectMeta, &w.Spec, "Pod/" + w.Name, w.Namespace}, true
	}
	return workload{}, false
}

func encode(objects []runtime.Object, out io.Writer) error {
	encoder := json.NewSerializerWithOptions(json.DefaultMetaFactory, scheme.Scheme, scheme.Scheme, json.SerializerOptions{Yaml: true})
	for i, obj := range objects {
		if i > 0 {
			if _, err := io.WriteString(out, "---\n"); err != nil {
				return err
			}
		}
		if err := encoder.Encode(obj, out); err != nil {
			return fmt.Errorf("encode %s: %w", obj.GetObjectKind().GroupVersionKind().Kind, err)
		}
	}
	return nil
}

// Complete checks the options and fills the server name, so a bad value
// fails here and not in a crash-looping init container.
func (o *Options) Complete() error {
	if o.Service == "" || len(o.Ports) == 0 || o.XDSAddress == "" {
		return errors.New("service, ports and xds address are required")
	}
	if err := nodemeta.ValidateService(o.Service); err != nil {
		return fmt.Errorf("service: %w", err)
	}
	if err := nodemeta.ValidatePorts(o.Ports); err != nil {
		return fmt.Errorf("ports: %w", err)
	}
	if o.Insecure {
		if o.CABundle != nil || o.XDSServerName != "" {
			return errors.New("a plain-text (insecure) sidecar uses no CA and no server name")
		}
		return nil
	}
	if o.XDSServerName == "" {
		host, _, err := net.SplitHostPort(o.XDSAddress)
		if err != nil {
			return fmt.Errorf("xds address %q: want HOST:PORT", o.XDSAddress)
		}
		if net.ParseIP(host) != nil {
			return fmt.Errorf("xds address %q is an IP address: give the xds server name, the DNS name in the control plane's certificate", o.XDSAddress)
		}
		o.XDSServerName = host
	}
	if o.CABundle != nil {
		return checkCABundle(o.CABundle)
	}
	return nil
}

// checkCABundle accepts PEM CA certificates only: the bundle is published
// in a ConfigMap, readable by the whole namespace, so a private key in it
// (ca.key given by mistake, or a combined file) is refused.
func checkCABundle(data []byte) error {
	cas := 0
	for rest := data; ; {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != "CERTIFICATE" {
			return fmt.Errorf("CA file: holds a %q block; it may hold CA certificates only (it is published in a ConfigMap)", block.Type)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return fmt.Errorf("CA file: %w", err)
		}
		if !cert.IsCA {
			return fmt.Errorf("CA file: certificate %q is not a CA", cert.Subject.CommonName)
		}
		cas++
	}
	if cas == 0 {
		return errors.New("CA file: no PEM certificate in it")
	}
	return nil
}

func decode(in io.Reader) ([]runtime.Object, error) {
	reader := utilyaml.NewYAMLOrJSONDecoder(in, 4096)
	var objects []runtime.Object
	for doc := 1; ; doc++ {
		var raw runtime.RawExtension
		if err := reader.Decode(&raw); err != nil {
			if errors.Is(err, io.EOF) {
				return objects, nil
			}
			return nil, fmt.Errorf("document %d: %w", doc, err)
		}
		if len(bytes.TrimSpace(raw.Raw)) == 0 {
			doc--
			continue
		}
		obj, _, err := scheme.Codecs.UniversalDeserializer().Decode(raw.Raw, nil, nil)
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", doc, err)
		}
		objects = append(objects, obj)
	}
}

// publishCA sets the CA bundle in the shadowplane-ca ConfigMap of each
// namespace: one already in the input is updated in place (so injecting
// output again never duplicates it), the others are added just before the
// first workload (after any Namespace they belong in).
func publishCA(objects []runtime.Object, namespaces []string, bundle []byte, res *Result) []runtime.Object {
	var added []runtime.Object
	for _, ns := range namespaces {
		var cm *corev1.ConfigMap
		for _, obj := range objects {
			if c, ok := obj.(*corev1.ConfigMap); ok && c.Name == certs.CAConfigMapName && c.Namespace == ns {
				cm = c
			}
		}
		if cm == nil {
			cm = &corev1.ConfigMap{
				TypeMeta: metav1.TypeMeta{APIVersion: "v1", Kind: "ConfigMap"},
				ObjectMeta: metav1.ObjectMeta{Name: certs.CAConfigMapName, Namespace: ns,
					Labels: map[string]string{"app.kubernetes.io/name": "shadowplane", "app.kubernetes.io/component": "xds-ca"}},
			}
			added = append(added, cm)
		}
		if cm.Data == nil {
			cm.Data = map[string]string{}
		}
		cm.Data[certs.KeyCACert] = string(bundle)
		res.CAConfigMaps = append(res.CAConfigMaps, ns+"/"+certs.CAConfigMapName)
	}
	if len(added) == 0 {
		return objects
	}
	// A namespace in the list means a workload is in objects.
	return slices.Insert(objects, slices.IndexFunc(objects, isWorkload), added...)
}

func isWorkload(obj runtime.Object) bool {
	switch obj.(type) {
	case *appsv1.Deployment, *appsv1.StatefulSet, *appsv1.DaemonSet, *corev1.Pod:
		return true
	}
	return false
}

func ptr[T any](v T) *T { return &v }
