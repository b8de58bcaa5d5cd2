package peers

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestLocateIstiod: the peer benchmark finds istiod and the CRDs where
// `make istiod` puts them or where the environment says, and reports a
// missing one as an error naming `make istiod`, so BenchmarkPeers fails
// instead of passing without istiod.
func TestLocateIstiod(t *testing.T) {
	dir := t.TempDir()
	binDir := filepath.Join(dir, "bin")
	for _, p := range []string{filepath.Join(binDir, "pilot-discovery"), filepath.Join(dir, "istio", "crd-all.gen.yaml"), filepath.Join(dir, "elsewhere")} {
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	emptyBinDir := filepath.Join(dir, "empty", "bin")
	cases := []struct {
		name     string
		binDir   string
		env      map[string]string
		wantBin  string
		wantErrs []string // substrings of the error; none: no error
	}{
		{name: "installed by make istiod", binDir: binDir, wantBin: filepath.Join(binDir, "pilot-discovery")},
		{name: "ISTIOD_BIN overrides", binDir: binDir, env: map[string]string{IstiodBinEnv: filepath.Join(dir, "elsewhere")}, wantBin: filepath.Join(dir, "elsewhere")},
		{name: "nothing installed", binDir: emptyBinDir, wantErrs: []string{"make istiod", "pilot-discovery", "crd-all.gen.yaml"}},
		{name: "ISTIOD_BIN names a missing file", binDir: binDir, env: map[string]string{IstiodBinEnv: filepath.Join(dir, "missing")}, wantErrs: []string{"make istiod", "missing"}},
		{name: "CRDs missing", binDir: binDir, env: map[string]string{IstioCRDsEnv: filepath.Join(dir, "no-crds.yaml")}, wantErrs: []string{"no-crds.yaml"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			bin, _, err := LocateIstiod(c.binDir, func(k string) string { return c.env[k] })
			if len(c.wantErrs) == 0 {
				if err != nil || bin != c.wantBin {
					t.Fatalf("got %q, %v; want %q", bin, err, c.wantBin)
				}
				return
			}
			if err == nil {
				t.Fatalf("got %q and no error; want an error", bin)
			}
			for _, want := range c.wantErrs {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not name %q", err, want)
				}
			}
		})
	}
}

func TestMirrorShare(t *testing.T) {
	const cluster = "outbound|8080||entrance-shadow.peers.svc.cluster.local"
	route := func(policies string) string {
		return `{"configs":[{"dynamic_route_configs":[{"route_config":{"name":"80","virtual_hosts":[{"routes":[{"route":{"cluster":"x","request_mirror_policies":[` +
			policies + `]}}]}]}}]}]}`
	}
	cases := []struct {
		name    string
		dump    string
		want    uint32
		wantOK  bool
		wantErr bool
	}{
		{"million", route(`{"cluster":"` + cluster + `","runtime_fraction":{"default_value":{"numerator":370000,"denominator":"MILLION"}}}`), 370_000, true, false},
		{"hundred by default", route(`{"cluster":"` + cluster + `","runtime_fraction":{"default_value":{"numerator":5}}}`), 50_000, true, false},
		{"zero numerator omitted", route(`{"cluster":"` + cluster + `","runtime_fraction":{"default_value":{"denominator":"MILLION"}}}`), 0, true, false},
		{"no fraction copies all", route(`{"cluster":"` + cluster + `"}`), 1_000_000, true, false},
		{"another cluster only", route(`{"cluster":"outbound|80||other","runtime_fraction":{"default_value":{"numerator":1}}}`), 0, false, false},
		{"no routes", `{"configs":[]}`, 0, false, false},
		{"routes disagree", route(`{"cluster":"` + cluster + `","runtime_fraction":{"default_value":{"numerator":1,"denominator":"MILLION"}}},` +
			`{"cluster":"` + cluster + `","runtime_fraction":{"default_value":{"numerator":2,"denominator":"MILLION"}}}`), 0, false, true},
		{"not JSON", `<html>`, 0, false, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, ok, err := MirrorShare([]byte(c.dump), cluster)
			if (err != nil) != c.wantErr || ok != c.wantOK || got != c.want {
				t.Fatalf("got %d, %v, %v; want %d, %v, error %v", got, ok, err, c.want, c.wantOK, c.wantErr)
			}
		})
	}
}

func TestParseProcessUsage(t *testing.T) {
	stat := "4242 (pilot (disc) x) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 12 0 100 1000000 2000 18446744073709551615"
	status := "Name:\tpilot-discovery\nVmHWM:\t  81920 kB\nVmRSS:\t  65536 kB\nThreads:\t12\n"
	got, err := parseProcessUsage(stat, status)
	if err != nil {
		t.Fatal(err)
	}
	want := ProcessUsage{CPU: 3250 * time.Millisecond, RSS: 64 << 20, HWM: 80 << 20}
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	for _, bad := range []string{"4242 no parenthesis", "4242 (x) S 1 2"} {
		if _, err := parseProcessUsage(bad, status); err == nil {
			t.Errorf("stat %q: want an error", bad)
		}
	}
}
