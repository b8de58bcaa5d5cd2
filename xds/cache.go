package xds

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"weak"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/shadowplane/shadowplane/translator"
)

// groupCache is the xDS cache: the latest snapshot of each node group and
// the open watches of its streams. It answers exactly when go-control-plane's
// ADS snapshot cache would (same versions, same rules for when a request
// is answered or held, types answered in ADS order), but each resource is
// marshalled once, when its group's snapshot is set, and the encoded
// resource is shared by every stream of the group. go-control-plane's
// cache marshals every resource again for every response on every stream:
// with ten thousand sidecars that was a tenth of the control plane's CPU
// while they connected, and all of the serialization of a push.
type groupCache struct {
	hash cachev3.NodeHash
	log  interface{ Warnf(string, ...any) }
	// done ends a send to a stream's channel that would block: the server
	// is stopping. (It never blocks otherwise: see respond.)
	done <-chan struct{}

	mu     sync.Mutex // guards groups, nextID and keys
	groups map[string]*cacheGroup
	nextID int64
	// keys remembers the group key of each node a stream names: go-control-
	// plane passes a stream's first node with every later request, and
	// reading the group from its metadata on every request and ACK was 5 %
	// of the CPU of ten thousand sidecars connecting. Entries go when their
	// node is garbage collected.
	keys map[weak.Pointer[corev3.Node]]string
}

// cacheGroup is one node group's snapshot and open watches.
type cacheGroup struct {
	mu       sync.Mutex
	snapshot *encodedSnapshot // nil until the first SetSnapshot
	sotw     map[int64]sotwWatch
	delta    map[int64]deltaWatch
}

type sotwWatch struct {
	rank    int // adsRank of the type
	request *discoveryv3.DiscoveryRequest
	sub     cachev3.Subscription
	out     chan cachev3.Response
}

type deltaWatch struct {
	rank    int
	request *discoveryv3.DeltaDiscoveryRequest
	sub     cachev3.Subscription
	out     chan cachev3.DeltaResponse
}

// encodedSnapshot is a snapshot with every resource marshalled, by type URL.
type encodedSnapshot struct {
	types map[string]*encodedType
}

// encodedType is one type's resources, marshalled. Nothing in it is
// modified once built: responses on many streams share it.
type encodedType struct {
	version string
	names   []string // sorted
	byName  map[string]*encodedResource
	// all is every resource in name order: the body of a wildcard answer.
	all []*anypb.Any
}

type encodedResource struct {
	any *anypb.Any
	// delta is the resource as delta xDS sends it, with go-control-plane's
	// per-resource version (the SHA-256 of the encoding), so replicas and
	// releases agree on it.
	delta *discoveryv3.Resource
}

func newGroupCache(ctx context.Context, hash cachev3.NodeHash, log interface{ Warnf(string, ...any) }) *groupCache {
	return &groupCache{hash: hash, log: log, done: ctx.Done(), groups: map[string]*cacheGroup{}, keys: map[weak.Pointer[corev3.Node]]string{}}
}

// keyOf is the group key of a node (hash.ID), remembered by node. Nodes
// are never modified once received.
func (c *groupCache) keyOf(node *corev3.Node) string {
	if node == nil {
		return c.hash.ID(node)
	}
	wp := weak.Make(node)
	c.mu.Lock()
	key, ok := c.keys[wp]
	c.mu.Unlock()
	if ok {
		return key
	}
	key = c.hash.ID(node)
	c.mu.Lock()
	if _, ok := c.keys[wp]; !ok {
		c.keys[wp] = key
		runtime.AddCleanup(node, c.forgetNode, wp)
	}
	c.mu.Unlock()
	return key
}

func (c *groupCache) forgetNode(wp weak.Pointer[corev3.Node]) {
	c.mu.Lock()
	delete(c.keys, wp)
	c.mu.Unlock()
}

