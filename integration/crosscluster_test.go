package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/shadowplane/shadowplane/integration/harness"
	"github.com/shadowplane/shadowplane/internal/certs"
	"github.com/shadowplane/shadowplane/internal/copystats"
	"github.com/shadowplane/shadowplane/internal/testtools"
	"github.com/shadowplane/shadowplane/policy"
	"github.com/shadowplane/shadowplane/statnames"
)

// crossClusterPKI is another cluster's: the CA of its gateway's serving
// certificate, the CA it requires client certificates from, two client
// certificates (before and after a rotation), and a CA unrelated to it.
type crossClusterPKI struct {
	gatewayCA, clientCA, strangerCA *certs.Authority
	serving, client1, client2       certs.Pair
}

func newCrossClusterPKI(t *testing.T, sni string) crossClusterPKI {
	t.Helper()
	now := time.Now()
	ca := func(name string) *certs.Authority {
		a, err := certs.NewAuthority(name, 24*time.Hour, now)
		must(t, err)
		return a
	}
	p := crossClusterPKI{gatewayCA: ca("test cluster gateway CA"), clientCA: ca("test cluster client CA"), strangerCA: ca("unrelated CA")}
	var err error
	p.serving, err = p.gatewayCA.Issue([]string{sni}, nil, 24*time.Hour, now)
	must(t, err)
	p.client1, err = p.clientCA.IssueClient("copier-1", 24*time.Hour, now)
	must(t, err)
	p.client2, err = p.clientCA.IssueClient("copier-2", 24*time.Hour, now)
	must(t, err)
	return p
}

// TestCrossClusterCopies copies to another cluster's gateway (a real HTTPS
// server on the test address) that requires a client certificate from a
// private CA:
//   - copies reach it over TLS verified against the private CA from a
//     labelled ConfigMap, presenting the client certificate from a labelled
//     Secret (delivered to Envoy by SDS), with the SNI and Host configured;
//   - the same target trusted through an unrelated CA, or without the
//     client certificate, gets 0 copies (Envoy or the gateway refuses the
//     handshake) and a MirrorTLSHandshakeFailing Event, from the stats the
//     sidecar streams to the control plane, which also count the failed
//     connections by reason; naming a Secret or CA ConfigMap that does not exist gets 0
//     copies and a MirrorTLSInvalid Event; the primary answers every
//     request;
//   - a sidecar of another Service of the namespace, whose policies name
//     no Secret, gets none;
//   - a Secret whose key does not match its certificate gets 0 copies and
//     an Event, until it is fixed;
//   - rotating the Secret under traffic swaps the certificate in Envoy
//     without a restart and without touching a cluster or listener: every
//     request is copied, none of the primary's fails;
//   - the private keys appear in no log (control plane, Envoy), no /debug
//     dump and no Event.
//
// It runs over state-of-the-world and over delta xDS.
func TestCrossClusterCopies(t *testing.T) {
	for _, delta := range []bool{false, true} {
		t.Run(map[bool]string{false: "sotw", true: "delta"}[delta], func(t *testing.T) { testCrossClusterCopies(t, delta) })
	}
}

