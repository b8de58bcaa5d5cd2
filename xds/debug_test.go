package xds

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
)

// getDebug GETs path and returns the status, body and Shown/Total headers.
func getDebug(t *testing.T, base, path string) (code int, body string, shown, total string) {
	t.Helper()
	code, body, header := getWithHeader(t, base, path)
	return code, body, header.Get(HeaderShown), header.Get(HeaderTotal)
}

func TestDebugEndpoints(t *testing.T) {
	h := newHarness(t, nil)
	h.srv.SetWorld(testWorld(250000, "10.1.0.1"))
	syncedSotw(h, "entrance-1")
	syncedSotw(h, "entrance-2")
	web := httptest.NewServer(h.srv.DebugHandler())
	defer web.Close()

	tests := []struct {
		path      string
		wantCode  int
		wantIDs   []string // for /debug/proxies
		wantKeys  []string // for /debug/snapshots
		wantShown string
		wantTotal string
	}{
		{path: "/debug/proxies", wantCode: 200, wantIDs: []string{"entrance-1", "entrance-2"}, wantShown: "2", wantTotal: "2"},
		{path: "/debug/proxies?id=entrance-2", wantCode: 200, wantIDs: []string{"entrance-2"}, wantShown: "1", wantTotal: "1"},
		{path: "/debug/proxies?group=" + testGroup.Key(), wantCode: 200, wantIDs: []string{"entrance-1", "entrance-2"}, wantShown: "2", wantTotal: "2"},
		{path: "/debug/proxies?group=other", wantCode: 200, wantIDs: []string{}, wantShown: "0", wantTotal: "0"},
		{path: "/debug/proxies?limit=1", wantCode: 200, wantIDs: []string{"entrance-1"}, wantShown: "1", wantTotal: "2"},
		{path: "/debug/proxies?limit=0", wantCode: 400},
		{path: "/debug/proxies?limit=x", wantCode: 400},
		{path: "/debug/snapshots", wantCode: 200, wantKeys: []string{testGroup.Key()}, wantShown: "1", wantTotal: "1"},
		{path: "/debug/snapshots?group=" + testGroup.Key(), wantCode: 200, wantKeys: []string{testGroup.Key()}, wantShown: "1", wantTotal: "1"},
		{path: "/debug/snapshots?group=other", wantCode: 404},
		{path: "/debug/other", wantCode: 404},
		{path: "/healthz", wantCode: 404},
		{path: "/metrics", wantCode: 404},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			code, body, shown, total := getDebug(t, web.URL, tt.path)
			if code != tt.wantCode {
				t.Fatalf("status %d, want %d: %s", code, tt.wantCode, body)
			}
			if code != http.StatusOK {
				return
			}
			if shown != tt.wantShown || total != tt.wantTotal {
				t.Errorf("shown %q of %q, want %q of %q", shown, total, tt.wantShown, tt.wantTotal)
			}
			if tt.wantIDs != nil {
				var proxies []ProxyStatus
				if err := json.Unmarshal([]byte(body), &proxies); err != nil {
					t.Fatalf("decode: %v: %s", err, body)
				}
				ids := []string{}
				for _, p := range proxies {
					ids = append(ids, p.ID)
				}
				if fmt.Sprint(ids) != fmt.Sprint(tt.wantIDs) {
					t.Errorf("proxies %v, want %v", ids, tt.wantIDs)
				}
			}
			if tt.wantKeys != nil {
				var snaps map[string]GroupStatus
				if err := json.Unmarshal([]byte(body), &snaps); err != nil {
					t.Fatalf("decode: %v: %s", err, body)
				}
				if len(snaps) != len(tt.wantKeys) {
					t.Errorf("groups %v, want %v", snaps, tt.wantKeys)
				}
				for _, key := range tt.wantKeys {
					if g := snaps[key]; g.Proxies != 2 || g.Types["runtime"].Version == "" {
						t.Errorf("group %s = %+v, want 2 proxies and a runtime version", key, g)
					}
				}
			}
		})
	}
}

