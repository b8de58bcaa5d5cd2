// Package logging builds shadowplane's logger: hclog, as text or JSON, with
// every entry bounded to MaxLine bytes, and klog — the logger of client-go
// and the rest of the Kubernetes libraries — routed through it, so that one
// process writes one format.
package logging

import (
	"fmt"
	"io"
	"strings"

	"github.com/hashicorp/go-hclog"
)

// MaxLine is the most bytes one log entry may take, newline included.
// Longer entries have their longest values cut (see NewBoundedWriter); a
// 1 MiB error detail from a client then costs 4 KiB of log, not 1 MiB.
const MaxLine = 4 << 10

// Options configure New.
type Options struct {
	Name  string
	Level hclog.Level
	JSON  bool
	// Output receives the entries (default: stderr).
	Output io.Writer
	// MaxLine overrides MaxLine (tests).
	MaxLine int
}

// New returns an hclog logger whose entries never exceed MaxLine bytes.
func New(o Options) hclog.Logger {
	if o.Output == nil {
		o.Output = hclog.DefaultOutput
	}
	if o.MaxLine <= 0 {
		o.MaxLine = MaxLine
	}
	return hclog.New(&hclog.LoggerOptions{
		Name:       o.Name,
		Level:      o.Level,
		JSONFormat: o.JSON,
		Output:     NewBoundedWriter(o.Output, o.MaxLine, o.JSON),
	})
}

// ParseLevel reads a --log-level value; unlike hclog.LevelFromString it
// refuses what it does not know instead of logging nothing.
func ParseLevel(s string) (hclog.Level, error) {
	level := hclog.LevelFromString(s)
	if level == hclog.NoLevel || level == hclog.Off {
		return hclog.NoLevel, fmt.Errorf("%q: want trace, debug, info, warn or error", s)
	}
	return level, nil
}

// ParseFormat reads a --log-format value and reports whether it is JSON.
func ParseFormat(s string) (json bool, err error) {
	switch strings.ToLower(s) {
	case "json":
		return true, nil
	case "text":
		return false, nil
	}
	return false, fmt.Errorf("%q: want text or json", s)
}
