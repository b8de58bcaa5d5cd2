package controlplane

import (
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"k8s.io/client-go/tools/record"

	"github.com/shadowplane/shadowplane/internal/copystats"
	"github.com/shadowplane/shadowplane/policy"
	"github.com/shadowplane/shadowplane/statnames"
	"github.com/shadowplane/shadowplane/translator"
)

func alarmWorld() *translator.World {
	url := &policy.URLTarget{Raw: "https://gw.example:8443", Scheme: "https", Host: "gw.example", Port: 8443}
	return &translator.World{Policies: []*policy.Policy{{
		Namespace: "shop", Name: "p", Source: policy.Source{ConfigMap: "mirror-policies", Key: "policies.yaml"},
		Mirrors: []policy.Mirror{
			{Name: "wrong-ca", URL: url, TLS: &policy.MirrorTLS{SNI: "gateway.example", CAConfigMap: "stranger-ca", CAKey: "ca.crt", ClientCertSecret: "client"}},
			{Name: "no-cert", URL: url, TLS: &policy.MirrorTLS{CAConfigMap: "gw-ca", CAKey: "ca.crt"}},
			{Name: "svc", Service: "entrance-shadow"},
		},
	}}}
}

// TestTLSAlarm: growing TLS failures of a mirror give one Warning Event
// naming the policy, the mirror, the URL and what failed; a mirror that
// keeps failing gets the next after tlsAlarmRepeat, one that recovered
// (handshakes succeed, none failed for tlsRecoveryQuiet) at once; a follower records none, and the first check after it leads does.
func TestTLSAlarm(t *testing.T) {
	wrongCA := statnames.Mirror{Namespace: "shop", Policy: "p", Mirror: "wrong-ca"}
	noCert := statnames.Mirror{Namespace: "shop", Policy: "p", Mirror: "no-cert"}
	counts := map[statnames.Mirror]copystats.TLSCounts{}
	leader := false
	recorder := record.NewFakeRecorder(100)
	a := newTLSAlarm(func() map[statnames.Mirror]copystats.TLSCounts {
		out := map[statnames.Mirror]copystats.TLSCounts{}
		for k, v := range counts {
			out[k] = v
		}
		return out
	}, func() bool { return leader }, recorder, hclog.NewNullLogger())
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	a.now = func() time.Time { return now }
	a.setWorld(alarmWorld())

	events := func() []string {
		var out []string
		for {
			select {
			case e := <-recorder.Events:
				out = append(out, e)
			default:
				return out
			}
		}
	}
	step := func(what string, d time.Duration, set func(), want ...string) {
		t.Helper()
		now = now.Add(d)
		set()
		a.check()
		got := events()
		if len(got) != len(want) {
			t.Fatalf("%s: events %q, want %d containing %q", what, got, len(want), want)
		}
		for i, w := range want {
			if !strings.HasPrefix(got[i], "Warning "+ReasonMirrorTLSHandshakeFailing+" ") || !strings.Contains(got[i], w) {
				t.Errorf("%s: event %q, want a Warning %s containing %q", what, got[i], ReasonMirrorTLSHandshakeFailing, w)
			}
		}
	}
	fail := func(m statnames.Mirror, verify, handshake, ok float64) func() {
		return func() {
			c := counts[m]
			c.VerifyFailures += verify
			c.HandshakeFailures += handshake
			c.Handshakes += ok
			counts[m] = c
		}
	}
	nothing := func() {}

	step("follower", 0, fail(wrongCA, 3, 0, 0))
	leader = true
	step("no growth since", time.Second, nothing)
	step("leader, growth", time.Second, fail(wrongCA, 2, 0, 0),
		`policy "p" mirror "wrong-ca" (https://gw.example:8443): 2 TLS connections to the target failed since the last check: Envoy could not verify the target's certificate with the CA in ConfigMap "shop/stranger-ca" key "ca.crt": it is not signed by that CA, or is not for the name "gateway.example"; no copies reach this mirror until it is fixed`)
	step("still failing, within the repeat time", time.Minute, fail(wrongCA, 5, 0, 0))
	step("still failing, past the repeat time", tlsAlarmRepeat, fail(wrongCA, 1, 0, 0), "Envoy could not verify")
	step("handshakes succeed right after a failure", time.Second, fail(wrongCA, 0, 0, 4))
	step("failing again, not recovered", time.Second, fail(wrongCA, 1, 0, 0))
	step("recovered: handshakes succeed, none failed for a while", tlsRecoveryQuiet, fail(wrongCA, 0, 0, 4))
	step("failing again after recovering", time.Second, fail(wrongCA, 1, 0, 0), "Envoy could not verify")
	step("no client certificate", time.Second, fail(noCert, 0, 7, 0),
		`policy "p" mirror "no-cert" (https://gw.example:8443): 7 TLS connections to the target failed since the last check: the TLS handshake with the target failed: it may require a client certificate, and this mirror sends none`)
	step("the sink forgot the mirror", time.Second, func() {
		delete(counts, wrongCA) // the sink forgot it: state starts afresh
	})
	step("counted anew, a refused client certificate", time.Second, fail(wrongCA, 0, 1, 0), `it may not accept the client certificate from Secret "shop/client"`)
	a.setWorld(&translator.World{})
	step("mirror no longer in force", tlsAlarmRepeat, fail(noCert, 0, 1, 0))
}
