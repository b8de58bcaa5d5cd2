package xds

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

// get GETs path and returns the status and body.
func get(t *testing.T, base, path string) (int, string) {
	t.Helper()
	code, body, _ := getWithHeader(t, base, path)
	return code, body
}

// getWithHeader is get that also returns the response header.
func getWithHeader(t *testing.T, base, path string) (int, string, http.Header) {
	t.Helper()
	resp, err := http.Get(base + path)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
	return resp.StatusCode, string(body), resp.Header
}

func TestReadyzFollowsReadyFunc(t *testing.T) {
	h := newHarness(t, nil)
	var ready atomic.Bool
	var detail atomic.Value
	detail.Store("")
	web := httptest.NewServer(h.srv.HTTPHandler(ready.Load, func() string { return detail.Load().(string) }))
	defer web.Close()

	tests := []struct {
		ready    bool
		detail   string
		wantCode int
		wantBody string
	}{
		{ready: false, wantCode: http.StatusServiceUnavailable, wantBody: "not ready: the initial sync"},
		{ready: true, wantCode: http.StatusOK, wantBody: "ready\n"},
		// A detail explains, it never fails the probe.
		{ready: true, detail: "kubernetes watch down for 3s", wantCode: http.StatusOK, wantBody: "ready (kubernetes watch down for 3s)\n"},
		{ready: false, detail: "kubernetes watch down for 4s", wantCode: http.StatusServiceUnavailable, wantBody: "not ready"},
	}
	for _, tt := range tests {
		ready.Store(tt.ready)
		detail.Store(tt.detail)
		code, body := get(t, web.URL, "/readyz")
		if code != tt.wantCode || !strings.Contains(body, tt.wantBody) {
			t.Errorf("ready()=%v detail %q: /readyz = %d %q, want %d containing %q", tt.ready, tt.detail, code, body, tt.wantCode, tt.wantBody)
		}
		// Health does not depend on readiness.
		if code, body := get(t, web.URL, "/healthz"); code != http.StatusOK || body != "ok\n" {
			t.Errorf("ready()=%v: /healthz = %d %q, want 200 ok", tt.ready, code, body)
		}
	}
}

func TestReadyzWithoutReadyFuncWaitsForWorld(t *testing.T) {
	h := newHarness(t, nil)
	web := httptest.NewServer(h.srv.HTTPHandler(nil, nil))
	defer web.Close()

	if code, body := get(t, web.URL, "/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "no World") {
		t.Errorf("/readyz before any World = %d %q, want 503 naming the missing World", code, body)
	}
	h.srv.SetWorld(testWorld(250000, "10.1.0.1"))
	if code, _ := get(t, web.URL, "/readyz"); code != http.StatusOK {
		t.Errorf("/readyz after SetWorld = %d, want 200", code)
	}
}

func TestMetricsEndpointAndNoDebug(t *testing.T) {
	h := newHarness(t, nil)
	h.srv.SetWorld(testWorld(250000, "10.1.0.1"))
	syncedSotw(h, "entrance-1")
	web := httptest.NewServer(h.srv.HTTPHandler(func() bool { return true }, nil))
	defer web.Close()

	code, metrics := get(t, web.URL, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics = %d", code)
	}
	for _, want := range []string{
		`shadowplane_xds_pushes_total{type="runtime"} 1`,
		`shadowplane_xds_responses_total{type="listener"} 1`,
		`shadowplane_xds_nacks_total{type="route"} 0`,
		`shadowplane_xds_connected_proxies 1`,
		`shadowplane_snapshot_groups 1`,
		`shadowplane_translation_duration_seconds_count 1`,
		`shadowplane_event_to_snapshot_seconds_count 0`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	// The debug endpoints are on DebugHandler's listener only.
	for _, path := range []string{"/debug/proxies", "/debug/snapshots", "/debug/pprof/"} {
		if code, _ := get(t, web.URL, path); code != http.StatusNotFound {
			t.Errorf("%s on the probe handler = %d, want 404", path, code)
		}
	}
	if code, _ := get(t, web.URL, "/nothing"); code != http.StatusNotFound {
		t.Errorf("/nothing = %d, want 404", code)
	}
}
