package harness

import "math"

// BinomialBounds returns the interval [lo, hi] that the number of successes
// in n trials of probability p falls outside of with probability at most
// alpha, alpha/2 on each side, from the exact binomial distribution (not a
// normal approximation, which is poor for the small shares and few trials
// of a per-step count). With p = 0 it is [0, 0], with p = 1 [n, n].
func BinomialBounds(n int, p, alpha float64) (lo, hi int) {
	if n <= 0 {
		return 0, 0
	}
	if p <= 0 {
		return 0, 0
	}
	if p >= 1 {
		return n, n
	}
	pmf := binomialPMF(n, p)
	tail := alpha / 2
	// lo: the largest k with P(X < k) <= tail.
	below := 0.0
	for lo = 0; lo < n && below+pmf[lo] <= tail; lo++ {
		below += pmf[lo]
	}
	// hi: the smallest k with P(X > k) <= tail.
	above := 0.0
	for hi = n; hi > 0 && above+pmf[hi] <= tail; hi-- {
		above += pmf[hi]
	}
	return lo, hi
}

// binomialPMF returns P(X = k) for k = 0..n, computed in log space so large
// n neither overflows nor underflows.
func binomialPMF(n int, p float64) []float64 {
	out := make([]float64, n+1)
	lnN, _ := math.Lgamma(float64(n + 1))
	for k := 0; k <= n; k++ {
		lnK, _ := math.Lgamma(float64(k + 1))
		lnNK, _ := math.Lgamma(float64(n - k + 1))
		out[k] = math.Exp(lnN - lnK - lnNK + float64(k)*math.Log(p) + float64(n-k)*math.Log1p(-p))
	}
	return out
}

// ShareAlpha is the chance that one statistical share check of the
// integration tests fails a correct run. The suite makes a few dozen
// such checks; at 0.001 each, about one correct run in thirty failed
// one of them, which says nothing about the code. At 1e-5 a correct run
// fails any with a chance well under 0.1 %, while a wrong share (twice
// or half the configured one, a copy to the wrong target) still lies far
// outside every interval the tests use.
const ShareAlpha = 1e-5

// ShareZ is the two-sided normal quantile of ShareAlpha, for the checks
// that use the normal approximation.
const ShareZ = 4.4172

// ShareConfidence names the interval in test messages.
const ShareConfidence = "99.999 %"
