package harness

import (
	"math"
	"testing"
)

func TestBinomialBounds(t *testing.T) {
	tests := []struct {
		n      int
		p      float64
		alpha  float64
		lo, hi int
	}{
		// Known exact values: for Bin(100, 0.5), P(X <= 39) = 0.0176 and
		// P(X <= 40) = 0.0284.
		{100, 0.5, 0.05, 40, 60},
		{4000, 0.25, 0.001, 911, 1091}, // checked with exact rational arithmetic
		{200, 0, 0.001, 0, 0},
		{200, 1, 0.001, 200, 200},
		{0, 0.3, 0.001, 0, 0},
		{185, 0.05, 0.001 / 20, 0, 23}, // likewise
	}
	for _, tc := range tests {
		lo, hi := BinomialBounds(tc.n, tc.p, tc.alpha)
		if lo != tc.lo || hi != tc.hi {
			t.Errorf("BinomialBounds(%d, %g, %g) = [%d, %d], want [%d, %d]", tc.n, tc.p, tc.alpha, lo, hi, tc.lo, tc.hi)
		}
	}
}

// The bounds are the tightest with at most alpha/2 outside on each side.
func TestBinomialBoundsTails(t *testing.T) {
	for _, n := range []int{1, 7, 150, 1000} {
		for _, p := range []float64{0.0001, 0.05, 0.3, 0.5, 0.9, 0.9999} {
			const alpha = 0.001
			pmf := binomialPMF(n, p)
			lo, hi := BinomialBounds(n, p, alpha)
			below, above := sum(pmf[:lo]), sum(pmf[hi+1:])
			if below > alpha/2+1e-12 || above > alpha/2+1e-12 {
				t.Errorf("n=%d p=%g: [%d, %d] leaves %g below and %g above, more than %g", n, p, lo, hi, below, above, alpha/2)
			}
			if lo < n && below+pmf[lo] <= alpha/2 {
				t.Errorf("n=%d p=%g: lo %d is not the tightest", n, p, lo)
			}
			if hi > 0 && above+pmf[hi] <= alpha/2 {
				t.Errorf("n=%d p=%g: hi %d is not the tightest", n, p, hi)
			}
			if total := sum(pmf); math.Abs(total-1) > 1e-9 {
				t.Errorf("n=%d p=%g: pmf sums to %g", n, p, total)
			}
		}
	}
}

func sum(xs []float64) float64 {
	s := 0.0
	for _, x := range xs {
		s += x
	}
	return s
}
