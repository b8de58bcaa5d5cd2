package harness

import "testing"

func TestRuntimeShare(t *testing.T) {
	tests := []struct {
		in   string
		want uint32
		ok   bool
	}{
		{"goo.gle/debugonly  \nfields {\n  key: \"denominator\"\n  value {\n    string_value: \"MILLION\"\n  }\n}\nfields {\n  key: \"numerator\"\n  value {\n    number_value: 1000000\n  }\n}\n", 1_000_000, true},
		{`fields { key: "numerator" value { number_value: 15000 } } fields { key: "denominator" value { string_value: "MILLION" } }`, 15000, true},
		{`fields { key: "numerator" value { number_value: 0 } } fields { key: "denominator" value { string_value: "MILLION" } }`, 0, true},
		{`fields { key: "numerator" value { number_value: 25 } } fields { key: "denominator" value { string_value: "HUNDRED" } }`, 0, false},
		{"25", 0, false},
		{"", 0, false},
	}
	for _, tc := range tests {
		got, ok := RuntimeShare(tc.in)
		if got != tc.want || ok != tc.ok {
			t.Errorf("RuntimeShare(%q) = %d, %v; want %d, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}