// encodeSnapshot marshals the resources of built, reusing the encoding of
// every type whose version equals the group's previous snapshot's (the
// translator's versions are content hashes).
func encodeSnapshot(built *builtSnapshot, previous *encodedSnapshot) (*encodedSnapshot, error) {
	out := &encodedSnapshot{types: make(map[string]*encodedType, len(translator.ResourceTypes))}
	for _, t := range translator.ResourceTypes {
		version := built.versions[t.URL]
		if previous != nil {
			if prev := previous.types[t.URL]; prev != nil && prev.version == version {
				out.types[t.URL] = prev
				continue
			}
		}
		items := built.snapshot.Resources[cachev3.GetResponseType(t.URL)].Items
		et := &encodedType{version: version, names: built.names[t.URL], byName: make(map[string]*encodedResource, len(items))}
		for _, name := range et.names {
			b, err := cachev3.MarshalResource(items[name].Resource)
			if err != nil {
				return nil, fmt.Errorf("marshal %s %q: %w", t.Name, name, err)
			}
			a := &anypb.Any{TypeUrl: t.URL, Value: b}
			et.byName[name] = &encodedResource{any: a, delta: &discoveryv3.Resource{Name: name, Version: cachev3.HashResource(b), Resource: a}}
			et.all = append(et.all, a)
		}
		out.types[t.URL] = et
	}
	return out, nil
}

// group returns the state of a node group, creating it.
func (c *groupCache) group(key string) *cacheGroup {
	c.mu.Lock()
	defer c.mu.Unlock()
	g := c.groups[key]
	if g == nil {
		g = &cacheGroup{sotw: map[int64]sotwWatch{}, delta: map[int64]deltaWatch{}}
		c.groups[key] = g
	}
	return g
}

func (c *groupCache) newID() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.nextID++
	return c.nextID
}

// SetSnapshot makes built the group's snapshot and answers the open watches
// it changes, in ADS order. The previous snapshot's encodings of unchanged
// types are kept.
func (c *groupCache) SetSnapshot(_ context.Context, key string, built *builtSnapshot) error {
	g := c.group(key)
	g.mu.Lock()
	defer g.mu.Unlock()
	snap, err := encodeSnapshot(built, g.snapshot)
	if err != nil {
		return err
	}
	g.snapshot = snap

	for _, id := range orderedWatches(g.sotw, func(w sotwWatch) int { return w.rank }) {
		w := g.sotw[id]
		t := snap.types[w.request.GetTypeUrl()]
		if t.versionOrEmpty() == w.request.GetVersionInfo() {
			continue
		}
		// Answered or, when the request does not name every resource,
		// dropped: Envoy asks again once it knows the new names.
		c.respond(w, t)
		delete(g.sotw, id)
	}
	for _, id := range orderedWatches(g.delta, func(w deltaWatch) int { return w.rank }) {
		w := g.delta[id]
		if c.respondDelta(w, snap.types[w.request.GetTypeUrl()]) {
			delete(g.delta, id)
		}
	}
	return nil
}

// ClearSnapshot forgets a group, its snapshot and its watches.
func (c *groupCache) ClearSnapshot(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.groups, key)
}

// CreateWatch answers a state-of-the-world request at once when the
// client's version is not the snapshot's, or it subscribes to a resource
// it has not been sent; otherwise it holds the request until a snapshot
// changes the type's version.
func (c *groupCache) CreateWatch(request *cachev3.Request, sub cachev3.Subscription, out chan cachev3.Response) (func(), error) {
	g := c.group(c.keyOf(request.GetNode()))
	g.mu.Lock()
	defer g.mu.Unlock()

	w := sotwWatch{rank: adsRank(request.GetTypeUrl()), request: request, sub: sub, out: out}
	if g.snapshot != nil {
		t := g.snapshot.types[request.GetTypeUrl()]
		if t.versionOrEmpty() != request.GetVersionInfo() || t.unsent(sub) {
			c.respond(w, t)
			return func() {}, nil
		}
	}
	id := c.newID()
	g.sotw[id] = w
	return func() {
		g.mu.Lock()
		delete(g.sotw, id)
		g.mu.Unlock()
	}, nil
}

