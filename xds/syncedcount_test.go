package xds

import (
	"context"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	rpcstatus "google.golang.org/genproto/googleapis/rpc/status"

	"github.com/shadowplane/shadowplane/translator"
)

// TestSyncedProxiesFollowsEveryChange drives the stream callbacks, World
// changes and sweeps in random orders and checks, after every step, that
// the counts SyncedProxies keeps per group equal a count over every
// stream's type states (what SyncedProxies computed before it kept counts).
func TestSyncedProxiesFollowsEveryChange(t *testing.T) {
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 1))
		s := New(Options{})
		s.SetWorld(testWorld(250000, "10.1.0.1"))
		types := []string{}
		for _, rt := range translator.ResourceTypes {
			types = append(types, rt.URL)
		}
		var open []streamKey
		nonces := map[streamKey]int{}
		lastSent := map[[2]any]string{} // stream, type → nonce
		ppm := uint32(250000)
		for step := range 2000 {
			switch op := rng.IntN(100); {
			case op < 10 || len(open) == 0: // a stream opens and identifies
				key := streamKey{delta: rng.IntN(2) == 0, id: int64(step)}
				s.openStream(context.Background(), key)
				if err := s.identifyStream(key, sidecarNode("node-"+strconv.Itoa(step))); err != nil {
					t.Fatal(err)
				}
				open = append(open, key)
			case op < 15: // a stream closes
				i := rng.IntN(len(open))
				s.closeStream(open[i])
				open = append(open[:i], open[i+1:]...)
			case op < 45: // a response of the current or an old version
				key, typeURL := open[rng.IntN(len(open))], types[rng.IntN(len(types))]
				version := "old"
				if v := s.Snapshots()[testGroup.Key()].Types; rng.IntN(4) > 0 && v != nil {
					if rt, ok := translator.ResourceTypeOf(typeURL); ok {
						version = v[rt.Name].Version
					}
				}
				nonces[key]++
				nonce := strconv.Itoa(nonces[key])
				lastSent[[2]any{key, typeURL}] = nonce
				s.recordResponse(key, typeURL, nonce, version)
			case op < 85: // an ACK, or now and then a NACK, of the last response
				key, typeURL := open[rng.IntN(len(open))], types[rng.IntN(len(types))]
				nonce := lastSent[[2]any{key, typeURL}]
				var detail *rpcstatus.Status
				if rng.IntN(10) == 0 {
					detail = &rpcstatus.Status{Message: "rejected"}
				}
				acked := ""
				if !key.delta {
					acked = s.streams[key].typeState(typeURL).sent
				}
				s.recordRequest(key, typeURL, nonce, acked, detail)
			case op < 95: // the World changes
				ppm = 10000 + uint32(rng.IntN(5))*10000
				s.SetWorld(testWorld(ppm, "10.1.0.1"))
			default: // an idle sweep, far ahead
				s.sweepIdleGroups(time.Now().Add(time.Hour))
			}
			if got, want := s.SyncedProxies(), syncedByStreams(s); !equalCounts(toUint(got), toUint(want)) {
				t.Fatalf("seed %d step %d: SyncedProxies = %v, a count over the streams says %v", seed, step, got, want)
			}
		}
	}
}

// syncedByStreams counts synced streams the way SyncedProxies did before
// it kept counts: one pass over every stream's type states.
func syncedByStreams(s *Server) map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for _, st := range s.streams {
		g := s.groups[st.groupKey]
		if st.groupKey == "" || g == nil || g.snapshot == nil || len(st.types) == 0 {
			continue
		}
		synced := true
		for typeURL, t := range st.types {
			if t.status(g.snapshot.versions[typeURL]) != StatusSynced {
				synced = false
			}
		}
		if synced {
			out[g.group.Namespace+"/"+g.group.Service]++
		}
	}
	return out
}

func toUint(m map[string]int) map[string]uint64 {
	out := make(map[string]uint64, len(m))
	for k, v := range m {
		if v != 0 {
			out[k] = uint64(v)
		}
	}
	return out
}
