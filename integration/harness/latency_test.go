package harness

import (
	"testing"
	"time"
)

func TestSummarizeLatencies(t *testing.T) {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[len(hundred)-1-i] = ms(i + 1) // unsorted on purpose
	}
	tests := []struct {
		name    string
		samples []time.Duration
		want    LatencySummary
	}{
		{"none", nil, LatencySummary{}},
		{"one", []time.Duration{ms(7)}, LatencySummary{N: 1, P50: ms(7), P90: ms(7), P99: ms(7), Max: ms(7)}},
		{"1..100 ms", hundred, LatencySummary{N: 100, P50: ms(50), P90: ms(90), P99: ms(99), Max: ms(100)}},
		{"ten", []time.Duration{ms(10), ms(1), ms(9), ms(2), ms(8), ms(3), ms(7), ms(4), ms(6), ms(5)},
			LatencySummary{N: 10, P50: ms(5), P90: ms(9), P99: ms(10), Max: ms(10)}},
	}
	for _, tc := range tests {
		if got := SummarizeLatencies(tc.samples); got != tc.want {
			t.Errorf("%s: got %+v, want %+v", tc.name, got, tc.want)
		}
	}
}