// unsent reports whether sub is subscribed to a resource of t it has not
// been sent (all of t for a wildcard subscription).
func (t *encodedType) unsent(sub cachev3.Subscription) bool {
	if t == nil {
		return false
	}
	known := sub.ReturnedResources()
	if sub.IsWildcard() {
		for _, name := range t.names {
			if _, ok := known[name]; !ok {
				return true
			}
		}
		return false
	}
	for name := range sub.SubscribedResources() {
		if _, ok := known[name]; !ok {
			if _, ok := t.byName[name]; ok {
				return true
			}
		}
	}
	return false
}

func (t *encodedType) versionOrEmpty() string {
	if t == nil {
		return ""
	}
	return t.version
}

// respond sends t to a state-of-the-world watch. As go-control-plane's ADS
// cache does, a request that names resources gets nothing unless it names
// every resource of the type: Envoy would otherwise apply a listener before
// it asked for its routes.
func (c *groupCache) respond(w sotwWatch, t *encodedType) {
	resp := &sotwResponse{request: w.request}
	if t == nil {
		t = &encodedType{}
	}
	resp.version = t.version
	if names := w.request.GetResourceNames(); len(names) != 0 {
		requested := make(map[string]bool, len(names))
		for _, n := range names {
			requested[n] = true
		}
		for _, n := range t.names {
			if !requested[n] {
				c.log.Warnf("ADS mode: not responding to request %s %v: %q not listed", w.request.GetTypeUrl(), names, n)
				return
			}
		}
		for _, n := range t.names {
			resp.resources = append(resp.resources, t.byName[n].any)
		}
	} else {
		resp.resources = t.all // shared, never modified
	}
	resp.returned = make(map[string]string, len(t.names))
	for _, n := range t.names {
		resp.returned[n] = t.version
	}
	send(c.done, w.out, cachev3.Response(resp))
}

// send puts a response on a stream's channel. go-control-plane's ADS
// servers give each stream a channel with room for a response of every
// type, and a stream has at most one watch per type (the server drops a
// type's queued response before it opens the type's next watch), so this
// does not block; were that to change, the send would wait for the stream,
// as go-control-plane's cache does, until the server stops.
func send[R any](done <-chan struct{}, out chan R, resp R) {
	select {
	case out <- resp:
	case <-done:
	}
}

// CreateDeltaWatch answers a delta request at once with what changed since
// what the client holds, or holds it until a snapshot changes something it
// subscribes to.
func (c *groupCache) CreateDeltaWatch(request *cachev3.DeltaRequest, sub cachev3.Subscription, out chan cachev3.DeltaResponse) (func(), error) {
	g := c.group(c.keyOf(request.GetNode()))
	g.mu.Lock()
	defer g.mu.Unlock()

	w := deltaWatch{rank: adsRank(request.GetTypeUrl()), request: request, sub: sub, out: out}
	if g.snapshot != nil && c.respondDelta(w, g.snapshot.types[request.GetTypeUrl()]) {
		return nil, nil
	}
	id := c.newID()
	g.delta[id] = w
	return func() {
		g.mu.Lock()
		delete(g.delta, id)
		g.mu.Unlock()
	}, nil
}

// respondDelta sends a delta watch the resources of t whose version differs
// from what it holds and the removals, and reports whether it sent
// anything. The first wildcard request of a stream is answered even when
// empty, or Envoy would not finish initializing.
func (c *groupCache) respondDelta(w deltaWatch, t *encodedType) bool {
	if t == nil {
		t = &encodedType{}
	}
	resp := &deltaResponse{request: w.request, version: t.version}
	returned := w.sub.ReturnedResources()
	if w.sub.IsWildcard() {
		resp.next = make(map[string]string, len(t.names))
		for _, n := range t.names {
			r := t.byName[n]
			resp.next[n] = r.delta.Version
			if prev, ok := returned[n]; !ok || prev != r.delta.Version {
				resp.resources = append(resp.resources, r.delta)
			}
		}
		for n := range returned {
			if _, ok := t.byName[n]; !ok {
				resp.removed = append(resp.removed, n)
			}
		}
	} else {
		subscribed := w.sub.SubscribedResources()
		resp.next = make(map[string]string, len(subscribed))
		for n := range subscribed {
			prev, known := returned[n]
			if r, ok := t.byName[n]; ok {
				if prev != r.delta.Version {
					resp.resources = append(resp.resources, r.delta)
				}
				resp.next[n] = r.delta.Version
			} else if known {
				resp.removed = append(resp.removed, n)
			}
		}
		slices.SortFunc(resp.resources, func(a, b *discoveryv3.Resource) int { return strings.Compare(a.Name, b.Name) })
	}
	slices.Sort(resp.removed)
	if len(resp.resources) == 0 && len(resp.removed) == 0 && (!w.sub.IsWildcard() || w.request.GetResponseNonce() != "") {
		return false
	}
	send(c.done, w.out, cachev3.DeltaResponse(resp))
	return true
}

