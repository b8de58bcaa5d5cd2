package translator

import (
	"strings"
	"testing"

	"github.com/shadowplane/shadowplane/policy"
)

// parsePolicyP parses one policy named "p" (body holds its other fields)
// as the key "policies.yaml" of default/mirror-policies.
func parsePolicyP(body string) ([]*policy.Policy, []*policy.PolicyError) {
	data := "policies:\n- name: p\n" + strings.ReplaceAll(strings.TrimSuffix(body, "\n"), "\n", "\n  ")
	data = strings.Replace(data, "name: p\n", "name: p\n  ", 1)
	opts := policy.ParseOptions{AllowedURLHosts: []string{"10.16.0.0/16"}}
	return policy.ParsePolicies("default", "mirror-policies", "policies.yaml", []byte(data), opts)
}

// problemLines renders problems one per line for failure messages.
func problemLines(errs []*policy.PolicyError) string {
	var b strings.Builder
	for _, e := range errs {
		b.WriteString("  " + e.Error() + "\n")
	}
	return b.String()
}

func TestCheckReferences(t *testing.T) {
	world := &World{Services: map[string]*Service{
		"default/entrance": {Namespace: "default", Name: "entrance",
			Ports: []ServicePort{{Name: "http", Port: 80, TargetPort: 15001, Protocol: "TCP"}}},
		"default/multi": {Namespace: "default", Name: "multi",
			Ports: []ServicePort{{Name: "http", Port: 80}, {Name: "grpc", Port: 9090}}},
		"default/dns": {Namespace: "default", Name: "dns",
			Ports: []ServicePort{{Name: "dns", Port: 53, Protocol: "UDP"}}},
		"default/portless": {Namespace: "default", Name: "portless"},
		"default/v2": {Namespace: "default", Name: "v2",
			Ports:     []ServicePort{{Name: "http", Port: 80, TargetPort: 8080, Protocol: "TCP"}},
			Endpoints: []Endpoint{{Address: "10.0.0.9", Ports: map[string]int32{"http": 8080}}}},
		"staging/entrance": {Namespace: "staging", Name: "entrance",
			Ports: []ServicePort{{Port: 8080}}},
	}}
	type problem struct {
		field   string
		msg     string
		warning bool
	}
	tests := []struct {
		name string
		body string // fields of policy "p" after its name
		want []problem
	}{
		{
			name: "all references resolve",
			body: "service: entrance\nport: http\nmirrors:\n- {service: entrance, namespace: staging, percent: 1}\n- {service: multi, port: 9090, percent: 1}\n- {url: \"http://10.16.0.1\", percent: 1}\n",
		},
		{
			name: "the only port by number",
			body: "service: entrance\nport: 80\nmirrors: [{service: entrance, namespace: staging, port: 8080, percent: 1}]\n",
		},
		{
			name: "missing Services are warnings",
			body: "service: gone\nmirrors: [{service: also-gone, namespace: staging, percent: 1}]\n",
			want: []problem{
				{"service", `Service "default/gone" does not exist (yet): the policy stays in force`, true},
				{"mirrors[0].service", `Service "staging/also-gone" does not exist (yet)`, true},
			},
		},
		{
			name: "a port the Service lacks is an error naming its ports",
			body: "service: entrance\nport: nope\nmirrors: [{service: multi, port: 8080, percent: 1}]\n",
			want: []problem{
				{"port", `Service "default/entrance" has no port "nope"; its ports are: http (80)`, false},
				{"mirrors[0].port", `Service "default/multi" has no port "8080"; its ports are: http (80), grpc (9090)`, false},
			},
		},
		{
			name: "no port named on a Service with several",
			body: "service: multi\nmirrors: [{service: entrance, namespace: staging, percent: 1}]\n",
			want: []problem{{"port", `Service "default/multi" has several ports (http (80), grpc (9090)): name one with port`, false}},
		},
		{
			name: "a Service without ports",
			body: "service: entrance\nmirrors: [{service: portless, percent: 1}]\n",
			want: []problem{{"mirrors[0].port", `Service "default/portless" has no ports`, false}},
		},
		{
			name: "UDP ports carry no HTTP",
			body: "service: dns\nmirrors: [{service: entrance, namespace: staging, percent: 1}]\n",
			want: []problem{{"port", `port dns (53) of Service "default/dns" is UDP: only TCP ports carry HTTP`, false}},
		},
		{
			name: "a mirror that resolves to the policy's own port",
			body: "service: entrance\nport: http\nmirrors: [{service: entrance, port: 80, percent: 1}]\n",
			want: []problem{{"mirrors[0]", `targets the policy's own Service "default/entrance" and port http (80)`, false}},
		},
		{
			name: "a routeTo Service with ready endpoints",
			body: "service: entrance\nrouteTo: [{service: v2, weight: 5}]\n",
		},
		{
			name: "routeTo Services missing or without ready endpoints are warnings",
			body: "service: v2\nrouteTo: [{service: gone, weight: 5}, {service: entrance, name: e, weight: 5}]\n",
			want: []problem{
				{"routeTo[0].service", `Service "default/gone" does not exist (yet)`, true},
				{"routeTo[1].service", `Service "default/entrance" has no ready endpoints: backend e gets no requests, its share stays on the stable version`, true},
			},
		},
		{
			name: "routeTo ports are checked like mirror ports",
			body: "service: entrance\nport: http\nrouteTo: [{service: multi, weight: 5}, {service: dns, weight: 5}, {service: entrance, port: 80, name: self, weight: 5}]\n",
			want: []problem{
				{"routeTo[0].port", `Service "default/multi" has several ports`, false},
				{"routeTo[1].port", `is UDP: only TCP ports carry HTTP`, false},
				{"routeTo[2]", `routes to the policy's own Service "default/entrance" and port http (80)`, false},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			policies, errs := parsePolicyP(tt.body)
			if len(errs) != 0 || len(policies) != 1 {
				t.Fatalf("the policy must parse, got:\n%s", problemLines(errs))
			}
			got := CheckReferences(policies[0], world)
			if len(got) != len(tt.want) {
				t.Fatalf("got %d problems, want %d:\n%s", len(got), len(tt.want), problemLines(got))
			}
			for i, w := range tt.want {
				e := got[i]
				if e.Field != w.field || e.Warning != w.warning || !strings.Contains(e.Message, w.msg) {
					t.Errorf("problem %d = %s (field %q, warning %v), want field %q warning %v containing %q",
						i, e.Error(), e.Field, e.Warning, w.field, w.warning, w.msg)
				}
				if e.Policy != "p" || e.Index != 0 || e.ConfigMap != "mirror-policies" || e.Key != "policies.yaml" || e.Namespace != "default" {
					t.Errorf("problem %d is not attributed to the policy: %+v", i, e)
				}
			}
		})
	}
}

func TestCheckReferencesWithoutWorld(t *testing.T) {
	policies, _ := parsePolicyP("service: entrance\nmirrors:\n- {service: entrance-shadow, percent: 25}\n")
	errs := CheckReferences(policies[0], nil)
	if len(errs) != 2 || !errs[0].Warning || !errs[1].Warning {
		t.Errorf("with no World every Service is missing: want 2 warnings, got:\n%s", problemLines(errs))
	}
}
