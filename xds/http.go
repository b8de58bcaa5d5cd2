package xds

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// HTTPHandler serves the probe and metrics endpoints, which the kubelet and
// Prometheus reach over the pod network:
//
//	/healthz          200 while the process serves HTTP
//	/readyz           200 when ready() reports true, else 503 with the reason;
//	                  a nil ready means "once the first World is set"; a
//	                  non-empty detail() is added to the body, never to the
//	                  status (e.g. a Kubernetes watch down while the last
//	                  known config is served)
//	/metrics          Prometheus metrics from Options.Gatherer
//
// The debug endpoints are not here but in DebugHandler, for a loopback
// listener.
func (s *Server) HTTPHandler(ready func() bool, detail func() string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		writeText(w, http.StatusOK, "ok")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if ready != nil && !ready() {
			writeText(w, http.StatusServiceUnavailable, "not ready: the initial sync with Kubernetes has not completed, or the control plane is shutting down")
			return
		}
		if ready == nil && !s.hasWorld() {
			writeText(w, http.StatusServiceUnavailable, "not ready: no World has been set yet")
			return
		}
		if detail != nil {
			if d := detail(); d != "" {
				writeText(w, http.StatusOK, "ready ("+d+")")
				return
			}
		}
		writeText(w, http.StatusOK, "ready")
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.gatherer, promhttp.HandlerOpts{}))
	return mux
}

func writeText(w http.ResponseWriter, code int, text string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(text + "\n"))
}
