package logging

import (
	"flag"
	"strconv"

	"github.com/go-logr/logr"
	"github.com/hashicorp/go-hclog"
	"k8s.io/klog/v2"
)

// klog verbosity levels and the hclog levels they map to: V(0) is info,
// V(1) and V(2) are debug, V(3) and V(4) trace. Above V(4) client-go logs
// every request and body, which no shadowplane level enables.
const (
	debugVerbosity = 2
	traceVerbosity = 4
)

// RouteKlog sends klog's output — client-go's reflector, leader election
// and event broadcaster messages among others — to logger, in its format
// and within its line bound, and sets klog's verbosity to match logger's
// level. klog is process-wide: call this once, at start.
func RouteKlog(logger hclog.Logger) {
	sink := &hclogSink{log: logger, verbosity: verbosityFor(logger.GetLevel())}
	// ContextualLogger: client-go's klog.FromContext calls reach the sink
	// directly, which checks the verbosity itself.
	klog.SetLoggerWithOptions(logr.New(sink), klog.ContextualLogger(true))
	flags := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(flags)
	// "v" is a klog flag registered just above; setting a registered int
	// flag to an integer cannot fail.
	_ = flags.Set("v", strconv.Itoa(sink.verbosity))
}

// verbosityFor is the klog verbosity an hclog level shows.
func verbosityFor(level hclog.Level) int {
	switch {
	case level <= hclog.Trace:
		return traceVerbosity
	case level <= hclog.Debug:
		return debugVerbosity
	default:
		return 0
	}
}

// hclogSink is a logr.LogSink writing to hclog.
type hclogSink struct {
	log       hclog.Logger
	verbosity int
}

var _ logr.LogSink = (*hclogSink)(nil)

func (s *hclogSink) Init(logr.RuntimeInfo) {}

// levelFor maps a klog/logr verbosity to an hclog level.
func levelFor(v int) hclog.Level {
	switch {
	case v <= 0:
		return hclog.Info
	case v <= debugVerbosity:
		return hclog.Debug
	default:
		return hclog.Trace
	}
}

func (s *hclogSink) Enabled(v int) bool {
	return v <= s.verbosity && s.log.GetLevel() <= levelFor(v)
}

func (s *hclogSink) Info(v int, msg string, keysAndValues ...any) {
	s.log.Log(levelFor(v), msg, marshalValues(keysAndValues)...)
}

func (s *hclogSink) Error(err error, msg string, keysAndValues ...any) {
	args := marshalValues(keysAndValues)
	if err != nil {
		args = append(args, "error", err.Error())
	}
	s.log.Error(msg, args...)
}

func (s *hclogSink) WithValues(keysAndValues ...any) logr.LogSink {
	return &hclogSink{log: s.log.With(marshalValues(keysAndValues)...), verbosity: s.verbosity}
}

func (s *hclogSink) WithName(name string) logr.LogSink {
	return &hclogSink{log: s.log.Named(name), verbosity: s.verbosity}
}

// marshalValues lets values that know how to log themselves (klog.KObj and
// other logr.Marshalers) do so.
func marshalValues(keysAndValues []any) []any {
	out := make([]any, len(keysAndValues))
	for i, v := range keysAndValues {
		if m, ok := v.(logr.Marshaler); ok && i%2 == 1 {
			v = m.MarshalLog()
		}
		out[i] = v
	}
	return out
}
