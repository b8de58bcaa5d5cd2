package xds

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"runtime"
	"slices"
	"sort"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	runtimev3 "github.com/envoyproxy/go-control-plane/envoy/service/runtime/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/stream/v3"
	"github.com/hashicorp/go-hclog"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/shadowplane/shadowplane/internal/contenthash"
	"github.com/shadowplane/shadowplane/translator"
)

// TestGroupCacheMatchesGoControlPlane drives groupCache and go-control-
// plane's ADS snapshot cache through the same random sequences of
// snapshots and state-of-the-world and delta requests, and requires the
// same answers from both: whether a request is answered at once or held,
// and each answer's version, resources (bytes), per-resource versions,
// removals and the returned-resources state it hands the server. The
// reference cache is what shadowplane used before groupCache.
func TestGroupCacheMatchesGoControlPlane(t *testing.T) {
	for seed := range uint64(300) {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { compareCaches(t, rand.New(rand.NewPCG(seed, 7))) })
	}
}

type cacheUnderTest struct {
	name        string
	setSnapshot func(*builtSnapshot) error
	watch       func(*cachev3.Request, cachev3.Subscription, chan cachev3.Response) (func(), error)
	deltaWatch  func(*cachev3.DeltaRequest, cachev3.Subscription, chan cachev3.DeltaResponse) (func(), error)
}

func compareCaches(t *testing.T, rng *rand.Rand) {
	ours := newGroupCache(context.Background(), groupHash{}, hclogAdapter{log: hclog.NewNullLogger()})
	ref := cachev3.NewSnapshotCache(true, groupHash{}, hclogAdapter{log: hclog.NewNullLogger()})
	node := shopNode("cache-test")
	key := groupHash{}.ID(node)
	caches := []cacheUnderTest{
		{"groupCache", func(b *builtSnapshot) error { return ours.SetSnapshot(context.Background(), key, b) }, ours.CreateWatch, ours.CreateDeltaWatch},
		{"go-control-plane", func(b *builtSnapshot) error { return ref.SetSnapshot(context.Background(), key, b.snapshot) }, ref.CreateWatch, ref.CreateDeltaWatch},
	}
	// One stream per cache, as the server keeps it: a channel, and per
	// type the subscription and the open watch's cancel.
	type streamState struct {
		sotw   chan cachev3.Response
		delta  chan cachev3.DeltaResponse
		subs   map[string]*stream.Subscription
		cancel map[string]func()
	}
	states := make([]*streamState, len(caches))
	for i := range states {
		states[i] = &streamState{sotw: make(chan cachev3.Response, 16), delta: make(chan cachev3.DeltaResponse, 16),
			subs: map[string]*stream.Subscription{}, cancel: map[string]func(){}}
	}
	var built *builtSnapshot
	var history []*builtSnapshot

	// drain compares what both caches sent since the last drain.
	drain := func(step string) {
		t.Helper()
		var got [2][]string
		for i, st := range states {
			var ranks []int
			for len(st.sotw) > 0 {
				r := <-st.sotw
				ranks = append(ranks, adsRank(r.GetRequest().GetTypeUrl()))
				got[i] = append(got[i], describeSotw(t, r))
				// As the server does: the stream now holds what was sent.
				sub := st.subs[r.GetRequest().GetTypeUrl()]
				sub.SetReturnedResources(maps.Clone(r.GetReturnedResources()))
				delete(st.cancel, r.GetRequest().GetTypeUrl())
			}
			for len(st.delta) > 0 {
				r := <-st.delta
				got[i] = append(got[i], describeDelta(t, r))
				sub := st.subs["delta:"+r.GetDeltaRequest().GetTypeUrl()]
				sub.SetReturnedResources(maps.Clone(r.GetNextVersionMap()))
				delete(st.cancel, "delta:"+r.GetDeltaRequest().GetTypeUrl())
			}
			if i == 0 && !slices.IsSorted(ranks) {
				t.Fatalf("%s: answers not in ADS order: type ranks %v", step, ranks)
			}
			sort.Strings(got[i]) // the order is checked above
		}
		if !slices.Equal(got[0], got[1]) {
			t.Fatalf("%s: %s sent\n%v\n%s sent\n%v", step, caches[0].name, got[0], caches[1].name, got[1])
		}
	}

	for step := range 40 {
		switch op := rng.IntN(3); {
		case op == 0 || built == nil:
			built = randomSnapshot(t, rng)
			history = append(history, built)
			for i, c := range caches {
				if err := c.setSnapshot(built); err != nil {
					t.Fatalf("%s SetSnapshot: %v", caches[i].name, err)
				}
			}
			drain(fmt.Sprintf("step %d: snapshot", step))
		case op == 1:
			typ := translator.ResourceTypes[rng.IntN(len(translator.ResourceTypes))].URL
			version := ""
			if rng.IntN(3) > 0 {
				version = history[rng.IntN(len(history))].versions[typ]
			}
			names := randomNames(rng, typ)
			for i, c := range caches {
				st := states[i]
				if cancel := st.cancel[typ]; cancel != nil {
					cancel()
				}
				sub, ok := st.subs[typ]
				if !ok {
					s := stream.NewSotwSubscription(names, true)
					sub = &s
					st.subs[typ] = sub
				} else {
					sub.SetResourceSubscription(names)
				}
				req := &cachev3.Request{Node: node, TypeUrl: typ, VersionInfo: version, ResourceNames: names}
				cancel, err := c.watch(req, *sub, st.sotw)
				if err != nil {
					t.Fatalf("%s CreateWatch: %v", c.name, err)
				}
				st.cancel[typ] = cancel
			}
			drain(fmt.Sprintf("step %d: sotw %s version %q names %v", step, typ, version, names))
		default:
			typ := translator.ResourceTypes[rng.IntN(len(translator.ResourceTypes))].URL
			subscribe := randomNames(rng, typ)
			nonce := ""
			if rng.IntN(2) == 0 {
				nonce = "1"
			}
			for i, c := range caches {
				st := states[i]
				if cancel := st.cancel["delta:"+typ]; cancel != nil {
					cancel()
				}
				sub, ok := st.subs["delta:"+typ]
				if !ok {
					s := stream.NewDeltaSubscription(subscribe, nil, nil, true)
					sub = &s
					st.subs["delta:"+typ] = sub
				} else {
					sub.UpdateResourceSubscriptions(subscribe, nil)
				}
				req := &cachev3.DeltaRequest{Node: node, TypeUrl: typ, ResourceNamesSubscribe: subscribe, ResponseNonce: nonce}
				cancel, err := c.deltaWatch(req, *sub, st.delta)
				if err != nil {
					t.Fatalf("%s CreateDeltaWatch: %v", c.name, err)
				}
				st.cancel["delta:"+typ] = cancel
			}
			drain(fmt.Sprintf("step %d: delta %s subscribe %v nonce %q", step, typ, subscribe, nonce))
		}
	}
}

