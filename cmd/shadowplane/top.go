package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/shadowplane/shadowplane/internal/copystats"
)

func newTopCommand() *cobra.Command {
	var (
		address  string
		output   string
		interval time.Duration
		once     bool
	)
	cmd := &cobra.Command{
		Use:   "top",
		Short: "Show live per-policy copy metrics: configured and observed share, copies/s, errors, shadow p99",
		Long: `Show live per-policy copy metrics, summed over every sidecar.

It reads the control plane's /metrics (serve --http-address) every
--interval. OBS% is copies / matched requests since top started, beside the
configured CONF%; COPY/S, ERR% (5xx answers, drops and failures per copy)
and P99 (shadow latency) are over the last interval; SYNC is the policy's
sidecars whose xDS config is in sync, over those reporting copy stats. On a terminal the table refreshes in place;
-o json prints one JSON document per refresh.`,
		Example: `  kubectl -n shadowplane-system port-forward deploy/shadowplane 9090 &
  shadowplane top
  shadowplane top -o json --once`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return fmt.Errorf("--output %q: want table or json", output)
			}
			out := cmd.OutOrStdout()
			inPlace := output == "table" && !once && isTerminal(out)
			var first, prev []copystats.Mirror
			var prevAt time.Time
			for {
				now := time.Now()
				mirrors, err := fetchCopyMetrics(cmd.Context(), address)
				if err != nil {
					return err
				}
				if first == nil {
					first = mirrors
				}
				rows := topRows(first, prev, mirrors, now.Sub(prevAt))
				if err := renderTop(out, output, rows, inPlace); err != nil {
					return err
				}
				if once {
					return nil
				}
				prev, prevAt = mirrors, now
				select {
				case <-cmd.Context().Done():
					return nil
				case <-time.After(interval):
				}
			}
		},
	}
	cmd.Flags().StringVar(&address, "address", "http://127.0.0.1:9090", "control plane metrics address (its serve --http-address), e.g. a port-forward")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	cmd.Flags().DurationVar(&interval, "interval", 2*time.Second, "refresh interval")
	cmd.Flags().BoolVar(&once, "once", false, "print once and exit (shares and rates since the control plane started)")
	return cmd
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

