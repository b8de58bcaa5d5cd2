package main

import (
	"math"
	"os"
	"runtime/debug"
	"testing"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"github.com/hashicorp/go-hclog"
)

func TestSetMemoryLimit(t *testing.T) {
	const containerLimit = 1 << 30
	tests := []struct {
		name       string
		env        map[string]string
		provider   memlimit.Provider
		wantLimit  int64
		keepBefore bool
	}{
		{name: "90 % of the container's limit", provider: memlimit.Limit(containerLimit), wantLimit: containerLimit * 9 / 10},
		{name: "no container limit", provider: func() (uint64, error) { return 0, memlimit.ErrNoLimit }, wantLimit: math.MaxInt64},
		{name: "GOMEMLIMIT wins", env: map[string]string{"GOMEMLIMIT": "123MiB"}, provider: memlimit.Limit(containerLimit), keepBefore: true},
		{name: "AUTOMEMLIMIT=off", env: map[string]string{"AUTOMEMLIMIT": "off"}, provider: memlimit.Limit(containerLimit), keepBefore: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := debug.SetMemoryLimit(-1)
			t.Cleanup(func() { debug.SetMemoryLimit(before) })
			for _, k := range []string{"GOMEMLIMIT", "AUTOMEMLIMIT"} {
				t.Setenv(k, "") // restored after the test
				os.Unsetenv(k)
			}
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			setMemoryLimit(hclog.NewNullLogger(), tc.provider)
			got := debug.SetMemoryLimit(-1)
			want := tc.wantLimit
			if tc.keepBefore {
				want = before
			}
			if got != want {
				t.Errorf("soft memory limit = %d, want %d", got, want)
			}
		})
	}
}