// cacheTestNames are the names each type draws from.
var cacheTestNames = []string{"a", "b", "c"}

func randomNames(rng *rand.Rand, typ string) []string {
	if rng.IntN(3) == 0 {
		return nil // wildcard
	}
	var out []string
	for _, n := range cacheTestNames {
		if rng.IntN(2) == 0 {
			out = append(out, typ+"/"+n)
		}
	}
	if len(out) == 0 {
		out = append(out, typ+"/a")
	}
	return out
}

// randomSnapshot has, per type, a random subset of the names with random
// contents, versioned by content like the translator's output.
func randomSnapshot(t *testing.T, rng *rand.Rand) *builtSnapshot {
	b := &builtSnapshot{snapshot: &cachev3.Snapshot{}, versions: map[string]string{}, names: map[string][]string{}}
	for _, rt := range translator.ResourceTypes {
		var msgs []proto.Message
		for _, n := range cacheTestNames {
			if rng.IntN(3) == 0 {
				continue
			}
			msgs = append(msgs, randomResource(t, rt.URL, rt.URL+"/"+n, rng.IntN(2)))
		}
		version := contenthash.Messages(msgs)
		res := make([]types.Resource, len(msgs))
		for i, m := range msgs {
			res[i] = m
		}
		group := cachev3.NewResources(version, res)
		b.snapshot.Resources[cachev3.GetResponseType(rt.URL)] = group
		b.versions[rt.URL] = version
		names := slices.Collect(maps.Keys(group.Items))
		slices.Sort(names)
		b.names[rt.URL] = names
	}
	return b
}

func randomResource(t *testing.T, typ, name string, variant int) proto.Message {
	switch typ {
	case resource.ClusterType:
		return &clusterv3.Cluster{Name: name, AltStatName: fmt.Sprint(variant)}
	case resource.EndpointType:
		return &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: make([]*endpointv3.LocalityLbEndpoints, variant)}
	case resource.ListenerType:
		return &listenerv3.Listener{Name: name, StatPrefix: fmt.Sprint(variant)}
	case resource.RouteType:
		return &routev3.RouteConfiguration{Name: name, MostSpecificHeaderMutationsWins: variant == 1}
	case resource.RuntimeType:
		layer, _ := structpb.NewStruct(map[string]any{"k": variant})
		return &runtimev3.Runtime{Name: name, Layer: layer}
	case resource.SecretType:
		return &tlsv3.Secret{Name: name, Type: &tlsv3.Secret_GenericSecret{GenericSecret: &tlsv3.GenericSecret{Secret: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: fmt.Sprint(variant)}}}}}
	}
	t.Fatalf("no resource for %s", typ)
	return nil
}