func testCrossClusterCopies(t *testing.T, delta bool) {
	e := env(t)
	const sni, authority = "gateway.test-cluster.example", "entrance.test-cluster.example"
	pki := newCrossClusterPKI(t, sni)
	gateway, err := harness.StartMutualTLSBackend("gateway", e.endpointHost, pki.serving, pki.clientCA.CertPEM)
	must(t, err)
	t.Cleanup(gateway.Stop)

	cpLog := &testtools.SyncBuffer{}
	f := newMirrorFixture(t, fixtureOptions{
		delta:           delta,
		allowedURLHosts: []string{e.endpointHost},
		// The TLS failures reach the control plane with the stats.
		statsFlushInterval: time.Second,
		logger:             hclog.New(&hclog.LoggerOptions{Name: "shadowplane", Level: hclog.Debug, Output: io.MultiWriter(cpLog, testWriter{t})}),
	})
	labels := map[string]string{policy.TLSObjectLabel: "true"}
	core := e.kube.Client.CoreV1()
	for name, ca := range map[string][]byte{"test-cluster-ca": pki.gatewayCA.CertPEM, "stranger-ca": pki.strangerCA.CertPEM} {
		_, err := core.ConfigMaps(f.ns).Create(f.ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels},
			Data:       map[string]string{policy.DefaultCAKey: string(ca)},
		}, metav1.CreateOptions{})
		must(t, err)
	}
	clientSecret := &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "test-cluster-client", Labels: labels},
		Type:       corev1.SecretTypeTLS,
		Data:       map[string][]byte{corev1.TLSCertKey: pki.client1.CertPEM, corev1.TLSPrivateKeyKey: pki.client1.KeyPEM},
	}
	_, err = core.Secrets(f.ns).Create(f.ctx, clientSecret, metav1.CreateOptions{})
	must(t, err)

	target := fmt.Sprintf("https://%s:%d", e.endpointHost, gateway.Port)
	mirror := func(name, prefix, tls string) string {
		return fmt.Sprintf(`- name: %[1]s
  service: entrance
  match: {pathPrefix: %[2]s}
  mirrors:
  - url: %[3]s
    name: gw
    percent: 100
    host: %[4]s
    tls: {sni: %[5]s, %[6]s}
`, name, prefix, target, authority, sni, tls)
	}
	f.applyPolicy("policies:\n" +
		mirror("good", "/good/", "caConfigMap: test-cluster-ca, clientCertSecret: test-cluster-client") +
		mirror("wrong-ca", "/wrong-ca/", "caConfigMap: stranger-ca, clientCertSecret: test-cluster-client") +
		mirror("no-cert", "/no-cert/", "caConfigMap: test-cluster-ca") +
		mirror("missing-secret", "/missing-secret/", "caConfigMap: test-cluster-ca, clientCertSecret: not-there") +
		mirror("missing-ca", "/missing-ca/", "caConfigMap: not-there, clientCertSecret: test-cluster-client"))

	for _, missing := range []string{`Secret "` + f.ns + `/not-there" does not exist`, `ConfigMap "` + f.ns + `/not-there" has no key "ca.crt", does not exist`} {
		if msg := f.waitWarningEvent("MirrorTLSInvalid", missing); !strings.Contains(msg, "no copies go to this mirror until it is fixed") {
			t.Errorf("Event %q does not say the mirror gets no copies", msg)
		}
	}
	for _, name := range []string{"good", "wrong-ca", "no-cert"} {
		f.waitRuntime("shadowplane."+f.ns+"."+name+".gw", 1_000_000)
	}
	// Three TLS clusters (one per usable mirror); the mirrors whose Secret
	// or ConfigMap is missing have none.
	clusters := waitTLSClusters(t, f, "good", "wrong-ca", "no-cert")
	f.waitRouteMirrors(3)
	waitSecretsActive(t, f, "mirror-client|"+f.ns+"/test-cluster-client", "mirror-ca|"+f.ns+"/test-cluster-ca/ca.crt")

	prefixes := []string{"/good/", "/wrong-ca/", "/no-cert/", "/missing-secret/", "/missing-ca/"}
	const rounds = 20
	n := rounds * len(prefixes)
	res := harness.SendN(f.ctx, f.client, n, 8, func(ctx context.Context, i int) *http.Request {
		return f.get(ctx, fmt.Sprintf("%sitem/%d", prefixes[i%len(prefixes)], i))
	})
	if res.Errors() != 0 {
		t.Fatalf("%d of %d primary requests failed; first: %s", res.Errors(), n, res.FirstError())
	}
	if got := f.primary.Count(); got != n {
		t.Errorf("primary got %d requests, want %d", got, n)
	}
	if got := gateway.WaitCount(f.ctx, rounds, 500*time.Millisecond); got != rounds {
		t.Errorf("the gateway got %d copies, want %d (only those of /good/)", got, rounds)
	}
	for _, c := range gateway.Requests() {
		if !strings.HasPrefix(c.Path, "/good/") {
			t.Errorf("the gateway got a copy of %s, whose mirror must not reach it", c.Path)
			continue
		}
		if c.TLSServerName != sni || c.Host != authority || c.ClientCommonName != "copier-1" {
			t.Errorf("copy %s: SNI %q, Host %q, client certificate %q; want %q, %q, copier-1", c.Path, c.TLSServerName, c.Host, c.ClientCommonName, sni, authority)
		}
	}
	// The refused copies were tried and failed at the handshake: Envoy
	// refused the gateway's certificate (unrelated CA); the gateway refused
	// Envoy for want of a client certificate.
	stats, err := f.sidecar.Stats(f.ctx, `^cluster\.`+regexp.QuoteMeta(statnames.ShadowClusterPrefix(f.ns))+`.*\.ssl\.(fail_verify_error|connection_error|handshake)$`)
	must(t, err)
	var verifyFailures, handshakeFailures, handshakes uint64
	for name, v := range stats {
		switch {
		case strings.HasSuffix(name, ".ssl.fail_verify_error"):
			verifyFailures += v
		case strings.HasSuffix(name, ".ssl.connection_error"):
			handshakeFailures += v
		case strings.HasSuffix(name, ".ssl.handshake"):
			handshakes += v
		}
	}
	if verifyFailures == 0 || gateway.TLSHandshakeErrors() == 0 {
		t.Errorf("Envoy refused %d certificates and the gateway %d handshakes; want both above 0 (stats %v)", verifyFailures, gateway.TLSHandshakeErrors(), stats)
	}
	t.Logf("TLS clusters %v; Envoy: %d handshakes, %d verification failures, %d connection errors; the gateway refused %d handshakes",
		clusters, handshakes, verifyFailures, handshakeFailures, gateway.TLSHandshakeErrors())
	checkTLSFailureEvents(t, f, target)

	checkSecretsOnlyWhereUsed(t, f, e)
	checkRotation(t, f, gateway, clientSecret, pki.client2)
	checkBrokenSecret(t, f, gateway, clientSecret, pki)

	// Key material: in no log, no /debug dump, no Event; Envoy's own dump
	// redacts it.
	var keyLines []string
	for _, k := range [][]byte{pki.client1.KeyPEM, pki.client2.KeyPEM} {
		block, _ := pem.Decode(k)
		body := strings.Split(strings.TrimSpace(string(pem.EncodeToMemory(block))), "\n")
		keyLines = append(keyLines, body[1:len(body)-1]...)
	}
	places := map[string]string{"control plane log": cpLog.String()}
	for _, path := range []string{"/debug/proxies", "/debug/snapshots", "/debug/pprof/cmdline"} {
		body, err := harness.GetJSON(f.ctx, "http://"+f.cp.DebugAddr.String()+path)
		must(t, err)
		places[path] = string(body)
	}
	if !strings.Contains(places["/debug/snapshots"], "mirror-client|"+f.ns+"/test-cluster-client") {
		t.Errorf("/debug/snapshots does not name the secret it serves")
	}
	envoyLog, err := os.ReadFile(f.sidecar.LogPath)
	must(t, err)
	places["envoy log"] = string(envoyLog)
	events, err := core.Events(f.ns).List(f.ctx, metav1.ListOptions{})
	must(t, err)
	var messages strings.Builder
	for _, ev := range events.Items {
		messages.WriteString(ev.Message + "\n")
	}
	places["events"] = messages.String()
	secretDump, err := f.sidecar.ConfigDump(f.ctx, "dynamic_active_secrets")
	must(t, err)
	places["envoy config_dump"] = string(secretDump)
	if !strings.Contains(string(secretDump), "[redacted]") {
		t.Errorf("Envoy's secret dump shows no redacted key: %.400s", secretDump)
	}
	for where, text := range places {
		for _, line := range keyLines {
			if strings.Contains(text, line) {
				t.Errorf("%s contains private key material (%.16s…)", where, line)
			}
		}
		if where != "envoy log" && where != "envoy config_dump" && strings.Contains(text, "PRIVATE KEY") {
			t.Errorf("%s mentions a PRIVATE KEY block", where)
		}
	}
	t.Logf("key material searched in %d places (%d lines of 2 keys): none found", len(places), len(keyLines))
}

