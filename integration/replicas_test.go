package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/shadowplane/shadowplane/integration/harness"
	"github.com/shadowplane/shadowplane/watcher"
	"github.com/shadowplane/shadowplane/xds"
)

// replica is one `shadowplane serve` of a two-replica control plane, on
// fixed ports so that a restart takes its place.
type replica struct {
	name    string
	xds     string
	debug   string
	served  *servedBinary
	restart func() *servedBinary
}

// startReplica launches `shadowplane serve` as one replica: leader election
// in namespace ns with short periods, the shared TLS files in certDir.
func startReplica(t *testing.T, ctx context.Context, name, ns, certDir string) *replica {
	t.Helper()
	e := env(t)
	xdsPort, err := harness.FreePort()
	must(t, err)
	debugPort, err := harness.FreePort()
	must(t, err)
	r := &replica{name: name, xds: fmt.Sprintf("127.0.0.1:%d", xdsPort), debug: fmt.Sprintf("http://127.0.0.1:%d", debugPort)}
	r.restart = func() *servedBinary {
		// launchServe's own --xds-address comes first; the later one wins.
		return startServe(t, ctx, e.kube.KubeconfigPath, "127.0.0.1",
			"--xds-address", r.xds, "--debug-address", fmt.Sprintf("127.0.0.1:%d", debugPort),
			"--namespaces", ns,
			"--xds-tls-cert-file", filepath.Join(certDir, "tls.crt"), "--xds-tls-key-file", filepath.Join(certDir, "tls.key"),
			"--leader-election-namespace", ns, "--leader-election-identity", name,
			"--leader-election-lease-duration", "3s", "--leader-election-renew-deadline", "2s", "--leader-election-retry-period", "250ms")
	}
	r.served = r.restart()
	return r
}

func (r *replica) leading(t *testing.T) bool {
	return scrapeMetrics(t, r.served.http)["shadowplane_leader"] == 1
}

// snapshots reads the replica's /debug/snapshots.
func (r *replica) snapshots(ctx context.Context) (map[string]xds.GroupStatus, error) {
	body, err := harness.GetJSON(ctx, r.debug+"/debug/snapshots")
	if err != nil {
		return nil, err
	}
	var out map[string]xds.GroupStatus
	return out, json.Unmarshal(body, &out)
}

// syncedProxies counts the proxies of the replica that acknowledged every
// type.
func (r *replica) syncedProxies(ctx context.Context) (int, error) {
	body, err := harness.GetJSON(ctx, r.debug+"/debug/proxies")
	if err != nil {
		return 0, err
	}
	var proxies []xds.ProxyStatus
	if err := json.Unmarshal(body, &proxies); err != nil {
		return 0, err
	}
	n := 0
	for _, p := range proxies {
		synced := len(p.Types) > 0
		for _, ts := range p.Types {
			synced = synced && ts.Status == xds.StatusSynced
		}
		if synced {
			n++
		}
	}
	return n, nil
}

