package main

import (
	"math"
	"os"

	"github.com/KimMachineGun/automemlimit/memlimit"
	"github.com/hashicorp/go-hclog"
)

// memoryLimitRatio is the share of the container's memory limit the Go
// runtime aims to stay under. The garbage collector otherwise lets the
// heap grow to twice what is live before it collects (GOGC 100): with
// thousands of sidecars that headroom is hundreds of megabytes, enough
// for a control plane inside its limit to be killed for memory. The rest
// of the limit is for what the runtime does not count (the binary, thread
// stacks outside Go).
const memoryLimitRatio = 0.9

// setMemoryLimit sets the Go runtime's soft memory limit from provider
// (the container's cgroup in serve), unless GOMEMLIMIT is set or
// AUTOMEMLIMIT=off, and logs what it did.
func setMemoryLimit(logger hclog.Logger, provider memlimit.Provider) {
	limit, err := memlimit.Set(memlimit.WithRatio(memoryLimitRatio), memlimit.WithProvider(provider))
	switch {
	case err != nil:
		logger.Warn("cannot read the container's memory limit; the Go runtime runs without a soft limit", "error", err)
	case os.Getenv("GOMEMLIMIT") != "":
		logger.Info("Go soft memory limit from GOMEMLIMIT", "bytes", limit)
	case limit == math.MaxInt64:
		logger.Debug("no container memory limit; the Go runtime runs without a soft limit")
	default:
		logger.Info("Go soft memory limit set from the container's memory limit", "bytes", limit, "ratio", memoryLimitRatio)
	}
}