// checkTLSFailureEvents: the refused handshakes reach the control plane in
// the sidecar's stats, counted by reason per mirror, and become a
// MirrorTLSHandshakeFailing Event for wrong-ca (Envoy refused the
// gateway's certificate) and for no-cert (the gateway refused Envoy),
// none for good.
func checkTLSFailureEvents(t *testing.T, f *mirrorFixture, target string) {
	t.Helper()
	start := time.Now()
	verify := f.waitWarningEvent("MirrorTLSHandshakeFailing", `policy "wrong-ca" mirror "gw" (`+target+`)`)
	if want := `Envoy could not verify the target's certificate with the CA in ConfigMap "` + f.ns + `/stranger-ca" key "ca.crt"`; !strings.Contains(verify, want) {
		t.Errorf("wrong-ca Event %q does not say %q", verify, want)
	}
	handshake := f.waitWarningEvent("MirrorTLSHandshakeFailing", `policy "no-cert" mirror "gw" (`+target+`)`)
	if want := "the TLS handshake with the target failed: it may require a client certificate, and this mirror sends none"; !strings.Contains(handshake, want) {
		t.Errorf("no-cert Event %q does not say %q", handshake, want)
	}
	t.Logf("MirrorTLSHandshakeFailing Events within %v: %q; %q", time.Since(start).Round(100*time.Millisecond), verify, handshake)

	mirrors := readCopyMetrics(t, f)
	for policyName, want := range map[string]string{"wrong-ca": "verify", "no-cert": "handshake"} {
		m := mirrors[f.ns+"/"+policyName+"/gw"]
		if m.TLSFailures[want] == 0 {
			t.Errorf("%s: shadowplane_copy_tls_failures_total %v, want %s above 0", policyName, m.TLSFailures, want)
		}
	}
	if good := mirrors[f.ns+"/good/gw"]; good.TLSFailures["verify"]+good.TLSFailures["handshake"] != 0 {
		t.Errorf("good: TLS failures %v, want none", good.TLSFailures)
	}
	list, err := env(t).kube.Client.CoreV1().Events(f.ns).List(f.ctx, metav1.ListOptions{FieldSelector: "reason=MirrorTLSHandshakeFailing"})
	must(t, err)
	for _, ev := range list.Items {
		if strings.Contains(ev.Message, `policy "good"`) {
			t.Errorf("the good mirror got an Event: %q", ev.Message)
		}
	}
}