// TestReplicasAgree runs two replicas of the real binary against the real
// API server, with a real Envoy that reaches them through a switchable
// forwarder (the Service). After an invalid edit, the leader is killed, the
// sidecar moves to the other replica, which takes the Lease; the killed one
// restarts, reads the stored last valid version, and the sidecar moves to
// it. Throughout, every request is copied (the policy copies 100 %): no copy
// of the last valid policy is lost. Both replicas serve the same versions,
// each verdict is one Event, and the status annotation says what is in
// force and how many of the leader's sidecars acknowledged it.
func TestReplicasAgree(t *testing.T) {
	e := env(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ns := newNamespace(t, ctx)
	kube := e.kube

	primary, err := harness.StartBackend("primary", "127.0.0.1")
	must(t, err)
	t.Cleanup(primary.Stop)
	shadow, err := harness.StartBackend("shadow", e.endpointHost)
	must(t, err)
	t.Cleanup(shadow.Stop)
	listenPort, err := harness.FreePort()
	must(t, err)
	must(t, kube.ApplyService(ctx, ns, "entrance", harness.ServicePort{Name: "http", Port: 80, TargetPort: int32(listenPort)}))
	must(t, kube.ApplyService(ctx, ns, "entrance-shadow", harness.ServicePort{Name: "http", Port: 8080, TargetPort: shadow.Port}))
	must(t, kube.ApplyEndpointSlice(ctx, ns, "entrance-shadow", "http", shadow.Port, harness.SliceEndpoint{Address: e.endpointHost, Ready: true}))

	certDir := t.TempDir()
	if out, err := exec.Command(e.shadowplane, "certgen", "--out-dir", certDir, "--ip", "127.0.0.1").CombinedOutput(); err != nil {
		t.Fatalf("shadowplane certgen: %v\n%s", err, out)
	}
	a := startReplica(t, ctx, "replica-a", ns, certDir)
	b := startReplica(t, ctx, "replica-b", ns, certDir)
	var leader, follower *replica
	if err := harness.WaitUntil(ctx, 30*time.Second, func() (bool, error) {
		switch {
		case a.leading(t) && !b.leading(t):
			leader, follower = a, b
		case b.leading(t) && !a.leading(t):
			leader, follower = b, a
		}
		return leader != nil, nil
	}); err != nil {
		t.Fatalf("no single leader among the replicas: %v", err)
	}
	t.Logf("leader %s, follower %s", leader.name, follower.name)

	// The sidecar reaches the leader first, through the forwarder.
	forwarder, err := harness.StartSwitchProxy(leader.xds)
	must(t, err)
	t.Cleanup(forwarder.Close)
	dir := t.TempDir()
	id, err := kube.NewSidecarIdentity(ctx, ns, "entrance", "entrance", "entrance-0", filepath.Join(dir, "identity"))
	must(t, err)
	policyCM := "mirror-policies"
	must(t, kube.ApplyPolicyConfigMap(ctx, ns, policyCM, "policies.yaml", policyYAML("100", "")))
	sidecar, err := harness.StartSidecar(ctx, harness.SidecarOptions{
		Shadowplane: e.shadowplane, Envoy: e.envoy, Dir: dir, XDSAddress: forwarder.Addr(),
		NodeID: "entrance-0", Namespace: ns, Service: "entrance",
		ListenPort: listenPort, AppPort: uint32(primary.Port),
		Secure: &harness.SidecarTLS{CAFile: filepath.Join(certDir, "ca.crt"), TokenFile: id.TokenFile},
	})
	must(t, err)
	t.Cleanup(sidecar.Stop)
	f := &mirrorFixture{t: t, ctx: ctx, ns: ns, kube: kube, primary: primary, shadow: shadow, sidecar: sidecar, client: harness.NewKeepAliveClient(8)}
	f.waitApplied(1_000_000)

	// The leader's status: applied, acknowledged by its one sidecar.
	applied := waitPolicyStatus(t, ctx, kube, ns, policyCM, func(p watcher.PolicyStatus) bool {
		return p.State == watcher.StateApplied && p.SidecarsAcked == 1
	})

	// Traffic throughout; every request must be copied.
	traffic := f.startTraffic(40, "entrance/replicas")

	// An invalid edit: both replicas keep the last valid version; the
	// leader says so once.
	f.applyPolicy(policyYAML("150", ""))
	kept := waitPolicyStatus(t, ctx, kube, ns, policyCM, func(p watcher.PolicyStatus) bool { return p.State == watcher.StateKeptLastValid })
	if kept.AppliedVersion != applied.AppliedVersion {
		t.Errorf("after the invalid edit the applied version is %q, want the last valid %q", kept.AppliedVersion, applied.AppliedVersion)
	}
	time.Sleep(time.Second) // traffic under the invalid edit

	// Kill the leader; the sidecar moves to the follower, which takes the
	// Lease once it expires.
	must(t, leader.served.proc.Signal(syscall.SIGKILL))
	<-leader.served.proc.Done()
	forwarder.Switch(follower.xds)
	waitSynced(t, ctx, follower, 1)
	if err := harness.WaitUntil(ctx, 30*time.Second, func() (bool, error) { return follower.leading(t), nil }); err != nil {
		t.Fatalf("%s never took the Lease after %s was killed", follower.name, leader.name)
	}

	// The killed replica restarts and reads the stored last valid version;
	// the sidecar moves to it.
	leader.served = leader.restart()
	forwarder.Switch(leader.xds)
	waitSynced(t, ctx, leader, 1)
	time.Sleep(time.Second) // traffic on the restarted replica
	traffic.Stop()

	f.checkRuntime(f.runtimeKey(), 1_000_000)
	n := int(traffic.sent.Load())
	if traffic.failed.Load() != 0 || primary.Count() != n {
		t.Errorf("%d of %d requests failed (first: %v); primary got %d", traffic.failed.Load(), n, traffic.firstFailure.Load(), primary.Count())
	}
	copies := shadow.WaitCount(ctx, n, 500*time.Millisecond)
	marked := shadow.CountWhere(func(r harness.Request) bool { return r.Header.Get("x-shadowplane-copy") == ns+"/entrance-to-staging" })
	t.Logf("%d requests, %d copies (%d marked) across the invalid edit, the kill and both moves", n, copies, marked)
	if marked != n || copies != n {
		t.Errorf("lost copies: %d requests, %d copies (%d marked): want every request copied", n, copies, marked)
	}

	// Both replicas serve the same versions for the sidecar's group.
	sa, err := leader.snapshots(ctx)
	must(t, err)
	sb, err := follower.snapshots(ctx)
	must(t, err)
	if len(sa) != 1 || len(sb) != 1 {
		t.Fatalf("snapshots: %s has %d groups, %s has %d; want the sidecar's one on each", leader.name, len(sa), follower.name, len(sb))
	}
	for group, ga := range sa {
		gb, ok := sb[group]
		if !ok {
			t.Fatalf("%s has no snapshot for group %s", follower.name, group)
		}
		for typ, va := range ga.Types {
			if vb := gb.Types[typ]; va.Version != vb.Version || fmt.Sprint(va.Resources) != fmt.Sprint(vb.Resources) {
				t.Errorf("%s: %s serves %s %v, %s serves %s %v", typ, leader.name, va.Version, va.Resources, follower.name, vb.Version, vb.Resources)
			}
		}
	}

	// One Event per verdict, though two replicas saw each and leadership
	// changed hands.
	events, err := kube.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + policyCM})
	must(t, err)
	byReason := map[string][]corev1.Event{}
	for _, ev := range events.Items {
		byReason[ev.Reason] = append(byReason[ev.Reason], ev)
	}
	for _, reason := range []string{watcher.ReasonPolicyApplied, watcher.ReasonPolicyRejected} {
		evs := byReason[reason]
		if len(evs) != 1 || evs[0].Count > 1 {
			t.Errorf("%d %s Events (counts %v), want one recorded once", len(evs), reason, eventCounts(evs))
		}
	}
	if len(events.Items) != 2 {
		t.Errorf("%d Events on %s, want 2 (applied, rejected): %v", len(events.Items), policyCM, byReason)
	}
	final := waitPolicyStatus(t, ctx, kube, ns, policyCM, func(p watcher.PolicyStatus) bool { return p.State == watcher.StateKeptLastValid })
	if final.AppliedVersion != applied.AppliedVersion {
		t.Errorf("status after the moves: applied version %q, want %q", final.AppliedVersion, applied.AppliedVersion)
	}
}

