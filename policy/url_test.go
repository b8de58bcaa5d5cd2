package policy

import "testing"

func TestHostAllowed(t *testing.T) {
	patterns := []string{"shadow.example.org", "*.staging.example.com", "10.16.0.0/16", "192.0.2.7", "fd00::/8", " Upper.Example.NET. ", "[2001:db8::1]"}
	tests := []struct {
		host string
		want bool
	}{
		{"shadow.example.org", true},
		{"other.example.org", false},
		{"a.staging.example.com", true},
		{"a.b.staging.example.com", true},
		{"staging.example.com", false},
		{"xstaging.example.com", false},
		{"10.16.3.4", true},
		{"10.17.0.1", false},
		{"192.0.2.7", true},
		{"192.0.2.8", false},
		{"fd00::1", true},
		{"fe80::1", false},
		{"::ffff:10.16.0.1", true}, // IPv4-mapped IPv6 is the IPv4 address
		{"upper.example.net", true},
		{"2001:db8::1", true},
	}
	for _, tt := range tests {
		if got := hostAllowed(tt.host, patterns); got != tt.want {
			t.Errorf("hostAllowed(%q) = %v, want %v", tt.host, got, tt.want)
		}
	}
	if hostAllowed("10.16.0.1", nil) {
		t.Error("with no patterns nothing is allowed")
	}
}

func TestValidateURLHostPattern(t *testing.T) {
	for _, ok := range []string{"example.com", "*.example.com", "10.16.0.0/16", "10.0.0.1", "fd00::/8", "::1", "[::1]"} {
		if err := ValidateURLHostPattern(ok); err != nil {
			t.Errorf("ValidateURLHostPattern(%q) = %v, want nil", ok, err)
		}
	}
	for _, bad := range []string{"", "*", "*.", "*.*.example.com", "10.16.0.0/33", "exa mple.com", "http://example.com", "example.com:80", "10.0.0.300"} {
		if err := ValidateURLHostPattern(bad); err == nil {
			t.Errorf("ValidateURLHostPattern(%q) = nil, want an error", bad)
		}
	}
}
