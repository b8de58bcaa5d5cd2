package policy_test

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/shadowplane/shadowplane/policy"
	"github.com/shadowplane/shadowplane/translator"
)

// corpusOptions are the control plane settings the corpus is written for.
var corpusOptions = policy.ParseOptions{AllowedURLHosts: []string{"10.16.0.0/16", "*.staging.example.com"}}

// corpusWorld is the cluster the corpus is checked against: default/entrance
// has one port, http (80), and default/entrance-shadow exists.
func corpusWorld() *translator.World {
	return &translator.World{Services: map[string]*translator.Service{
		"default/entrance": {Namespace: "default", Name: "entrance",
			Ports: []translator.ServicePort{{Name: "http", Port: 80, TargetPort: 15001, Protocol: "TCP"}}},
		"default/entrance-shadow": {Namespace: "default", Name: "entrance-shadow",
			Ports: []translator.ServicePort{{Name: "http", Port: 80, TargetPort: 8080, Protocol: "TCP"}}},
	}}
}

// TestInvalidCorpus parses every broken ConfigMap of testdata/invalid and
// checks that it yields the error its first line announces and no valid
// policy named entrance-to-staging.
func TestInvalidCorpus(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "invalid", "*.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) < 30 {
		t.Fatalf("want at least 30 corpus files, found %d", len(files))
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			data, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			expect := corpusExpectation(t, data)
			policies, errs := policy.ParseConfigMapFile(filepath.Base(file), data, corpusOptions)
			var valid []*policy.Policy
			for _, p := range policies {
				refErrs := translator.CheckReferences(p, corpusWorld())
				errs = append(errs, refErrs...)
				if !hasNonWarning(refErrs) {
					valid = append(valid, p)
				}
			}
			found := false
			for _, e := range errs {
				if e.Message == "" {
					t.Errorf("error with empty message: %#v", e)
				}
				if !e.Warning && strings.Contains(e.Error(), expect) {
					found = true
				}
			}
			if !found {
				t.Errorf("no error contains %q; got:\n%s", expect, policy.RenderErrors(errs))
			}
			for _, p := range valid {
				if p.Name == "entrance-to-staging" {
					t.Errorf("policy entrance-to-staging parsed as valid: %+v", p)
				}
			}
		})
	}
}

// corpusExpectation reads "# expect: <substring>" from the first line.
func corpusExpectation(t *testing.T, data []byte) string {
	t.Helper()
	first, _, _ := bufio.NewReader(bytes.NewReader(data)).ReadLine()
	expect, ok := strings.CutPrefix(string(first), "# expect: ")
	if !ok || strings.TrimSpace(expect) == "" {
		t.Fatalf("first line must be \"# expect: <substring>\", got %q", first)
	}
	return expect
}

func hasNonWarning(errs []*policy.PolicyError) bool {
	for _, e := range errs {
		if !e.Warning {
			return true
		}
	}
	return false
}
