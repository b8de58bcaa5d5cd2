package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"
	applycorev1 "k8s.io/client-go/applyconfigurations/core/v1"
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"

	"github.com/shadowplane/shadowplane/integration/harness"
)

// writeMethod is one way an operator changes a policy ConfigMap.
type writeMethod struct {
	name, usedBy string
	verb         string // the API server's verb label for it
	// write sets the policy YAML; it returns when the call that wrote it
	// started and the new resourceVersion.
	write func(ctx context.Context, api typedcorev1.ConfigMapInterface, yaml string) (time.Time, string, error)
}

const floorConfigMap = "mirror-policies"

// patchWith returns a write that sends the policy YAML as a patch of one
// type, built by body from the YAML as a JSON string.
func patchWith(pt types.PatchType, fieldManager string, body func(yamlJSON string) string) func(context.Context, typedcorev1.ConfigMapInterface, string) (time.Time, string, error) {
	return func(ctx context.Context, api typedcorev1.ConfigMapInterface, yaml string) (time.Time, string, error) {
		quoted, err := json.Marshal(yaml)
		if err != nil {
			return time.Time{}, "", err
		}
		start := time.Now()
		cm, err := api.Patch(ctx, floorConfigMap, pt, []byte(body(string(quoted))), metav1.PatchOptions{FieldManager: fieldManager})
		if err != nil {
			return start, "", err
		}
		return start, cm.ResourceVersion, nil
	}
}

var writeMethods = []writeMethod{
	{
		name: "update", usedBy: "`shadowplane set`, `kubectl replace`", verb: "PUT",
		write: func(ctx context.Context, api typedcorev1.ConfigMapInterface, yaml string) (time.Time, string, error) {
			cm, err := api.Get(ctx, floorConfigMap, metav1.GetOptions{})
			if err != nil {
				return time.Time{}, "", err
			}
			cm.Data = map[string]string{"policies.yaml": yaml}
			start := time.Now() // as in bench-propagation: the Get is not counted
			out, err := api.Update(ctx, cm, metav1.UpdateOptions{})
			if err != nil {
				return start, "", err
			}
			return start, out.ResourceVersion, nil
		},
	},
	{
		name: "strategic merge patch", usedBy: "`kubectl edit`, `kubectl patch`, client-side `kubectl apply`", verb: "PATCH",
		write: patchWith(types.StrategicMergePatchType, "kubectl-edit", func(y string) string { return `{"data":{"policies.yaml":` + y + `}}` }),
	},
	{
		name: "merge patch", usedBy: "`kubectl patch --type merge`", verb: "PATCH",
		write: patchWith(types.MergePatchType, "kubectl-patch", func(y string) string { return `{"data":{"policies.yaml":` + y + `}}` }),
	},
	{
		name: "JSON patch", usedBy: "`kubectl patch --type json`", verb: "PATCH",
		write: patchWith(types.JSONPatchType, "kubectl-patch", func(y string) string {
			return `[{"op":"replace","path":"/data/policies.yaml","value":` + y + `}]`
		}),
	},
	{
		name: "server-side apply", usedBy: "`kubectl apply --server-side`, GitOps controllers", verb: "APPLY",
		write: func(ctx context.Context, api typedcorev1.ConfigMapInterface, yaml string) (time.Time, string, error) {
			start := time.Now()
			out, err := api.Apply(ctx, applycorev1.ConfigMap(floorConfigMap, "").
				WithLabels(map[string]string{harness.PolicyLabel: "true"}).
				WithData(map[string]string{"policies.yaml": yaml}),
				metav1.ApplyOptions{FieldManager: "kubectl", Force: true})
			if err != nil {
				return start, "", err
			}
			return start, out.ResourceVersion, nil
		},
	},
}

// writeFloor is one method's measurements.
type writeFloor struct {
	call, json, protobuf harness.LatencySummary
	// apiserver and etcd are the API server's own mean request time and
	// its mean etcd update time, from its metrics.
	apiserver, etcd time.Duration
}

