package policy

import (
	"strings"
	"testing"
)

func TestRecheckStored(t *testing.T) {
	allow := ParseOptions{AllowedURLHosts: []string{"10.16.0.147"}}
	urlPolicy := func(raw, host string, port uint32, ppm uint32) *Policy {
		return &Policy{Namespace: "shop", Name: "p", Mirrors: []Mirror{{Name: "m", PartsPerMillion: ppm,
			URL: &URLTarget{Raw: raw, Scheme: "http", Host: host, Port: port}}}}
	}
	tests := []struct {
		name   string
		p      *Policy
		opts   ParseOptions
		wantIn string // "" means no problem
	}{
		{"allowed URL", urlPolicy("http://10.16.0.147", "10.16.0.147", 80, 500000), allow, ""},
		{"Service target", &Policy{Mirrors: []Mirror{{Service: "s", PartsPerMillion: 1_000_000}}}, ParseOptions{}, ""},
		{"allowlist narrowed since", urlPolicy("http://10.16.0.147", "10.16.0.147", 80, 500000), ParseOptions{}, "not allowed"},
		{"deny-listed address", urlPolicy("http://169.254.169.254", "169.254.169.254", 80, 1), ParseOptions{AllowedURLHosts: []string{"169.254.169.254"}}, "mirrors[0].url"},
		{"target disagrees with its URL", urlPolicy("http://10.16.0.147", "169.254.169.254", 80, 1), allow, "does not match"},
		{"share over 100 %", urlPolicy("http://10.16.0.147", "10.16.0.147", 80, 1_000_001), allow, "over 100 %"},
		{"routes over 100 %", &Policy{RouteTo: []RouteBackend{{PartsPerMillion: 600000}, {PartsPerMillion: 600000}}}, ParseOptions{}, "routeTo"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			problems := RecheckStored(tc.p, tc.opts)
			joined := strings.Join(problems, "; ")
			if tc.wantIn == "" && len(problems) != 0 {
				t.Fatalf("problems %q, want none", joined)
			}
			if tc.wantIn != "" && !strings.Contains(joined, tc.wantIn) {
				t.Fatalf("problems %q, want one containing %q", joined, tc.wantIn)
			}
		})
	}
}
