package policy

import (
	"strings"
	"testing"
)

func TestRegexProblem(t *testing.T) {
	accepted := []string{
		"^beta$", "^(batch|bulk)-[0-9]+$", ".*canary.*", "(?i)^(beta|gamma)-tenant-[a-z0-9]{1,8}$",
		"[^/]+", "^[0-9a-f]{32}$", "a{95}",
	}
	for _, re := range accepted {
		if problem := regexProblem(re); problem != "" {
			t.Errorf("regexProblem(%q) = %q, want none", re, problem)
		}
	}
	// Envoy 1.40 rejects each of these with an RE2 program size above 100.
	tooBig := []string{"a{100}", "(foo|bar){20}", "(abc){25}", ".{52}", "\\pL{20}", "[0-9a-fA-F]{60}", "(?i)k{100}", "\\S{50}", "[ace]{40}"}
	for _, re := range tooBig {
		if problem := regexProblem(re); !strings.Contains(problem, "too complex for Envoy") {
			t.Errorf("regexProblem(%q) = %q, want too complex", re, problem)
		}
	}
	for _, re := range []string{"(", "a**", "(?=x)", "\\8", "x{1001}"} {
		if problem := regexProblem(re); !strings.Contains(problem, "not a valid RE2 regular expression") {
			t.Errorf("regexProblem(%q) = %q, want invalid", re, problem)
		}
	}
}