// BenchmarkWriteFloor times the API server's part of a change alone, the
// floor under bench-propagation's first part, for each way operators write
// a policy ConfigMap: from just before the write call to a bare client-go
// watch of the namespace seeing the new resourceVersion, once with JSON
// (as the control plane's informers) and once with protobuf. No control
// plane and no Envoy run, so nothing else shares the machine's cores with
// the API server. Run it with
// `go test -exec "$PWD/hack/netns-exec" -run '^$' -bench WriteFloor -benchtime 1x -v ./integration/`.
func BenchmarkWriteFloor(b *testing.B) {
	e := env(b)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	ns := newNamespace(b, ctx)
	must(b, e.kube.ApplyPolicyConfigMap(ctx, ns, floorConfigMap, "policies.yaml", policyYAML("50", "")))
	protoConfig := rest.CopyConfig(e.kube.Config)
	protoConfig.ContentType = "application/vnd.kubernetes.protobuf"
	protoConfig.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	protoClient, err := kubernetes.NewForConfig(protoConfig)
	must(b, err)
	jsonSeen := watchVersions(b, ctx, e.kube.Client, ns)
	protoSeen := watchVersions(b, ctx, protoClient, ns)

	n := max(propagationChanges, b.N)
	api := e.kube.Client.CoreV1().ConfigMaps(ns)
	results := make([]writeFloor, len(writeMethods))
	written := 0 // across methods, so that no write repeats the one before
	for m, method := range writeMethods {
		before := scrapeAPIServer(b, e.kube.Client)
		var call, toJSON, toProto []time.Duration
		for i := 1; i <= n; i++ {
			written++
			start, version, err := method.write(ctx, api, policyYAML(fmt.Sprint(benchPercent(written)), ""))
			returned := time.Now()
			if err != nil {
				b.Fatalf("%s: %v", method.name, err)
			}
			call = append(call, returned.Sub(start))
			toJSON = append(toJSON, waitVersion(b, jsonSeen, version).Sub(start))
			toProto = append(toProto, waitVersion(b, protoSeen, version).Sub(start))
			time.Sleep(20*time.Millisecond + time.Duration(i%7)*time.Millisecond)
		}
		after := scrapeAPIServer(b, e.kube.Client)
		results[m] = writeFloor{
			call: harness.SummarizeLatencies(call), json: harness.SummarizeLatencies(toJSON), protobuf: harness.SummarizeLatencies(toProto),
			apiserver: meanDelta(before, after, "apiserver_request_duration_seconds", map[string]string{"resource": "configmaps", "verb": method.verb}),
			etcd:      meanDelta(before, after, "etcd_request_duration_seconds", map[string]string{"resource": "configmaps", "operation": "update"}),
		}
	}
	b.ReportMetric(0, "ns/op")
	fmt.Print(writeFloorTable(b, n, results))
}

// seenVersion is a resourceVersion a watch delivered, and when.
type seenVersion struct {
	version string
	at      time.Time
}

// watchVersions watches the namespace's ConfigMaps and sends each
// modification's resourceVersion, timed on arrival.
func watchVersions(b *testing.B, ctx context.Context, client kubernetes.Interface, ns string) <-chan seenVersion {
	w, err := client.CoreV1().ConfigMaps(ns).Watch(ctx, metav1.ListOptions{})
	must(b, err)
	b.Cleanup(w.Stop)
	out := make(chan seenVersion, 1000)
	go func() {
		for e := range w.ResultChan() {
			if cm, ok := e.Object.(*corev1.ConfigMap); ok && e.Type == watch.Modified {
				out <- seenVersion{version: cm.ResourceVersion, at: time.Now()}
			}
		}
	}()
	return out
}

// waitVersion returns when the watch delivered version.
func waitVersion(b *testing.B, seen <-chan seenVersion, version string) time.Time {
	timeout := time.After(10 * time.Second)
	for {
		select {
		case s := <-seen:
			if s.version == version {
				return s.at
			}
		case <-timeout:
			b.Fatalf("the watch never delivered resourceVersion %s", version)
		}
	}
}

// scrapeAPIServer reads the API server's /metrics.
func scrapeAPIServer(b *testing.B, client kubernetes.Interface) map[string]*dto.MetricFamily {
	body, err := client.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(context.Background())
	must(b, err)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	must(b, err)
	return families
}

// meanDelta is the mean of the observations a histogram made between two
// scrapes, over its series whose labels include want.
func meanDelta(before, after map[string]*dto.MetricFamily, name string, want map[string]string) time.Duration {
	total := func(families map[string]*dto.MetricFamily) (sum float64, count uint64) {
		f := families[name]
		if f == nil {
			return 0, 0
		}
	series:
		for _, m := range f.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue series
				}
			}
			sum += m.GetHistogram().GetSampleSum()
			count += m.GetHistogram().GetSampleCount()
		}
		return sum, count
	}
	sumBefore, countBefore := total(before)
	sumAfter, countAfter := total(after)
	if countAfter <= countBefore {
		return 0
	}
	return time.Duration((sumAfter - sumBefore) / float64(countAfter-countBefore) * float64(time.Second))
}

func writeFloorTable(b *testing.B, n int, results []writeFloor) string {
	var t strings.Builder
	fmt.Fprintf(&t, "\n### API write → a bare watch sees it, by write method (ms)\n\n")
	fmt.Fprintf(&t, "| method | used by | writes | call p50 | watch (JSON) p50 | p90 | p99 | watch (protobuf) p50 | p99 | API server's request mean | its etcd update mean |\n")
	fmt.Fprintf(&t, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for i, m := range writeMethods {
		r := results[i]
		fmt.Fprintf(&t, "| %s | %s | %d | %s | %s | %s | %s | %s | %s | %s | %s |\n", m.name, m.usedBy, n,
			harness.Millis(r.call.P50), harness.Millis(r.json.P50), harness.Millis(r.json.P90), harness.Millis(r.json.P99),
			harness.Millis(r.protobuf.P50), harness.Millis(r.protobuf.P99), harness.Millis(r.apiserver), harness.Millis(r.etcd))
	}
	fmt.Fprintf(&t, "\nOne policy ConfigMap, its percent changed each time, one write at a time 20-26 ms apart; no control plane or\n")
	fmt.Fprintf(&t, "Envoy runs. The means come from the API server's own histograms (apiserver_request_duration_seconds,\n")
	fmt.Fprintf(&t, "etcd_request_duration_seconds) over the same writes.\n\n")
	fmt.Fprintf(&t, "Machine: %s\n", harness.MachineDescription(env(b).envoy))
	return t.String()
}
