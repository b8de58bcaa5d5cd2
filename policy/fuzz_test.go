package policy_test

import (
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"testing"

	"k8s.io/apimachinery/pkg/util/validation"

	"github.com/shadowplane/shadowplane/nodemeta"
	"github.com/shadowplane/shadowplane/policy"
	"github.com/shadowplane/shadowplane/translator"
)

const maxFuzzSeedBytes = 16 << 10

// FuzzParsePolicies feeds arbitrary bytes to both parsers and checks the
// invariants the translator and watcher rely on: no panic, only valid
// policies come out, every problem is explained, and parsing is
// deterministic.
func FuzzParsePolicies(f *testing.F) {
	for _, pattern := range []string{"testdata/parse/*.yaml", "testdata/invalid/*.yaml"} {
		files, err := filepath.Glob(pattern)
		if err != nil {
			f.Fatal(err)
		}
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			// The oversized-key example would make every mutation slow to
			// run and to minimise; unit tests cover it.
			if len(data) <= maxFuzzSeedBytes {
				f.Add(data)
			}
		}
	}
	opts := policy.ParseOptions{AllowedURLHosts: []string{"10.16.0.0/16", "*.staging.example.com", "shadow.example.org"}}
	f.Fuzz(func(t *testing.T, data []byte) {
		policies, errs := policy.ParsePolicies("default", "mirror-policies", "policies.yaml", data, opts)
		checkParseInvariants(t, policies, errs)
		for _, e := range errs {
			if e.KeyWide() && len(policies) > 0 {
				t.Fatalf("key-wide error %q but %d policies returned", e.Error(), len(policies))
			}
		}
		again, againErrs := policy.ParsePolicies("default", "mirror-policies", "policies.yaml", data, opts)
		if !reflect.DeepEqual(policies, again) || !reflect.DeepEqual(errs, againErrs) {
			t.Fatal("ParsePolicies is not deterministic")
		}
		for _, p := range policies {
			for _, e := range translator.CheckReferences(p, corpusWorld()) {
				if e.Message == "" || e.Policy != p.Name {
					t.Fatalf("CheckReferences problem without message or policy: %+v", e)
				}
			}
		}
		checkEnvoyAccepts(t, policies)

		filePolicies, fileErrs := policy.ParseConfigMapFile("fuzz.yaml", data, opts)
		checkParseInvariants(t, filePolicies, fileErrs)
		checkEnvoyAccepts(t, filePolicies)
		againFile, againFileErrs := policy.ParseConfigMapFile("fuzz.yaml", data, opts)
		if !reflect.DeepEqual(filePolicies, againFile) || !reflect.DeepEqual(fileErrs, againFileErrs) {
			t.Fatal("ParseConfigMapFile is not deterministic")
		}
	})
}

// checkParseInvariants asserts what every parse result must satisfy.
func checkParseInvariants(t *testing.T, policies []*policy.Policy, errs []*policy.PolicyError) {
	t.Helper()
	for _, e := range errs {
		if e.Message == "" {
			t.Fatalf("error without a message: %+v", e)
		}
	}
	for _, p := range policies {
		if len(validation.IsDNS1123Label(p.Name)) != 0 || len(validation.IsDNS1035Label(p.Service)) != 0 || len(validation.IsDNS1123Label(p.Namespace)) != 0 {
			t.Fatalf("invalid names in policy %+v", p)
		}
		if (len(p.Mirrors) == 0 && len(p.RouteTo) == 0) || len(p.Mirrors) > policy.MaxMirrorsPerPolicy || len(p.RouteTo) > policy.MaxRouteBackendsPerPolicy {
			t.Fatalf("policy %q has %d mirrors and %d routeTo backends", p.Name, len(p.Mirrors), len(p.RouteTo))
		}
		var routed uint64
		backends := map[string]bool{}
		for _, b := range p.RouteTo {
			routed += uint64(b.PartsPerMillion)
			if b.Name == "" || backends[b.Name] || len(validation.IsDNS1035Label(b.Service)) != 0 {
				t.Fatalf("policy %q has a bad or repeated routeTo backend %+v", p.Name, b)
			}
			backends[b.Name] = true
		}
		if routed > 1_000_000 {
			t.Fatalf("policy %q routes %d parts per million", p.Name, routed)
		}
		names := map[string]bool{}
		for _, m := range p.Mirrors {
			if m.PartsPerMillion > 1_000_000 {
				t.Fatalf("policy %q mirror %q copies %d parts per million", p.Name, m.Name, m.PartsPerMillion)
			}
			if m.Name == "" || names[m.Name] {
				t.Fatalf("policy %q has an empty or repeated mirror name %q", p.Name, m.Name)
			}
			names[m.Name] = true
			if (m.Service == "") == (m.URL == nil) {
				t.Fatalf("policy %q mirror %q must have exactly one target: %+v", p.Name, m.Name, m)
			}
			if m.URL != nil && (m.URL.Host == "" || m.URL.Port == 0 || (m.URL.Scheme != "http" && m.URL.Scheme != "https")) {
				t.Fatalf("policy %q has a bad URL target %+v", p.Name, m.URL)
			}
		}
		if !sort.StringsAreSorted(p.Match.Methods) || !sort.StringsAreSorted(p.CopyHeaders.Remove) {
			t.Fatalf("policy %q has unsorted lists", p.Name)
		}
		if p.Match.PathPrefix != "" && p.Match.PathPrefix[0] != '/' {
			t.Fatalf("policy %q has path prefix %q", p.Name, p.Match.PathPrefix)
		}
		for _, h := range p.Match.Headers {
			if !policy.IsHTTPToken(h.Name) {
				t.Fatalf("policy %q matches header %q", p.Name, h.Name)
			}
		}
	}
}

// checkEnvoyAccepts translates valid policies for the sidecar of
// default/entrance and checks that every resource passes Envoy's proto
// validation and every regex fits Envoy's program-size limit: what the
// parser accepts, Envoy must not reject (a NACK would block every other
// policy's updates on that sidecar).
func checkEnvoyAccepts(t *testing.T, policies []*policy.Policy) {
	t.Helper()
	if len(policies) == 0 {
		return
	}
	w := corpusWorld()
	w.Policies = policies
	out := translator.Translate(w, nodemeta.NodeGroup{Namespace: "default", Service: "entrance", Ports: []nodemeta.PortPair{{Listen: 15001, App: 8080}}})
	var resources []interface{ ValidateAll() error }
	for _, r := range out.Listeners {
		resources = append(resources, r)
	}
	for _, r := range out.Routes {
		resources = append(resources, r)
	}
	for _, r := range out.Clusters {
		resources = append(resources, r)
	}
	for _, r := range out.Endpoints {
		resources = append(resources, r)
	}
	for _, r := range out.Runtimes {
		resources = append(resources, r)
	}
	for _, r := range resources {
		if err := r.ValidateAll(); err != nil {
			t.Fatalf("Envoy would reject the translation of accepted policies: %v", err)
		}
	}
	for _, rc := range out.Routes {
		for _, vh := range rc.GetVirtualHosts() {
			for _, route := range vh.GetRoutes() {
				for _, h := range route.GetMatch().GetHeaders() {
					re := h.GetStringMatch().GetSafeRegex().GetRegex()
					if re == "" {
						continue
					}
					if size, err := policy.RE2ProgramSize(re); err != nil || size > policy.EnvoyRegexProgramLimit {
						t.Fatalf("Envoy would reject the regex %q of header %s (size %d, %v)", re, h.GetName(), size, err)
					}
				}
			}
		}
	}
}
