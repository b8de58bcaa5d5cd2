package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/shadowplane/shadowplane/xds"
)

func TestStatusReadsTheDebugListener(t *testing.T) {
	const proxies = `[{"id": "entrance-1", "group": "shop/entrance@0.0.0.0|15001:8080", "connected": "2025-01-01T00:00:00Z", "delta": false,
		"types": {"listener": {"status": "SYNCED"}, "route": {"status": "SYNCED"}, "cluster": {"status": "SYNCED"}, "endpoint": {"status": "SYNCED"}, "runtime": {"status": "STALE"}}}]`
	var gotQuery string
	debug := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/debug/proxies" {
			http.NotFound(w, r)
			return
		}
		gotQuery = r.URL.RawQuery
		total := "1"
		if r.URL.Query().Get("group") == "" {
			total = "7" // the server left proxies out
		}
		w.Header().Set(xds.HeaderShown, "1")
		w.Header().Set(xds.HeaderTotal, total)
		_, _ = w.Write([]byte(proxies))
	}))
	defer debug.Close()

	tests := []struct {
		name        string
		args        []string
		wantQuery   string
		wantOut     string
		wantWarning string
	}{
		{
			name: "cut list warns", args: []string{"status", "--address", debug.URL},
			wantOut: "entrance-1", wantWarning: "warning: the control plane listed 1 of 7 proxies",
		},
		{
			name: "group is passed on", args: []string{"status", "--address", debug.URL, "--group", "shop/entrance@0.0.0.0|15001:8080"},
			wantQuery: "group=shop%2Fentrance%400.0.0.0%7C15001%3A8080", wantOut: "STALE",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			stdout, stderr, code := runCLI(t, nil, tt.args...)
			if code != 0 {
				t.Fatalf("exit %d: %s", code, stderr)
			}
			if gotQuery != tt.wantQuery {
				t.Errorf("query %q, want %q", gotQuery, tt.wantQuery)
			}
			if !strings.Contains(stdout, tt.wantOut) {
				t.Errorf("stdout %q lacks %q", stdout, tt.wantOut)
			}
			if tt.wantWarning == "" && stderr != "" || !strings.Contains(stderr, tt.wantWarning) {
				t.Errorf("stderr %q, want %q", stderr, tt.wantWarning)
			}
		})
	}

	// The probe listener has no /debug/proxies: say where to look.
	_, stderr, code := runCLI(t, nil, "status", "--address", debug.URL+"/elsewhere")
	if code == 0 || !strings.Contains(stderr, "404") {
		t.Errorf("status against a wrong address: exit %d, %q", code, stderr)
	}
}

func TestStatusDefaultAddressIsTheDebugListener(t *testing.T) {
	serveDefault := newServeCommand().Flags().Lookup("debug-address").DefValue
	if got, want := newStatusCommand().Flags().Lookup("address").DefValue, "http://"+serveDefault; got != want {
		t.Errorf("status --address default %q, want serve's --debug-address default %q", got, want)
	}
}