// waitTLSClusters waits until Envoy has the TLS copy clusters of the
// mirrors "gw" of the given policies, each with its one host.
func waitTLSClusters(t *testing.T, f *mirrorFixture, policies ...string) []string {
	t.Helper()
	var names, missing []string
	for _, p := range policies {
		names = append(names, statnames.ShadowCluster(statnames.Mirror{Namespace: f.ns, Policy: p, Mirror: "gw"}))
	}
	err := harness.WaitUntil(f.ctx, 20*time.Second, func() (bool, error) {
		hosts, err := f.sidecar.Stats(f.ctx, "^"+regexp.QuoteMeta("cluster."+statnames.ShadowClusterPrefix(f.ns))+`.*\.membership_total$`)
		if err != nil {
			return false, err
		}
		missing = missing[:0]
		for _, name := range names {
			if hosts["cluster."+name+".membership_total"] != 1 {
				missing = append(missing, name)
			}
		}
		return len(missing) == 0, nil
	})
	if err != nil {
		t.Fatalf("envoy never had the clusters %v with a host: %v", missing, err)
	}
	return names
}

// checkRotation replaces the client certificate in the Secret while
// requests to /good/ run at a steady rate: the new certificate is
// presented from the next handshake on (the gateway makes one per copy),
// every request is copied, no primary request fails, and Envoy neither
// restarts nor rebuilds a cluster or listener.
func checkRotation(t *testing.T, f *mirrorFixture, gateway *harness.Backend, secret *corev1.Secret, next certs.Pair) {
	t.Helper()
	const rate, duration = 50, 6 * time.Second
	counters := `^(cluster_manager\.cluster_modified|listener_manager\.listener_modified|listener_manager\.total_listeners_draining|server\.hot_restart_epoch)$`
	before, err := f.sidecar.Stats(f.ctx, counters)
	must(t, err)
	gateway.Reset()
	primaryBefore := f.primary.Count()

	rotated := make(chan time.Time, 1)
	go func() {
		time.Sleep(duration / 3)
		s := secret.DeepCopy()
		s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey] = next.CertPEM, next.KeyPEM
		_, err := env(t).kube.Client.CoreV1().Secrets(f.ns).Update(f.ctx, s, metav1.UpdateOptions{})
		if err != nil {
			t.Errorf("rotate the Secret: %v", err)
		}
		rotated <- time.Now()
	}()
	res := harness.RunAtRate(f.ctx, f.client, rate, duration, func(ctx context.Context, i int) *http.Request {
		return f.get(ctx, fmt.Sprintf("/good/rotation/%d", i))
	})
	rotatedAt := <-rotated
	if res.Errors() != 0 {
		t.Errorf("%d of %d primary requests failed during the rotation; first: %s", res.Errors(), len(res.All), res.FirstError())
	}
	sent := len(res.All)
	if got := f.primary.Count() - primaryBefore; got != sent {
		t.Errorf("primary got %d requests during the rotation, want %d", got, sent)
	}
	copies := gateway.WaitCount(f.ctx, sent, 500*time.Millisecond)
	var old, renewed int
	var firstRenewed time.Time
	for _, c := range gateway.Requests() {
		switch c.ClientCommonName {
		case "copier-1":
			old++
		case "copier-2":
			renewed++
			if firstRenewed.IsZero() || c.At.Before(firstRenewed) {
				firstRenewed = c.At
			}
		}
	}
	t.Logf("rotation under %d req/s: %d requests, %d copies (%d with the old certificate, %d with the new); the new one first presented %v after the Secret update",
		rate, sent, copies, old, renewed, firstRenewed.Sub(rotatedAt).Round(time.Millisecond))
	if copies != sent {
		t.Errorf("the gateway got %d copies of %d requests during the rotation: copies were dropped", copies, sent)
	}
	if old == 0 || renewed == 0 {
		t.Errorf("copies with the old certificate %d, with the new %d: want both (the rotation happened mid-run)", old, renewed)
	}
	after, err := f.sidecar.Stats(f.ctx, counters)
	must(t, err)
	for name, v := range before {
		if after[name] != v {
			t.Errorf("%s went from %d to %d across the rotation, want unchanged", name, v, after[name])
		}
	}
}

