package harness

import (
	"encoding/json"
	"strconv"
)

// RuntimeShareIs reports whether a runtime final_value from Envoy's /runtime
// holds the share ppm (parts per million).
func RuntimeShareIs(finalValue string, ppm uint32) bool {
	var fraction struct {
		Numerator   json.Number `json:"numerator"`
		Denominator string      `json:"denominator"`
	}
	if err := json.Unmarshal([]byte(finalValue), &fraction); err == nil && fraction.Numerator != "" {
		n, err := strconv.ParseUint(fraction.Numerator.String(), 10, 32)
		return err == nil && fraction.Denominator == "MILLION" && uint32(n) == ppm
	}
	return false
}