func eventCounts(evs []corev1.Event) []int32 {
	var out []int32
	for _, ev := range evs {
		out = append(out, ev.Count)
	}
	return out
}

// waitSynced waits until n proxies of r acknowledged everything.
func waitSynced(t *testing.T, ctx context.Context, r *replica, n int) {
	t.Helper()
	if err := harness.WaitUntil(ctx, 60*time.Second, func() (bool, error) {
		got, err := r.syncedProxies(ctx)
		return got == n, err
	}); err != nil {
		t.Fatalf("%s never had %d synced proxies: %v\n%s", r.name, n, err, r.served.proc.LogTail(30))
	}
}

// waitPolicyStatus waits until the only policy in the ConfigMap's status
// annotation satisfies cond, and returns it.
func waitPolicyStatus(t *testing.T, ctx context.Context, kube *harness.Kube, ns, name string, cond func(watcher.PolicyStatus) bool) watcher.PolicyStatus {
	t.Helper()
	var last string
	var found watcher.PolicyStatus
	if err := harness.WaitUntil(ctx, 30*time.Second, func() (bool, error) {
		cm, err := kube.Client.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, err
		}
		last = cm.Annotations[watcher.AnnotationStatus]
		var st watcher.ConfigMapStatus
		if json.Unmarshal([]byte(last), &st) != nil || len(st.Policies) != 1 {
			return false, nil
		}
		found = st.Policies[0]
		return cond(found), nil
	}); err != nil {
		t.Fatalf("status of %s/%s never matched (last %s): %v", ns, name, last, err)
	}
	return found
}
