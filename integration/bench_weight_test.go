package integration

import (
	"fmt"
	"strconv"
	"time"

	"github.com/shadowplane/shadowplane/integration/harness"
)

// benchWeightPolicy is the bench stack's policy plus a routing rule that
// sends weight percent of entrance's requests to entrance-shadow. (The
// benchmark sends no traffic; the rule only needs a Service with a ready
// endpoint, so its weight is in force.)
func benchWeightPolicy(weight int) string {
	return policyYAML("50", "") + fmt.Sprintf(`- name: bench-canary
  service: entrance
  port: http
  routeTo:
  - {service: entrance-shadow, port: http, name: canary, weight: %d}
`, weight)
}

func (s *benchStack) weightKey() string {
	return "shadowplane." + s.ns + ".bench-canary.routeTo.route|" + s.ns + "|entrance-shadow|8080"
}

// changeWeight sets the i-th weight. Before the first, it adds the rule
// at weight 0 and waits for it, so that every timed change is a weight
// change alone (an RTDS update), like a percent change.
func changeWeight(s *benchStack, i int) time.Time {
	if i == 1 {
		s.writePolicy(benchWeightPolicy(0))
		if _, err := harness.PollUntil(s.ctx, time.Millisecond, 20*time.Second, func() (bool, error) {
			return weightIs(s, 0)
		}); err != nil {
			s.tb.Fatalf("the routing rule never reached Envoy: %v", err)
		}
	}
	return s.writePolicy(benchWeightPolicy(benchPercent(i)))
}

func weightSeen(s *benchStack, i int) (bool, error) { return weightIs(s, benchPercent(i)*10_000) }

func weightIs(s *benchStack, ppm int) (bool, error) {
	v, ok, err := s.sidecar.RuntimeValue(s.ctx, s.weightKey())
	if err != nil || !ok {
		return false, err
	}
	got, parseErr := strconv.ParseFloat(v, 64)
	return parseErr == nil && got == float64(ppm), nil
}
