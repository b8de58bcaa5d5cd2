package xds

import (
	"bytes"
	"strings"
	"testing"

	"github.com/hashicorp/go-hclog"
)

func TestHCLogAdapterShiftsLevelsDown(t *testing.T) {
	tests := []struct {
		level hclog.Level
		want  []string // lines expected, by adapter method
		skip  []string // messages that must not appear
	}{
		{level: hclog.Info, want: []string{"[INFO]  warn 3", "[ERROR] error 4"}, skip: []string{"debug 1", "info 2"}},
		{level: hclog.Trace, want: []string{"[TRACE] debug 1", "[DEBUG] info 2", "[INFO]  warn 3", "[ERROR] error 4"}},
		{level: hclog.Error, want: []string{"[ERROR] error 4"}, skip: []string{"debug 1", "info 2", "warn 3"}},
	}
	for _, tt := range tests {
		t.Run(tt.level.String(), func(t *testing.T) {
			var buf bytes.Buffer
			a := hclogAdapter{log: hclog.New(&hclog.LoggerOptions{Level: tt.level, Output: &buf})}
			a.Debugf("debug %d", 1)
			a.Infof("info %d", 2)
			a.Warnf("warn %d", 3)
			a.Errorf("error %d", 4)
			out := buf.String()
			for _, want := range tt.want {
				if !strings.Contains(out, want) {
					t.Errorf("output lacks %q:\n%s", want, out)
				}
			}
			for _, skip := range tt.skip {
				if strings.Contains(out, skip) {
					t.Errorf("output has %q at level %s:\n%s", skip, tt.level, out)
				}
			}
		})
	}
}
