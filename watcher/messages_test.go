package watcher

import (
	"testing"

	"github.com/shadowplane/shadowplane/policy"
)

func TestFormatPercent(t *testing.T) {
	tests := []struct {
		ppm  uint32
		want string
	}{
		{0, "0%"},
		{1, "0.0001%"},
		{10, "0.001%"},
		{15000, "1.5%"},
		{250000, "25%"},
		{333333, "33.3333%"},
		{1000000, "100%"},
	}
	for _, tt := range tests {
		if got := formatPercent(tt.ppm); got != tt.want {
			t.Errorf("formatPercent(%d) = %q, want %q", tt.ppm, got, tt.want)
		}
	}
}

func TestAppliedMessage(t *testing.T) {
	tests := []struct {
		name   string
		policy *policy.Policy
		want   string
	}{
		{
			name: "service and url mirrors",
			policy: &policy.Policy{
				Name: "entrance-to-staging", Service: "entrance", Port: policy.PortRef{Name: "http"},
				Mirrors: []policy.Mirror{
					{Service: "entrance", Namespace: "staging", Port: policy.PortRef{Number: 8080}, PartsPerMillion: 250000},
					{URL: &policy.URLTarget{Raw: "http://10.16.0.147/entrance/"}, PartsPerMillion: 15000},
				},
			},
			want: "policy entrance-to-staging applied: copies 25% of entrance:http to staging/entrance:8080, 1.5% to http://10.16.0.147/entrance/",
		},
		{
			name: "only port, with a match",
			policy: &policy.Policy{
				Name: "p", Service: "web",
				Match:   policy.Match{PathPrefix: "/api/"},
				Mirrors: []policy.Mirror{{Service: "web-shadow", Namespace: "ns", PartsPerMillion: 0}},
			},
			want: "policy p applied: copies 0% of web to ns/web-shadow (matching requests only)",
		},
		{
			name: "routing only",
			policy: &policy.Policy{
				Name: "canary", Namespace: "shop", Service: "web",
				RouteTo: []policy.RouteBackend{{Service: "web-v2", PartsPerMillion: 50000}, {Service: "web-v3", PartsPerMillion: 0}},
			},
			want: "policy canary applied: routes 5% of web to shop/web-v2, 0% to shop/web-v3",
		},
		{
			name: "copying and routing",
			policy: &policy.Policy{
				Name: "both", Namespace: "shop", Service: "web",
				Match:   policy.Match{Headers: []policy.HeaderMatch{{Name: "x-gray", Exact: "1"}}},
				Mirrors: []policy.Mirror{{Service: "web-shadow", Namespace: "shop", PartsPerMillion: 100000}},
				RouteTo: []policy.RouteBackend{{Service: "web-edge", PartsPerMillion: 1000000}},
			},
			want: "policy both applied: copies 10% of web to shop/web-shadow; routes 100% of web to shop/web-edge (matching requests only)",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := appliedMessage(tt.policy); got != tt.want {
				t.Errorf("appliedMessage() =\n%q\nwant\n%q", got, tt.want)
			}
		})
	}
}
