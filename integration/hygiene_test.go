package integration

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/shadowplane/shadowplane/integration/harness"
	"github.com/shadowplane/shadowplane/statnames"
)

// TestHygieneCopyHeaders: copyHeaders edits, the copy marker and the Host
// suffix apply to copies only; the primary sees every request as the
// client sent it. Two policies on the same Service split the traffic by
// path: /edit/ removes and sets headers and marks copies (the default),
// /plain/ turns the marker off and asks for the -shadow Host suffix.
func TestHygieneCopyHeaders(t *testing.T) {
	f := newMirrorFixture(t, fixtureOptions{})
	f.applyPolicy(`policies:
- name: edit-copies
  service: entrance
  port: http
  match: {pathPrefix: /edit/}
  mirrors:
  - {service: entrance-shadow, port: http, name: staging, percent: 100}
  copyHeaders:
    remove: [authorization, cookie]
    set: {x-env: staging, x-tenant: copy-tenant, x-discount: "100%"}
- name: plain-copies
  service: entrance
  port: http
  match: {pathPrefix: /plain/}
  markCopies: false
  hostSuffix: true
  mirrors:
  - {service: entrance-shadow, port: http, name: staging, percent: 100}
`)
	for _, p := range []string{"edit-copies", "plain-copies"} {
		f.waitRuntime("shadowplane."+f.ns+"."+p+".staging", 1_000_000)
	}
	for _, p := range []string{"edit-copies", "plain-copies"} {
		f.waitClusterHosts(f.mirrorCluster(p), 1)
	}
	f.waitRouteMirrors(2)

	// Each request: its path, Host, and whether it already carries the
	// marker header, as a copy arriving from another sidecar would.
	type variant struct {
		path, host string
		forged     bool
	}
	variants := []variant{
		{"/edit/a", "entrance.example.internal", false},
		{"/edit/b", "entrance.example.internal:8443", true},
		{"/plain/a", "entrance.example.internal", false},
		{"/plain/b", "entrance.example.internal:8443", false},
	}
	const rounds = 25
	n := rounds * len(variants)
	res := harness.SendN(f.ctx, f.client, n, 8, func(ctx context.Context, i int) *http.Request {
		v := variants[i%len(variants)]
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, f.sidecar.URL+v.path, nil)
		req.Host = v.host
		req.Header.Set("x-request-seq", fmt.Sprint(i))
		req.Header.Set("authorization", "Bearer secret-"+fmt.Sprint(i))
		req.Header.Set("cookie", "session=s"+fmt.Sprint(i))
		req.Header.Set("x-tenant", "beta")
		if v.forged {
			req.Header.Set("x-shadowplane-copy", "forged")
		}
		return req
	})
	if res.Errors() != 0 {
		t.Fatalf("%d of %d primary requests failed; first: %s", res.Errors(), n, res.FirstError())
	}
	// A request that already carries the copy marker is itself a copy: it
	// is forwarded and never copied again, so policies pointing at each
	// other cannot loop.
	wantCopies := n - rounds
	if got := f.shadow.WaitCount(f.ctx, wantCopies, 300*time.Millisecond); got != wantCopies {
		t.Fatalf("shadow got %d copies, want %d (all but the %d marked requests)", got, wantCopies, rounds)
	}

	primaries := bySeq(t, "primary", f.primary.Requests())
	copies := bySeq(t, "shadow", f.shadow.Requests())
	marker := f.ns + "/edit-copies"
	for i := 0; i < n; i++ {
		v := variants[i%len(variants)]
		seq := fmt.Sprint(i)
		p, ok := primaries[seq]
		if !ok {
			t.Fatalf("seq %s: the primary never got it", seq)
		}
		c, ok := copies[seq]
		if v.forged {
			if ok {
				t.Errorf("seq %s carried %s and was copied again; want it only forwarded", seq, "x-shadowplane-copy")
			}
			if got := p.Header.Get("x-shadowplane-copy"); got != "forged" {
				t.Errorf("primary seq %s: marker %q, want the request's own value", seq, got)
			}
			continue
		}
		if !ok {
			t.Fatalf("seq %s: no copy", seq)
		}
		// The primary sees the request as sent, whatever its policy.
		forged := ""
		if v.forged {
			forged = "forged"
		}
		expectHeaders(t, "primary "+v.path+" seq "+seq, p, map[string]string{
			"authorization":      "Bearer secret-" + seq,
			"cookie":             "session=s" + seq,
			"x-tenant":           "beta",
			"x-env":              "",
			"x-discount":         "",
			"x-shadowplane-copy": forged,
		})
		if p.Host != v.host {
			t.Errorf("primary %s seq %s: Host %q, want %q unchanged", v.path, seq, p.Host, v.host)
		}

		if strings.HasPrefix(v.path, "/edit/") {
			// Removed, set (a literal "%" stays literal), and marked;
			// Host kept.
			expectHeaders(t, "copy "+v.path+" seq "+seq, c, map[string]string{
				"authorization":      "",
				"cookie":             "",
				"x-tenant":           "copy-tenant",
				"x-env":              "staging",
				"x-discount":         "100%",
				"x-shadowplane-copy": marker,
			})
			if got := c.Header.Values("x-shadowplane-copy"); len(got) != 1 {
				t.Errorf("copy %s seq %s: marker values %q, want exactly one", v.path, seq, got)
			}
			if c.Host != v.host {
				t.Errorf("copy %s seq %s: Host %q, want %q unchanged (no hostSuffix)", v.path, seq, c.Host, v.host)
			}
			continue
		}
		// markCopies: false and no edits: the copy carries the request's
		// headers and no marker; hostSuffix puts -shadow after the host
		// name, before any port.
		expectHeaders(t, "copy "+v.path+" seq "+seq, c, map[string]string{
			"authorization":      "Bearer secret-" + seq,
			"cookie":             "session=s" + seq,
			"x-tenant":           "beta",
			"x-env":              "",
			"x-shadowplane-copy": "",
		})
		if _, present := c.Header["X-Shadowplane-Copy"]; present {
			t.Errorf("copy %s seq %s carries the marker header, want none with markCopies: false", v.path, seq)
		}
		want := "entrance.example.internal-shadow"
		if strings.HasSuffix(v.host, ":8443") {
			want += ":8443"
		}
		if c.Host != want {
			t.Errorf("copy %s seq %s: Host %q, want %q (hostSuffix)", v.path, seq, c.Host, want)
		}
	}
}

