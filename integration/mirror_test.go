package integration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/shadowplane/shadowplane/integration/harness"
)

var xdsModes = []struct {
	name  string
	delta bool
}{{"sotw", false}, {"delta", true}}

// TestMirrorAll: at 100 %, every request reaches the primary and an identical
// copy (method, path, query, body, headers, Host) reaches the shadow.
func TestMirrorAll(t *testing.T) {
	for _, mode := range xdsModes {
		t.Run(mode.name, func(t *testing.T) {
			f := newMirrorFixture(t, fixtureOptions{delta: mode.delta})
			f.applyPolicy(policyYAML("100", ""))
			f.waitApplied(1_000_000)

			const n = 200
			methods := []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodDelete}
			body := func(i int) []byte {
				if i%4 == 0 || i%4 == 3 {
					return nil
				}
				return []byte(strings.Repeat(fmt.Sprintf("body-%d;", i), i%50+1))
			}
			res := harness.SendN(f.ctx, f.client, n, 8, func(ctx context.Context, i int) *http.Request {
				req, _ := http.NewRequestWithContext(ctx, methods[i%4], fmt.Sprintf("%s/entrance/item/%d?q=%d&x=y%%20z", f.sidecar.URL, i, i), bytes.NewReader(body(i)))
				req.Header.Set("x-request-seq", fmt.Sprint(i))
				req.Header.Set("x-tenant", "beta")
				req.Header.Set("content-type", "application/octet-stream")
				req.Host = "entrance.example.internal"
				return req
			})
			if res.Errors() != 0 {
				t.Fatalf("%d of %d primary requests failed; first: %s", res.Errors(), n, res.FirstError())
			}
			if got := f.primary.Count(); got != n {
				t.Errorf("primary got %d requests, want %d", got, n)
			}
			if got := f.shadow.WaitCount(f.ctx, n, 300*time.Millisecond); got != n {
				seen := map[string]bool{}
				for _, r := range f.shadow.Requests() {
					seen[r.Header.Get("x-request-seq")] = true
				}
				var missing []string
				for i := 0; i < n; i++ {
					if !seen[fmt.Sprint(i)] {
						missing = append(missing, fmt.Sprint(i))
					}
				}
				t.Fatalf("shadow got %d copies, want %d; missing seq %v", got, n, missing)
			}

			primaryBySeq := map[string]harness.Request{}
			for _, r := range f.primary.Requests() {
				primaryBySeq[r.Header.Get("x-request-seq")] = r
			}
			for _, c := range f.shadow.Requests() {
				seq := c.Header.Get("x-request-seq")
				p, ok := primaryBySeq[seq]
				if !ok {
					t.Errorf("copy with seq %q matches no primary request", seq)
					continue
				}
				var i int
				fmt.Sscan(seq, &i)
				sum := sha256.Sum256(body(i))
				wantBody := hex.EncodeToString(sum[:])
				if c.Method != p.Method || c.Method != methods[i%4] {
					t.Errorf("seq %s: copy method %s, primary %s", seq, c.Method, p.Method)
				}
				if c.Path != p.Path || c.RawQuery != p.RawQuery || c.RawQuery != fmt.Sprintf("q=%d&x=y%%20z", i) {
					t.Errorf("seq %s: copy %s?%s, primary %s?%s", seq, c.Path, c.RawQuery, p.Path, p.RawQuery)
				}
				if c.BodySHA256 != wantBody || p.BodySHA256 != wantBody {
					t.Errorf("seq %s: body differs (copy %d bytes, primary %d bytes)", seq, c.BodyLen, p.BodyLen)
				}
				if c.Host != "entrance.example.internal" || p.Host != c.Host {
					t.Errorf("seq %s: copy Host %q, primary Host %q, want entrance.example.internal unchanged", seq, c.Host, p.Host)
				}
				for _, h := range []string{"x-tenant", "content-type", "x-request-seq"} {
					if c.Header.Get(h) != p.Header.Get(h) {
						t.Errorf("seq %s: header %s: copy %q, primary %q", seq, h, c.Header.Get(h), p.Header.Get(h))
					}
				}
			}
		})
	}
}

