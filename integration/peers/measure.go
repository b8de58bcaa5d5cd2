package peers

import (
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// MirrorShare finds, in an Envoy /config_dump of route configs, the share
// (parts per million) that a route's request mirror policy copies to
// cluster: its runtime_fraction's default_value. Istio carries a mirror
// percentage there and nowhere else. ok is false when no such policy is in
// the dump; several routes mirroring to cluster must agree.
func MirrorShare(configDump []byte, cluster string) (ppm uint32, ok bool, err error) {
	var doc any
	if err := json.Unmarshal(configDump, &doc); err != nil {
		return 0, false, fmt.Errorf("decode config_dump: %w", err)
	}
	var shares []uint32
	var walk func(v any) error
	walk = func(v any) error {
		switch v := v.(type) {
		case map[string]any:
			if policies, isList := v["request_mirror_policies"].([]any); isList {
				for _, p := range policies {
					share, mine, err := policyShare(p, cluster)
					if err != nil {
						return err
					}
					if mine {
						shares = append(shares, share)
					}
				}
			}
			for _, child := range v {
				if err := walk(child); err != nil {
					return err
				}
			}
		case []any:
			for _, child := range v {
				if err := walk(child); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk(doc); err != nil {
		return 0, false, err
	}
	if len(shares) == 0 {
		return 0, false, nil
	}
	for _, s := range shares[1:] {
		if s != shares[0] {
			return 0, false, fmt.Errorf("routes disagree on the share mirrored to %s: %v", cluster, shares)
		}
	}
	return shares[0], true, nil
}

// policyShare reads one request mirror policy of Envoy's JSON.
func policyShare(policy any, cluster string) (ppm uint32, mine bool, err error) {
	p, _ := policy.(map[string]any)
	if p == nil || p["cluster"] != cluster {
		return 0, false, nil
	}
	fraction, _ := p["runtime_fraction"].(map[string]any)
	value, _ := fraction["default_value"].(map[string]any)
	if value == nil {
		return 1_000_000, true, nil // no fraction: every request
	}
	numerator, _ := value["numerator"].(float64) // absent when 0
	perMillion := map[any]float64{nil: 10_000, "HUNDRED": 10_000, "TEN_THOUSAND": 100, "MILLION": 1}[value["denominator"]]
	if perMillion == 0 {
		return 0, false, fmt.Errorf("mirror to %s: unknown denominator %v", cluster, value["denominator"])
	}
	return uint32(numerator * perMillion), true, nil
}

// ProcessUsage is a process's CPU time so far and its memory now, from
// /proc.
type ProcessUsage struct {
	CPU time.Duration // user + system
	RSS int64         // bytes resident now
	HWM int64         // peak resident bytes
}

// clockTicks is USER_HZ, which Linux fixes at 100 for /proc/<pid>/stat.
const clockTicks = 100

// ReadProcessUsage reads /proc/<pid>/stat and /proc/<pid>/status.
func ReadProcessUsage(pid int) (ProcessUsage, error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ProcessUsage{}, err
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ProcessUsage{}, err
	}
	return parseProcessUsage(string(stat), string(status))
}

func parseProcessUsage(stat, status string) (ProcessUsage, error) {
	// The command name (field 2) may hold spaces and parentheses; the
	// fields after its closing parenthesis start with field 3 (state).
	end := strings.LastIndexByte(stat, ')')
	if end < 0 {
		return ProcessUsage{}, fmt.Errorf("unexpected /proc stat %q", stat)
	}
	fields := strings.Fields(stat[end+1:])
	if len(fields) < 13 {
		return ProcessUsage{}, fmt.Errorf("unexpected /proc stat %q", stat)
	}
	var u ProcessUsage
	for _, f := range fields[11:13] { // utime (14), stime (15)
		ticks, err := strconv.ParseInt(f, 10, 64)
		if err != nil {
			return ProcessUsage{}, fmt.Errorf("cpu ticks %q: %w", f, err)
		}
		u.CPU += time.Duration(ticks) * time.Second / clockTicks
	}
	for _, line := range strings.Split(status, "\n") {
		name, value, ok := strings.Cut(line, ":")
		if !ok || (name != "VmRSS" && name != "VmHWM") {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(value), " kB"), 10, 64)
		if err != nil {
			return ProcessUsage{}, fmt.Errorf("%s %q: %w", name, value, err)
		}
		if name == "VmRSS" {
			u.RSS = kb * 1024
		} else {
			u.HWM = kb * 1024
		}
	}
	return u, nil
}