// checkBrokenSecret writes a key that does not match the certificate into
// the Secret: an Event says so, the mirror gets no copies while the
// primary answers everything, and fixing the Secret brings copies back.
func checkBrokenSecret(t *testing.T, f *mirrorFixture, gateway *harness.Backend, secret *corev1.Secret, pki crossClusterPKI) {
	t.Helper()
	update := func(cert, key []byte) {
		t.Helper()
		s := secret.DeepCopy()
		s.Data[corev1.TLSCertKey], s.Data[corev1.TLSPrivateKeyKey] = cert, key
		_, err := env(t).kube.Client.CoreV1().Secrets(f.ns).Update(f.ctx, s, metav1.UpdateOptions{})
		must(t, err)
	}
	send := func(what string) {
		t.Helper()
		const n = 20
		gateway.Reset()
		before := f.primary.Count()
		res := harness.SendN(f.ctx, f.client, n, 4, func(ctx context.Context, i int) *http.Request {
			return f.get(ctx, fmt.Sprintf("/good/%s/%d", what, i))
		})
		if res.Errors() != 0 || f.primary.Count()-before != n {
			t.Errorf("%s: %d primary errors, %d of %d requests reached the primary", what, res.Errors(), f.primary.Count()-before, n)
		}
	}

	update(pki.client2.CertPEM, pki.client1.KeyPEM)
	f.waitWarningEvent("MirrorTLSInvalid", "tls.key does not match the certificate in tls.crt")
	// good and wrong-ca use the Secret: only no-cert's mirror is left.
	f.waitRouteMirrors(1)
	send("broken")
	if got := gateway.WaitCount(f.ctx, 1, 500*time.Millisecond); got != 0 {
		t.Errorf("the gateway got %d copies while the Secret was broken, want 0", got)
	}

	update(pki.client2.CertPEM, pki.client2.KeyPEM)
	f.waitRouteMirrors(3)
	waitTLSClusters(t, f, "good", "wrong-ca", "no-cert")
	waitSecretsActive(t, f, "mirror-client|"+f.ns+"/test-cluster-client")
	send("fixed")
	if got := gateway.WaitCount(f.ctx, 20, 500*time.Millisecond); got != 20 {
		t.Errorf("the gateway got %d copies of 20 once the Secret was fixed", got)
	}
}

