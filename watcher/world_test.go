package watcher

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"

	"github.com/shadowplane/shadowplane/policy"
)

// TestBuildWorld: the exported conversion puts valid policies in force,
// reports every problem (parse, reference, duplicate name) and leaves its
// arguments alone.
func TestBuildWorld(t *testing.T) {
	services := []*corev1.Service{httpService("shop", "web"), httpService("shop", "web-shadow")}
	slices := []*discoveryv1.EndpointSlice{slice("shop", "web-abc", "web", discoveryv1.AddressTypeIPv4,
		[]discoveryv1.EndpointPort{epPort("http", 8080, corev1.ProtocolTCP)}, readyEndpoint("10.0.0.1"))}
	configMaps := []*corev1.ConfigMap{
		policyConfigMap("shop", "zz-later", map[string]string{"p.yaml": policiesYAML(mirrorEntry("valid", "web-shadow", "5"))}),
		policyConfigMap("shop", "mirrors", map[string]string{"p.yaml": policiesYAML(
			mirrorEntry("valid", "web-shadow", "10"),
			mirrorEntry("absent-target", "gone", "1"),
			mirrorEntry("bad-percent", "web-shadow", "101"),
		)}),
	}

	world, problems := BuildWorld(services, slices, configMaps, policy.ParseOptions{})

	if configMaps[0].Name != "zz-later" {
		t.Error("BuildWorld reordered its configMaps argument")
	}
	var inForce []string
	for _, p := range world.Policies {
		inForce = append(inForce, p.Source.ConfigMap+"/"+p.Name)
	}
	if got, want := strings.Join(inForce, " "), "mirrors/absent-target mirrors/valid"; got != want {
		t.Errorf("policies in force = %q, want %q", got, want)
	}
	if svc := world.Service("shop", "web"); svc == nil || len(svc.Endpoints) != 1 {
		t.Errorf("Service shop/web = %+v, want it with one endpoint", svc)
	}
	want := []struct {
		policy, field, msg string
		warning            bool
	}{
		{"bad-percent", "mirrors[0].percent", "must be a number from 0 to 100", false},
		{"absent-target", "mirrors[0].service", `Service "shop/gone" does not exist (yet)`, true},
		{"valid", "name", `already used in this namespace by ConfigMap mirrors`, false},
	}
	if len(problems) != len(want) {
		t.Fatalf("got %d problems, want %d: %v", len(problems), len(want), problems)
	}
	for i, w := range want {
		e := problems[i]
		if e.Policy != w.policy || e.Field != w.field || e.Warning != w.warning || !strings.Contains(e.Message, w.msg) {
			t.Errorf("problem %d = %s (warning %v), want policy %q field %q warning %v containing %q",
				i, e.Error(), e.Warning, w.policy, w.field, w.warning, w.msg)
		}
	}
}