// TestDebugNackMessageIsCut: a NACK's error detail comes from the client
// and may be megabytes; the debug view keeps its start.
func TestDebugNackMessageIsCut(t *testing.T) {
	h := newHarness(t, nil)
	h.srv.SetWorld(testWorld(250000, "10.1.0.1"))
	// Under the 1 MiB message bound, which refuses larger requests outright.
	huge := "runtime layer: " + strings.Repeat("x", 512<<10)
	nackedSotw(h, "entrance-1", huge)

	web := httptest.NewServer(h.srv.DebugHandler())
	defer web.Close()
	code, body, _, _ := getDebug(t, web.URL, "/debug/proxies")
	if code != http.StatusOK || len(body) > maxDebugNack+4096 {
		t.Fatalf("/debug/proxies = %d with %d bytes, want 200 and the NACK cut to %d bytes", code, len(body), maxDebugNack)
	}
	var proxies []ProxyStatus
	if err := json.Unmarshal([]byte(body), &proxies); err != nil || len(proxies) != 1 {
		t.Fatalf("decode: %v: %.200s", err, body)
	}
	msg := proxies[0].Types["runtime"].LastNack.Message
	if len(msg) > maxDebugNack || !strings.HasPrefix(msg, "runtime layer: xxx") || !strings.HasSuffix(msg, "[... cut, "+strconv.Itoa(len(huge))+" bytes in all]") {
		t.Errorf("NACK message in the debug view: %d bytes, %.40q...%q", len(msg), msg, msg[max(0, len(msg)-40):])
	}
}

func TestBoundedJSONIsCutAfterWholeItems(t *testing.T) {
	type item struct {
		N    int    `json:"n"`
		Fill string `json:"fill"`
	}
	// 3,000 items of about 1 KiB: 3 MiB in all.
	var items []jsonItem
	for i := range 3000 {
		items = append(items, jsonItem{key: fmt.Sprintf("k%04d", i), value: item{N: i, Fill: strings.Repeat("f", 1000)}})
	}
	for _, object := range []bool{false, true} {
		for _, limit := range []int{0, 10} {
			t.Run(fmt.Sprintf("object=%v,limit=%d", object, limit), func(t *testing.T) {
				rec := httptest.NewRecorder()
				writeBoundedJSON(rec, object, items, limit)
				body := rec.Body.Bytes()
				if len(body) > MaxDebugBody {
					t.Fatalf("body is %d bytes, over %d", len(body), MaxDebugBody)
				}
				var n int
				if object {
					var got map[string]item
					if err := json.Unmarshal(body, &got); err != nil {
						t.Fatalf("cut body is not JSON: %v", err)
					}
					n = len(got)
					if _, ok := got[fmt.Sprintf("k%04d", n-1)]; !ok {
						t.Errorf("the first %d items were not the ones kept", n)
					}
				} else {
					var got []item
					if err := json.Unmarshal(body, &got); err != nil {
						t.Fatalf("cut body is not JSON: %v", err)
					}
					n = len(got)
					if got[n-1].N != n-1 {
						t.Errorf("the first %d items were not the ones kept", n)
					}
				}
				shown, _ := strconv.Atoi(rec.Header().Get(HeaderShown))
				if shown != n || rec.Header().Get(HeaderTotal) != "3000" {
					t.Errorf("headers %s=%s %s=%s, want %d of 3000", HeaderShown, rec.Header().Get(HeaderShown), HeaderTotal, rec.Header().Get(HeaderTotal), n)
				}
				switch {
				case limit > 0 && n != limit:
					t.Errorf("%d items with limit %d", n, limit)
				case limit == 0 && (n < 900 || n >= 3000):
					t.Errorf("%d items of 3000 in %d bytes, want as many as fit in %d", n, len(body), MaxDebugBody)
				}
			})
		}
	}
}
