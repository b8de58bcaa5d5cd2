package xds

import (
	"context"
	"fmt"
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"

	"github.com/shadowplane/shadowplane/internal/kubeauth"
	"github.com/shadowplane/shadowplane/internal/testtools/adsclient"
	"github.com/shadowplane/shadowplane/nodemeta"
)

// withTestAuth verifies identities with fixed tokens: "shop-token" is pod
// entrance-1 of namespace shop, "bank-token" pod vault-1 of namespace bank.
// Claims are checked by the real ClaimVerifier against fake objects.
func withTestAuth() harnessOption {
	ids := map[string]kubeauth.Identity{
		"shop-token": {Namespace: "shop", ServiceAccount: "entrance", PodName: "entrance-1", PodUID: "u1"},
		"bank-token": {Namespace: "bank", ServiceAccount: "vault", PodName: "vault-1", PodUID: "u2"},
	}
	pod := func(ns, name, uid, sa, app string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name, UID: types.UID(uid), Labels: map[string]string{"app": app}},
			Spec: corev1.PodSpec{ServiceAccountName: sa}}
	}
	svc := func(ns, name string) *corev1.Service {
		return &corev1.Service{ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: name}, Spec: corev1.ServiceSpec{Selector: map[string]string{"app": name}}}
	}
	client := fake.NewClientset(pod("shop", "entrance-1", "u1", "entrance", "entrance"), pod("bank", "vault-1", "u2", "vault", "vault"),
		svc("shop", "entrance"), svc("bank", "vault"))
	verifier := kubeauth.NewClaimVerifier(client)
	return func(o *Options) {
		o.Auth = &Auth{
			Authenticate: func(_ context.Context, token string) (kubeauth.Identity, error) {
				id, ok := ids[token]
				if !ok {
					return kubeauth.Identity{}, fmt.Errorf("%w: unknown token", kubeauth.ErrUnauthenticated)
				}
				return id, nil
			},
			Verify: verifier.Verify,
		}
	}
}

func codeOf(err error) codes.Code { return status.Code(err) }

func TestAuthRefusesStreamsWithoutIdentity(t *testing.T) {
	h := newHarness(t, nil, withTestAuth())
	h.srv.SetWorld(testWorld(250000))
	node := shopNode("entrance-1")

	for name, conn := range map[string]*grpc.ClientConn{"no token": h.conn, "unknown token": h.connWithToken("forged")} {
		c := adsclient.NewSotW(t, conn, node, nil)
		c.SubscribeAll()
		if err := c.Closed(); codeOf(err) != codes.Unauthenticated {
			t.Errorf("%s: stream ended with %v, want Unauthenticated", name, err)
		}
	}
	if got := h.counterValue("shadowplane_xds_refused_streams_total", "reason", refusedUnauthenticated); got != 2 {
		t.Errorf("refused (unauthenticated) = %v, want 2", got)
	}
	if got := h.gaugeValue("shadowplane_xds_insecure"); got != 0 {
		t.Errorf("shadowplane_xds_insecure = %v with Auth set, want 0", got)
	}

	// The right token for the node it names is served.
	c := adsclient.NewSotW(t, h.connWithToken("shop-token"), node, nil)
	c.SubscribeAll()
	c.Collect(adsclient.TypeNames()...)
}

func TestAuthRefusesForeignClaimsBeforeAnyLookup(t *testing.T) {
	h := newHarness(t, nil, withTestAuth())
	h.srv.SetWorld(testWorld(250000))
	bank := h.connWithToken("bank-token")
	tests := []struct {
		name string
		node *corev3.Node
	}{
		{"namespace B with namespace A's identity", shopNode("vault-1")},
		{"another pod's node id", bankNode("vault-2", "vault")},
		{"a Service that does not select the pod", bankNode("vault-1", "ledger")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := adsclient.NewSotW(t, bank, tc.node, nil)
			c.SubscribeAll()
			if err := c.Closed(); codeOf(err) != codes.PermissionDenied {
				t.Fatalf("stream ended with %v, want PermissionDenied", err)
			}
		})
	}
	// Nothing was made or looked up for the claimed groups: the refused
	// client learned nothing, and the server holds nothing for it.
	if groups := h.srv.Snapshots(); len(groups) != 0 {
		t.Errorf("refused claims left snapshots: %v", groups)
	}
	if got := h.counterValue("shadowplane_xds_refused_streams_total", "reason", refusedPermissionDenied); got != float64(len(tests)) {
		t.Errorf("refused (permission denied) = %v, want %d", got, len(tests))
	}
}

func TestAuthRefusesANodeChangeMidStream(t *testing.T) {
	h := newHarness(t, nil, withTestAuth())
	h.srv.SetWorld(testWorld(250000))
	c := adsclient.NewSotW(t, h.connWithToken("shop-token"), shopNode("entrance-1"), nil)
	c.SubscribeAll()
	c.Collect(adsclient.TypeNames()...)
	// A later request naming another node (go-control-plane would adopt it).
	other := shopNode("entrance-1")
	other.Metadata.Fields[nodemeta.KeyService] = structpb.NewStringValue("payments")
	c.SendRaw(&discoveryv3.DiscoveryRequest{Node: other, TypeUrl: resourcev3.RuntimeType})
	if err := c.Closed(); codeOf(err) != codes.PermissionDenied {
		t.Fatalf("stream ended with %v, want PermissionDenied", err)
	}
	if got := h.counterValue("shadowplane_xds_refused_streams_total", "reason", refusedNodeChanged); got != 1 {
		t.Errorf("refused (node changed) = %v, want 1", got)
	}
}

func TestInsecureServerSaysSo(t *testing.T) {
	h := newHarness(t, nil)
	if got := h.gaugeValue("shadowplane_xds_insecure"); got != 1 {
		t.Errorf("shadowplane_xds_insecure = %v without Auth, want 1", got)
	}
}

func shopNode(id string) *corev3.Node {
	return nodemeta.Metadata{NodeID: id, Namespace: "shop", Service: "entrance", Ports: testGroup.Ports}.Node()
}

func bankNode(id, service string) *corev3.Node {
	return nodemeta.Metadata{NodeID: id, Namespace: "bank", Service: service, Ports: testGroup.Ports}.Node()
}