// TestMirrorShare: at 25 % over 4,000 requests the number of copies lies in
// the binomial interval of harness.ShareAlpha.
func TestMirrorShare(t *testing.T) {
	for _, mode := range xdsModes {
		t.Run(mode.name, func(t *testing.T) {
			f := newMirrorFixture(t, fixtureOptions{delta: mode.delta})
			f.applyPolicy(policyYAML("25", ""))
			f.waitApplied(250_000)

			const n = 4000
			res := harness.SendN(f.ctx, f.client, n, 16, func(ctx context.Context, i int) *http.Request {
				return f.get(ctx, fmt.Sprintf("/entrance/%d", i))
			})
			if res.Errors() != 0 {
				t.Fatalf("%d primary requests failed; first: %s", res.Errors(), res.FirstError())
			}
			if got := f.primary.Count(); got != n {
				t.Errorf("primary got %d, want %d", got, n)
			}
			lo, hi := harness.BinomialBounds(n, 0.25, harness.ShareAlpha)
			got := f.shadow.WaitCount(f.ctx, lo, 500*time.Millisecond)
			t.Logf("copies: %d of %d (%.2f %%), %s interval [%d, %d]", got, n, 100*float64(got)/n, harness.ShareConfidence, lo, hi)
			if got < lo || got > hi {
				t.Fatalf("shadow got %d copies, outside the binomial %s interval [%d, %d] for 25%% of %d", got, harness.ShareConfidence, lo, hi, n)
			}
		})
	}
}

// TestMirrorMatch: a policy matching path prefix + method + header copies
// exactly the requests that fit it and no others.
func TestMirrorMatch(t *testing.T) {
	for _, mode := range xdsModes {
		t.Run(mode.name, func(t *testing.T) {
			f := newMirrorFixture(t, fixtureOptions{delta: mode.delta})
			f.applyPolicy(policyYAML("100", "pathPrefix: /entrance/\nmethods: [GET, POST]\nheaders:\n- {name: x-tenant, exact: beta}\n"))
			f.waitApplied(1_000_000)
			f.waitRouteMirrors(1)

			type variant struct {
				method, path, tenant string
				copied               bool
			}
			variants := []variant{
				{http.MethodGet, "/entrance/a", "beta", true},
				{http.MethodPost, "/entrance/b/c", "beta", true},
				{http.MethodPut, "/entrance/a", "beta", false},  // method not listed
				{http.MethodGet, "/entrance/a", "alpha", false}, // header value differs
				{http.MethodGet, "/entrance/a", "", false},      // header absent
				{http.MethodGet, "/entrancex/a", "beta", false}, // prefix is /entrance/
				{http.MethodGet, "/other", "beta", false},
				{http.MethodDelete, "/other", "", false},
			}
			const rounds = 25
			res := harness.SendN(f.ctx, f.client, rounds*len(variants), 8, func(ctx context.Context, i int) *http.Request {
				v := variants[i%len(variants)]
				req, _ := http.NewRequestWithContext(ctx, v.method, f.sidecar.URL+v.path, nil)
				if v.tenant != "" {
					req.Header.Set("x-tenant", v.tenant)
				}
				req.Header.Set("x-variant", fmt.Sprint(i%len(variants)))
				return req
			})
			if res.Errors() != 0 {
				t.Fatalf("%d primary requests failed; first: %s", res.Errors(), res.FirstError())
			}
			if got := f.primary.Count(); got != rounds*len(variants) {
				t.Errorf("primary got %d, want %d", got, rounds*len(variants))
			}
			wantCopies := 0
			for _, v := range variants {
				if v.copied {
					wantCopies += rounds
				}
			}
			got := f.shadow.WaitCount(f.ctx, wantCopies, 500*time.Millisecond)
			if got != wantCopies {
				t.Errorf("shadow got %d copies, want exactly %d", got, wantCopies)
			}
			for i, v := range variants {
				n := f.shadow.CountWhere(func(r harness.Request) bool { return r.Header.Get("x-variant") == fmt.Sprint(i) })
				want := 0
				if v.copied {
					want = rounds
				}
				if n != want {
					t.Errorf("%s %s tenant=%q: %d copies, want %d", v.method, v.path, v.tenant, n, want)
				}
			}
		})
	}
}

// TestListenOnAllAddresses: a sidecar bound to "::" (all addresses) still
// accepts the pod's IPv4 traffic and copies it; Envoy binds "::" IPv6-only
// unless the listener asks for IPv4 compatibility.
func TestListenOnAllAddresses(t *testing.T) {
	f := newMirrorFixture(t, fixtureOptions{listenAddress: "::"})
	f.applyPolicy(policyYAML("100", ""))
	f.waitApplied(1_000_000)
	const n = 20
	res := harness.SendN(f.ctx, f.client, n, 4, func(ctx context.Context, i int) *http.Request {
		return f.get(ctx, fmt.Sprintf("/entrance/%d", i))
	})
	if res.Errors() != 0 {
		t.Fatalf("%d of %d IPv4 requests to a sidecar on [::] failed; first: %s", res.Errors(), n, res.FirstError())
	}
	if got := f.shadow.WaitCount(f.ctx, n, 300*time.Millisecond); got != n {
		t.Errorf("shadow got %d copies, want %d", got, n)
	}
}