// Fetch refuses: shadowplane serves ADS streams only (callbacks refuse REST
// fetches before they reach the cache).
func (c *groupCache) Fetch(context.Context, *cachev3.Request) (cachev3.Response, error) {
	return nil, errors.New("shadowplane serves xDS over ADS streams only")
}

// orderedWatches lists watch IDs in ADS order of their type, then by ID.
func orderedWatches[W any](watches map[int64]W, rank func(W) int) []int64 {
	ids := make([]int64, 0, len(watches))
	for id := range watches {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b int64) int {
		return cmp.Or(cmp.Compare(rank(watches[a]), rank(watches[b])), cmp.Compare(a, b))
	})
	return ids
}

// adsRank orders types as go-control-plane's ordered ADS does: clusters,
// endpoints, listeners, routes, ..., runtime.
func adsRank(typeURL string) int { return int(cachev3.GetResponseType(typeURL)) }

// sotwResponse is a state-of-the-world answer to one stream. Its resources
// are shared with every other stream of the group; the DiscoveryResponse
// is built per call because the server stamps its nonce on it.
type sotwResponse struct {
	request   *discoveryv3.DiscoveryRequest
	version   string
	resources []*anypb.Any
	returned  map[string]string
}

func (r *sotwResponse) GetDiscoveryResponse() (*discoveryv3.DiscoveryResponse, error) {
	return &discoveryv3.DiscoveryResponse{VersionInfo: r.version, Resources: r.resources, TypeUrl: r.request.GetTypeUrl()}, nil
}
func (r *sotwResponse) GetRequest() *discoveryv3.DiscoveryRequest { return r.request }
func (r *sotwResponse) GetVersion() (string, error)               { return r.version, nil }
func (r *sotwResponse) GetResponseVersion() string                { return r.version }
func (r *sotwResponse) GetReturnedResources() map[string]string   { return r.returned }
func (r *sotwResponse) GetContext() context.Context               { return context.Background() }

// deltaResponse is a delta answer to one stream; its resources are shared.
type deltaResponse struct {
	request   *discoveryv3.DeltaDiscoveryRequest
	version   string
	resources []*discoveryv3.Resource
	removed   []string
	next      map[string]string
}

func (r *deltaResponse) GetDeltaDiscoveryResponse() (*discoveryv3.DeltaDiscoveryResponse, error) {
	return &discoveryv3.DeltaDiscoveryResponse{
		SystemVersionInfo: r.version,
		Resources:         r.resources,
		RemovedResources:  r.removed,
		TypeUrl:           r.request.GetTypeUrl(),
	}, nil
}
func (r *deltaResponse) GetDeltaRequest() *discoveryv3.DeltaDiscoveryRequest { return r.request }
func (r *deltaResponse) GetSystemVersion() (string, error)                   { return r.version, nil }
func (r *deltaResponse) GetResponseVersion() string                          { return r.version }
func (r *deltaResponse) GetNextVersionMap() map[string]string                { return r.next }
func (r *deltaResponse) GetReturnedResources() map[string]string             { return r.next }
func (r *deltaResponse) GetContext() context.Context                         { return context.Background() }
