package harness

import (
	"regexp"
	"strconv"
)

// Envoy's /runtime shows a Struct runtime value as protobuf debug text, e.g.
//
//	fields { key: "denominator" value { string_value: "MILLION" } }
//	fields { key: "numerator" value { number_value: 250000 } }
var (
	runtimeNumerator   = regexp.MustCompile(`key:\s*"numerator"\s*value\s*\{\s*number_value:\s*([0-9.eE+-]+)`)
	runtimeDenominator = regexp.MustCompile(`key:\s*"denominator"\s*value\s*\{\s*string_value:\s*"([A-Z_]+)"`)
)

// RuntimeShare decodes a fractional-percent runtime value from Envoy's
// /runtime into parts per million.
func RuntimeShare(finalValue string) (uint32, bool) {
	num := runtimeNumerator.FindStringSubmatch(finalValue)
	den := runtimeDenominator.FindStringSubmatch(finalValue)
	if num == nil || den == nil || den[1] != "MILLION" {
		return 0, false
	}
	n, err := strconv.ParseFloat(num[1], 64)
	if err != nil || n < 0 || n > 1e6 {
		return 0, false
	}
	return uint32(n), true
}

// RuntimeShareIs reports whether a runtime final_value holds the share ppm.
func RuntimeShareIs(finalValue string, ppm uint32) bool {
	got, ok := RuntimeShare(finalValue)
	return ok && got == ppm
}
