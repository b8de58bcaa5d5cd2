package logging

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
	"k8s.io/klog/v2"
)

// TestKlogComesOutAsJSON routes klog (process-wide) through a JSON logger
// and checks what client-go's kinds of calls produce.
func TestKlogComesOutAsJSON(t *testing.T) {
	var out bytes.Buffer
	logger := New(Options{Name: "shadowplane", Level: hclog.Debug, JSON: true, Output: &out})
	RouteKlog(logger.Named("klog"))
	defer klog.ClearLogger()

	pod := klog.KRef("team-a", "entrance-1")
	klog.InfoS("Caches populated", "type", "*v1.ConfigMap", "pod", pod)
	klog.Errorf("failed to list %s: %s", "*v1.ConfigMap", "configmaps is forbidden")
	klog.ErrorS(errors.New("connection refused"), "Watch failed", "resource", "services")
	klog.V(2).InfoS("debug detail", "n", 2)
	klog.V(4).InfoS("trace detail, off at debug")
	klog.Background().WithName("reflector").V(1).Info("contextual", "k", "v")
	klog.InfoS("huge", "body", strings.Repeat("z", 1<<20))
	klog.Flush()

	var entries []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
		if len(line) > MaxLine {
			t.Errorf("klog line is %d bytes, over %d", len(line), MaxLine)
		}
		var e map[string]any
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("klog line is not JSON: %q", line)
		}
		entries = append(entries, e)
	}
	want := []map[string]any{
		{"@level": "info", "@module": "shadowplane.klog", "@message": "Caches populated", "type": "*v1.ConfigMap",
			"pod": map[string]any{"name": "entrance-1", "namespace": "team-a"}},
		{"@level": "error", "@module": "shadowplane.klog", "@message": "failed to list *v1.ConfigMap: configmaps is forbidden"},
		{"@level": "error", "@module": "shadowplane.klog", "@message": "Watch failed", "resource": "services", "error": "connection refused"},
		{"@level": "debug", "@module": "shadowplane.klog", "@message": "debug detail", "n": float64(2)},
		{"@level": "debug", "@module": "shadowplane.klog.reflector", "@message": "contextual", "k": "v"},
		{"@level": "info", "@module": "shadowplane.klog", "@message": "huge"},
	}
	if len(entries) != len(want) {
		t.Fatalf("got %d entries, want %d:\n%s", len(entries), len(want), out.String()[:min(out.Len(), 2000)])
	}
	for i, w := range want {
		for k, v := range w {
			got, _ := json.Marshal(entries[i][k])
			wantJSON, _ := json.Marshal(v)
			if string(got) != string(wantJSON) {
				t.Errorf("entry %d: %s = %s, want %s", i, k, got, wantJSON)
			}
		}
		if entries[i]["@timestamp"] == nil {
			t.Errorf("entry %d has no @timestamp", i)
		}
	}
	if body, _ := entries[5]["body"].(string); !strings.Contains(body, "[... cut, 1048576 bytes in all]") {
		t.Errorf("1 MiB klog value not cut with the marker: %.80q", body)
	}
}

func TestVerbosityFollowsLevel(t *testing.T) {
	tests := []struct {
		level     hclog.Level
		enabled   []int
		disabled  []int
		verbosity int
	}{
		{level: hclog.Info, enabled: []int{0}, disabled: []int{1, 2, 4}, verbosity: 0},
		{level: hclog.Debug, enabled: []int{0, 1, 2}, disabled: []int{3, 4}, verbosity: 2},
		{level: hclog.Trace, enabled: []int{0, 2, 4}, disabled: []int{5, 6}, verbosity: 4},
		{level: hclog.Warn, disabled: []int{0, 1}, verbosity: 0},
	}
	for _, tt := range tests {
		sink := &hclogSink{log: hclog.New(&hclog.LoggerOptions{Level: tt.level}), verbosity: verbosityFor(tt.level)}
		if sink.verbosity != tt.verbosity {
			t.Errorf("%s: klog verbosity %d, want %d", tt.level, sink.verbosity, tt.verbosity)
		}
		for _, v := range tt.enabled {
			if !sink.Enabled(v) {
				t.Errorf("%s: V(%d) disabled, want enabled", tt.level, v)
			}
		}
		for _, v := range tt.disabled {
			if sink.Enabled(v) {
				t.Errorf("%s: V(%d) enabled, want disabled", tt.level, v)
			}
		}
	}
}
