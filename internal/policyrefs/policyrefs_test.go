package policyrefs

import (
	"slices"
	"testing"

	"github.com/shadowplane/shadowplane/policy"
)

func TestServices(t *testing.T) {
	tests := []struct {
		name string
		p    *policy.Policy
		want []string
	}{
		{
			name: "own Service only, URL target",
			p:    &policy.Policy{Namespace: "shop", Name: "p", Service: "web", Mirrors: []policy.Mirror{{URL: &policy.URLTarget{Host: "10.0.0.1"}}}},
			want: []string{"shop/web"},
		},
		{
			name: "targets in the policy's namespace and another, deduplicated",
			p: &policy.Policy{Namespace: "shop", Name: "p", Service: "web", Mirrors: []policy.Mirror{
				{Service: "web-shadow"}, {Service: "web", Namespace: "staging"}, {Service: "web-shadow", Namespace: "shop"},
			}},
			want: []string{"shop/web", "shop/web-shadow", "staging/web"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Services(tc.p); !slices.Equal(got, tc.want) {
				t.Errorf("Services = %v, want %v", got, tc.want)
			}
		})
	}
}
