package xds

import (
	"fmt"

	"github.com/envoyproxy/go-control-plane/pkg/log"
	"github.com/hashicorp/go-hclog"
)

// hclogAdapter lets go-control-plane log through hclog.
//
// go-control-plane reports routine protocol events at info and warn: every
// watch it opens, every stale nonce, and ADS holding back endpoints until
// Envoy names a newly added cluster. Each of its levels is mapped one step
// down so an operator's info log carries shadowplane's own events; errors
// stay errors.
type hclogAdapter struct {
	log hclog.Logger
}

var _ log.Logger = hclogAdapter{}

func (a hclogAdapter) Debugf(format string, args ...any) {
	if a.log.IsTrace() {
		a.log.Trace(fmt.Sprintf(format, args...))
	}
}

func (a hclogAdapter) Infof(format string, args ...any) {
	if a.log.IsDebug() {
		a.log.Debug(fmt.Sprintf(format, args...))
	}
}

func (a hclogAdapter) Warnf(format string, args ...any) {
	if a.log.IsInfo() {
		a.log.Info(fmt.Sprintf(format, args...))
	}
}

func (a hclogAdapter) Errorf(format string, args ...any) {
	a.log.Error(fmt.Sprintf(format, args...))
}