func describeSotw(t *testing.T, r cachev3.Response) string {
	out, err := r.GetDiscoveryResponse()
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]string{}
	for _, a := range out.Resources {
		name, value := decodeName(t, out.TypeUrl, a.Value)
		if a.TypeUrl != out.TypeUrl {
			t.Errorf("resource %s has type %s in a %s response", name, a.TypeUrl, out.TypeUrl)
		}
		byName[name] = value
	}
	return fmt.Sprintf("sotw %s version=%s resources=%v returned=%v", out.TypeUrl, out.VersionInfo, byName, r.GetReturnedResources())
}

func describeDelta(t *testing.T, r cachev3.DeltaResponse) string {
	out, err := r.GetDeltaDiscoveryResponse()
	if err != nil {
		t.Fatal(err)
	}
	byName := map[string]string{}
	for _, res := range out.Resources {
		name, value := decodeName(t, out.TypeUrl, res.Resource.Value)
		if name != res.Name {
			t.Errorf("delta resource named %q holds %q", res.Name, name)
		}
		byName[name] = res.Version + ":" + value
	}
	removed := slices.Clone(out.RemovedResources)
	slices.Sort(removed)
	return fmt.Sprintf("delta %s version=%s resources=%v removed=%v next=%v", out.TypeUrl, out.SystemVersionInfo, byName, removed, r.GetNextVersionMap())
}

// decodeName decodes an encoded resource and returns its name and a
// fingerprint of its bytes.
func decodeName(t *testing.T, typ string, b []byte) (string, string) {
	var m proto.Message
	switch typ {
	case resource.ClusterType:
		m = &clusterv3.Cluster{}
	case resource.EndpointType:
		m = &endpointv3.ClusterLoadAssignment{}
	case resource.ListenerType:
		m = &listenerv3.Listener{}
	case resource.RouteType:
		m = &routev3.RouteConfiguration{}
	case resource.RuntimeType:
		m = &runtimev3.Runtime{}
	case resource.SecretType:
		m = &tlsv3.Secret{}
	default:
		t.Fatalf("unexpected type %s", typ)
	}
	if err := proto.Unmarshal(b, m); err != nil {
		t.Fatal(err)
	}
	return cachev3.GetResourceName(m), cachev3.HashResource(b)[:12]
}

type countingHash struct{ calls *int }

func (h countingHash) ID(n *corev3.Node) string {
	*h.calls++
	return groupHash{}.ID(n)
}

// TestGroupCacheRemembersNodeKeys: a node's group is read from its metadata
// once, and forgotten once the node is garbage collected.
func TestGroupCacheRemembersNodeKeys(t *testing.T) {
	calls := 0
	c := newGroupCache(context.Background(), countingHash{&calls}, hclogAdapter{log: hclog.NewNullLogger()})
	node := shopNode("remembered")
	for range 3 {
		if got, want := c.keyOf(node), testGroup.Key(); got != want {
			t.Fatalf("keyOf = %q, want %q", got, want)
		}
	}
	if calls != 1 {
		t.Errorf("hashed the node %d times, want 1", calls)
	}
	other := shopNode("other")
	c.keyOf(other)
	runtime.KeepAlive(other)
	node, other = nil, nil
	for i := 0; ; i++ {
		runtime.GC()
		c.mu.Lock()
		n := len(c.keys)
		c.mu.Unlock()
		if n == 0 {
			break
		}
		if i == 100 {
			t.Fatalf("%d node keys remain after their nodes were collected", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// hasSnapshot reports whether a group has a snapshot.
func (c *groupCache) hasSnapshot(key string) bool {
	c.mu.Lock()
	g := c.groups[key]
	c.mu.Unlock()
	if g == nil {
		return false
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.snapshot != nil
}

// TestGroupCacheSendEndsWithServer: were a stream's channel ever full, a
// send would wait for it, not forever: it ends when the server stops.
func TestGroupCacheSendEndsWithServer(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	c := newGroupCache(ctx, groupHash{}, hclogAdapter{log: hclog.NewNullLogger()})
	rng := rand.New(rand.NewPCG(1, 2))
	full := make(chan cachev3.Response) // no room
	sub := stream.NewSotwSubscription(nil, true)
	if _, err := c.CreateWatch(&cachev3.Request{Node: shopNode("stuck"), TypeUrl: resource.ClusterType}, sub, full); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- c.SetSnapshot(ctx, testGroup.Key(), randomSnapshot(t, rng)) }()
	select {
	case <-done:
		t.Fatal("SetSnapshot returned although the stream could take nothing")
	case <-time.After(50 * time.Millisecond):
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("SetSnapshot still blocked after the server stopped")
	}
}