// checkSecretsOnlyWhereUsed starts a sidecar of another Service in the
// namespace, which no policy copies from: Envoy has the client certificate
// and the CA in the entrance sidecar, and no secret at all in the other.
func checkSecretsOnlyWhereUsed(t *testing.T, f *mirrorFixture, e *sharedEnv) {
	t.Helper()
	listenPort, err := harness.FreePort()
	must(t, err)
	must(t, f.kube.ApplyService(f.ctx, f.ns, "checkout", harness.ServicePort{Name: "http", Port: 80, TargetPort: int32(listenPort)}))
	other, err := f.cp.StartSidecar(f.ctx, f.kube, harness.SidecarOptions{
		Shadowplane: e.shadowplane, Envoy: e.envoy, Dir: t.TempDir(),
		NodeID: "checkout-" + f.ns, Namespace: f.ns, Service: "checkout",
		ListenPort: listenPort, AppPort: uint32(f.primary.Port), Delta: f.delta,
	})
	must(t, err)
	defer other.Stop()

	secretNames := func(s *harness.Sidecar) []string {
		dump, err := s.ConfigDump(f.ctx, "dynamic_active_secrets")
		must(t, err)
		return regexp.MustCompile(`mirror-(?:client|ca)\|[^"]+`).FindAllString(string(dump), -1)
	}
	if got := secretNames(f.sidecar); len(got) < 2 {
		t.Errorf("the entrance sidecar's Envoy has secrets %v, want the client certificate and the CA", got)
	}
	if got := secretNames(other); len(got) != 0 {
		t.Errorf("the checkout sidecar's Envoy has secrets %v, want none: no policy of checkout names them", got)
	}
}

// waitSecretsActive waits until Envoy holds the named secrets as active and
// none warming, so tests that count copies start once the TLS material is
// in. (Once, under load, the first copies of a new TLS mirror failed and
// outlier detection ejected the target; the cause is not known.)
func waitSecretsActive(t *testing.T, f *mirrorFixture, names ...string) {
	t.Helper()
	var dump []byte
	err := harness.WaitUntil(f.ctx, 20*time.Second, func() (bool, error) {
		var err error
		if dump, err = f.sidecar.ConfigDump(f.ctx, ""); err != nil {
			return false, err
		}
		var doc struct {
			Configs []struct {
				DynamicActiveSecrets []struct {
					Name string `json:"name"`
				} `json:"dynamic_active_secrets"`
				DynamicWarmingSecrets []json.RawMessage `json:"dynamic_warming_secrets"`
			} `json:"configs"`
		}
		if err := json.Unmarshal(dump, &doc); err != nil {
			return false, err
		}
		active := map[string]bool{}
		warming := 0
		for _, c := range doc.Configs {
			for _, s := range c.DynamicActiveSecrets {
				active[s.Name] = true
			}
			warming += len(c.DynamicWarmingSecrets)
		}
		for _, n := range names {
			if !active[n] {
				return false, nil
			}
		}
		return warming == 0, nil
	})
	if err != nil {
		t.Fatalf("Envoy never had the secrets %v active and none warming: %v", names, err)
	}
}

// readCopyMetrics reads the control plane's copy metrics by mirror key
// (namespace/policy/mirror).
func readCopyMetrics(t *testing.T, f *mirrorFixture) map[string]copystats.Mirror {
	t.Helper()
	body, err := harness.GetJSON(f.ctx, f.cp.HTTPURL()+"/metrics")
	must(t, err)
	mirrors, err := copystats.ReadMetrics(bytes.NewReader(body))
	must(t, err)
	out := map[string]copystats.Mirror{}
	for _, m := range mirrors {
		out[m.Key()] = m
	}
	return out
}