// bySeq indexes requests by their x-request-seq header; a seq seen twice
// is an error (one copy per request at 100 %).
func bySeq(t *testing.T, who string, reqs []harness.Request) map[string]harness.Request {
	t.Helper()
	out := make(map[string]harness.Request, len(reqs))
	for _, r := range reqs {
		seq := r.Header.Get("x-request-seq")
		if _, dup := out[seq]; dup {
			t.Errorf("%s got seq %q twice", who, seq)
		}
		out[seq] = r
	}
	return out
}

// expectHeaders checks header values; "" means the header is absent.
func expectHeaders(t *testing.T, what string, r harness.Request, want map[string]string) {
	t.Helper()
	for name, v := range want {
		got := r.Header.Values(name)
		switch {
		case v == "" && len(got) != 0:
			t.Errorf("%s: header %s = %q, want it absent", what, name, got)
		case v != "" && (len(got) != 1 || got[0] != v):
			t.Errorf("%s: header %s = %q, want %q", what, name, got, v)
		}
	}
}

// TestHygieneURLTargets: URL targets outside the cluster get copies with
// the URL's host[:port] as Host, by IP (static cluster) and by DNS name;
// an https target whose certificate no system CA signed gets no copy at all
// (verification is never weakened) and the primary does not notice; a
// target whose host --allow-url-target does not allow is rejected with a
// Warning Event that names the flag, and gets nothing; and loopback targets,
// by IP and by the name localhost, are refused by the deny list although the
// allowlist matches them, and get nothing.
func TestHygieneURLTargets(t *testing.T) {
	e := env(t)
	start := func(b *harness.Backend, err error) *harness.Backend {
		t.Helper()
		must(t, err)
		t.Cleanup(b.Stop)
		return b
	}
	byIP := start(harness.StartBackend("url-ip", e.endpointHost))
	byName := start(harness.StartBackend("url-dns", e.endpointHost))
	untrusted := start(harness.StartTLSBackend("url-tls", e.endpointHost))
	forbidden := start(harness.StartBackend("url-forbidden", e.endpointHost))
	loopback := start(harness.StartBackend("url-loopback", "127.0.0.1"))

	// Inside the tests' network namespace the only names that resolve are
	// loopback names, which the deny list refuses; a DNS server of the test
	// resolves these two to the test address for the sidecar.
	const dnsName, forbiddenName = "url-dns.shadowplane.test", "forbidden.shadowplane.test"
	dns, err := harness.StartDNS(map[string]string{dnsName: e.endpointHost, forbiddenName: e.endpointHost})
	must(t, err)
	t.Cleanup(dns.Stop)

	f := newMirrorFixture(t, fixtureOptions{
		allowedURLHosts: []string{"0.0.0.0/0", dnsName, "localhost"},
		dnsResolver:     dns.Addr,
	})
	f.applyPolicy(fmt.Sprintf(`policies:
- name: to-ip
  service: entrance
  match: {pathPrefix: /ip/}
  mirrors: [{url: "http://%[1]s:%[2]d/", name: ip, percent: 100}]
- name: to-dns
  service: entrance
  match: {pathPrefix: /dns/}
  mirrors: [{url: "http://%[3]s:%[4]d", name: dns, percent: 100}]
- name: to-tls
  service: entrance
  match: {pathPrefix: /tls/}
  mirrors: [{url: "https://%[1]s:%[5]d", name: tls, percent: 100}]
- name: to-forbidden
  service: entrance
  match: {pathPrefix: /forbidden/}
  mirrors: [{url: "http://%[6]s:%[7]d", name: forbidden, percent: 100}]
- name: to-loopback
  service: entrance
  match: {pathPrefix: /loopback/}
  mirrors: [{url: "http://127.0.0.1:%[8]d", name: loopback, percent: 100}]
- name: to-localhost
  service: entrance
  match: {pathPrefix: /localhost/}
  mirrors: [{url: "http://localhost:%[8]d", name: localhost, percent: 100}]
`, e.endpointHost, byIP.Port, dnsName, byName.Port, untrusted.Port, forbiddenName, forbidden.Port, loopback.Port))
	for _, k := range []string{"to-ip.ip", "to-dns.dns", "to-tls.tls"} {
		f.waitRuntime("shadowplane."+f.ns+"."+k, 1_000_000)
	}
	ipCluster := statnames.ShadowCluster(statnames.Mirror{Namespace: f.ns, Policy: "to-ip", Mirror: "ip"})
	dnsCluster := statnames.ShadowCluster(statnames.Mirror{Namespace: f.ns, Policy: "to-dns", Mirror: "dns"})
	tlsCluster := statnames.ShadowCluster(statnames.Mirror{Namespace: f.ns, Policy: "to-tls", Mirror: "tls"})
	for _, c := range []string{ipCluster, dnsCluster, tlsCluster} {
		f.waitClusterHosts(c, 1)
	}
	f.waitRouteMirrors(3)

	for _, r := range []struct{ policy, want string }{
		{"to-forbidden", "--allow-url-target=" + forbiddenName},
		{"to-forbidden", `url host "` + forbiddenName + `" is not allowed`},
		{"to-loopback", `url host "127.0.0.1" is refused by the deny list (loopback); the allowlist cannot open it`},
		{"to-localhost", `url host "localhost" is refused by the deny list (loopback: the name localhost`},
	} {
		if rejected := f.waitWarningEvent("PolicyRejected", r.policy); !strings.Contains(rejected, r.want) {
			t.Errorf("rejection event %q does not say %q", rejected, r.want)
		}
	}

	prefixes := []string{"/ip/", "/dns/", "/tls/", "/forbidden/", "/loopback/", "/localhost/"}
	const rounds = 20
	n := rounds * len(prefixes)
	res := harness.SendN(f.ctx, f.client, n, 8, func(ctx context.Context, i int) *http.Request {
		req := f.get(ctx, fmt.Sprintf("%sitem/%d?q=%d", prefixes[i%len(prefixes)], i, i))
		req.Host = "entrance.example.internal"
		req.Header.Set("x-request-seq", fmt.Sprint(i))
		return req
	})
	if res.Errors() != 0 {
		t.Fatalf("%d of %d primary requests failed; first: %s", res.Errors(), n, res.FirstError())
	}
	if got := f.primary.Count(); got != n {
		t.Errorf("primary got %d requests, want %d", got, n)
	}
	for _, p := range f.primary.Requests() {
		if p.Host != "entrance.example.internal" {
			t.Errorf("primary %s: Host %q, want entrance.example.internal unchanged", p.Path, p.Host)
		}
	}

	for _, target := range []struct {
		backend *harness.Backend
		prefix  string
		host    string
		policy  string
	}{
		{byIP, "/ip/", fmt.Sprintf("%s:%d", e.endpointHost, byIP.Port), "to-ip"},
		{byName, "/dns/", fmt.Sprintf("%s:%d", dnsName, byName.Port), "to-dns"},
	} {
		if got := target.backend.WaitCount(f.ctx, rounds, 300*time.Millisecond); got != rounds {
			t.Errorf("%s target got %d copies, want %d", target.prefix, got, rounds)
		}
		for _, c := range target.backend.Requests() {
			if !strings.HasPrefix(c.Path, target.prefix+"item/") || c.RawQuery == "" {
				t.Errorf("%s target got %s?%s, want the request's own path and query", target.prefix, c.Path, c.RawQuery)
			}
			if c.Host != target.host {
				t.Errorf("%s target: copy Host %q, want the URL's %q", target.prefix, c.Host, target.host)
			}
			if got := c.Header.Get("x-shadowplane-copy"); got != f.ns+"/"+target.policy {
				t.Errorf("%s target: marker %q, want %q", target.prefix, got, f.ns+"/"+target.policy)
			}
		}
	}

	// The copies to the untrusted https target were attempted and refused
	// at the TLS handshake, on Envoy's side (it never sent a request).
	tlsStats, err := f.sidecar.Stats(f.ctx, "^"+regexp.QuoteMeta("cluster."+tlsCluster+".")+`(ssl\.fail_verify_error|ssl\.connection_error|upstream_cx_connect_fail|upstream_rq_total)$`)
	must(t, err)
	t.Logf("untrusted https target: %v, handshake errors seen by the target: %d", tlsStats, untrusted.TLSHandshakeErrors())
	if got := untrusted.Count(); got != 0 {
		t.Errorf("the untrusted https target got %d requests, want 0", got)
	}
	if tlsStats["cluster."+tlsCluster+".ssl.fail_verify_error"] == 0 {
		t.Errorf("no copy to the untrusted https target failed certificate verification: %v", tlsStats)
	}
	if untrusted.TLSHandshakeErrors() == 0 {
		t.Errorf("the untrusted https target saw no failed handshake: copies were never attempted")
	}

	// Give any stray copy to the forbidden target time to arrive.
	if got := forbidden.WaitCount(f.ctx, 1, 500*time.Millisecond); got != 0 {
		t.Errorf("the target outside --allow-url-target got %d requests, want 0", got)
	}
	if got := loopback.WaitCount(f.ctx, 1, 100*time.Millisecond); got != 0 {
		t.Errorf("the loopback target on the deny list got %d requests, want 0", got)
	}
}

// waitWarningEvent waits for a Warning Event with reason on the standard
// policy ConfigMap whose message mentions text, and returns its message.
func (f *mirrorFixture) waitWarningEvent(reason, text string) string {
	f.t.Helper()
	var found string
	var seen []string
	err := harness.WaitUntil(f.ctx, 20*time.Second, func() (bool, error) {
		list, err := env(f.t).kube.Client.CoreV1().Events(f.ns).List(f.ctx, metav1.ListOptions{
			FieldSelector: "involvedObject.name=mirror-policies",
		})
		if err != nil {
			return false, err
		}
		seen = seen[:0]
		for _, ev := range list.Items {
			seen = append(seen, ev.Type+"/"+ev.Reason+": "+ev.Message)
			if ev.Type == corev1.EventTypeWarning && ev.Reason == reason && strings.Contains(ev.Message, text) {
				found = ev.Message
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		f.t.Fatalf("no Warning %s event mentioning %q on mirror-policies (events: %q): %v", reason, text, seen, err)
	}
	return found
}