func fetchCopyMetrics(ctx context.Context, address string) ([]copystats.Mirror, error) {
	if !strings.Contains(address, "://") {
		address = "http://" + address
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(address, "/")+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("read the control plane's metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s/metrics: %s", address, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, err
	}
	return copystats.ReadMetrics(bytes.NewReader(body))
}

// topRow is one line of top. Shares are percent; NaN means "no data yet".
type topRow struct {
	Namespace       string  `json:"namespace"`
	Policy          string  `json:"policy"`
	Mirror          string  `json:"mirror"`
	ConfiguredPct   float64 `json:"configuredPercent"`
	ObservedPct     float64 `json:"observedPercent"`
	Matched         float64 `json:"matched"`
	Copies          float64 `json:"copies"`
	CopiesPerSecond float64 `json:"copiesPerSecond"`
	ErrorRatio      float64 `json:"errorRatio"`
	P99Seconds      float64 `json:"p99Seconds"`
	Sidecars        int     `json:"sidecars"`
	InSync          int     `json:"sidecarsInSync"`
}

// topRows computes the rows: the observed share since the first reading
// (since the control plane started, if there is only one), the rates over
// the last interval (since the first reading, if there is no previous).
func topRows(first, prev, now []copystats.Mirror, elapsed time.Duration) []topRow {
	byKey := func(ms []copystats.Mirror) map[string]copystats.Mirror {
		out := make(map[string]copystats.Mirror, len(ms))
		for _, m := range ms {
			out[m.Key()] = m
		}
		return out
	}
	firstBy, prevBy := byKey(first), byKey(prev)
	rows := make([]topRow, 0, len(now))
	for _, m := range now {
		since := m
		if len(first) > 0 && len(prev) > 0 {
			since = m.Sub(firstBy[m.Key()])
		}
		last, seconds := since, 0.0
		if p, ok := prevBy[m.Key()]; ok {
			last, seconds = m.Sub(p), elapsed.Seconds()
		}
		row := topRow{
			Namespace: m.Namespace, Policy: m.Policy, Mirror: m.Mirror,
			ConfiguredPct: m.Configured * 100,
			ObservedPct:   ratio(since.Copies, since.Matched) * 100,
			Matched:       m.Matched, Copies: m.Copies,
			CopiesPerSecond: ratio(last.Copies, seconds),
			ErrorRatio:      ratio(last.Errors(), last.Copies),
			P99Seconds:      copystats.Quantile(0.99, last.LatencyBuckets, last.LatencyCount),
			Sidecars:        m.Sidecars,
			InSync:          m.InSync,
		}
		rows = append(rows, row)
	}
	return rows
}

func ratio(a, b float64) float64 {
	if b <= 0 {
		return math.NaN()
	}
	return a / b
}

// renderTop writes one refresh: a table that fits 80 columns, or JSON.
func renderTop(w io.Writer, output string, rows []topRow, inPlace bool) error {
	if output == "json" {
		doc := struct {
			Mirrors []jsonTopRow `json:"mirrors"`
		}{Mirrors: make([]jsonTopRow, len(rows))}
		for i, r := range rows {
			doc.Mirrors[i] = jsonTopRow(r)
		}
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(doc)
	}
	var b strings.Builder
	if inPlace {
		b.WriteString("\x1b[H\x1b[2J") // home, clear: refresh in place
	}
	fmt.Fprintf(&b, "%-24s %-10s %6s %6s %7s %6s %7s %7s\n", "POLICY", "MIRROR", "CONF%", "OBS%", "COPY/S", "ERR%", "P99", "SYNC")
	for _, r := range rows {
		fmt.Fprintf(&b, "%-24s %-10s %6s %6s %7s %6s %7s %7s\n",
			cut(r.Namespace+"/"+r.Policy, 24), cut(r.Mirror, 10),
			fixed(r.ConfiguredPct, 2), fixed(r.ObservedPct, 2), fixed(r.CopiesPerSecond, 1),
			fixed(r.ErrorRatio*100, 1), duration(r.P99Seconds), fmt.Sprintf("%d/%d", r.InSync, r.Sidecars))
	}
	if len(rows) == 0 {
		b.WriteString("no copy policies in force\n")
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// jsonTopRow writes NaN (no data yet) as null.
type jsonTopRow topRow

func (r jsonTopRow) MarshalJSON() ([]byte, error) {
	m := map[string]any{
		"namespace": r.Namespace, "policy": r.Policy, "mirror": r.Mirror, "sidecars": r.Sidecars, "sidecarsInSync": r.InSync,
		"matched": r.Matched, "copies": r.Copies,
	}
	for k, v := range map[string]float64{
		"configuredPercent": r.ConfiguredPct, "observedPercent": r.ObservedPct, "copiesPerSecond": r.CopiesPerSecond,
		"errorRatio": r.ErrorRatio, "p99Seconds": r.P99Seconds,
	} {
		if math.IsNaN(v) {
			m[k] = nil
		} else {
			m[k] = v
		}
	}
	return json.Marshal(m)
}

// cut shortens s to n columns, marking the cut with "~".
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "~"
}

func fixed(v float64, decimals int) string {
	if math.IsNaN(v) {
		return "-"
	}
	return fmt.Sprintf("%.*f", decimals, v)
}

func duration(seconds float64) string {
	switch {
	case math.IsNaN(seconds):
		return "-"
	case seconds < 1:
		return fmt.Sprintf("%.1fms", seconds*1000)
	default:
		return fmt.Sprintf("%.2fs", seconds)
	}
}
