package fleet

import (
	"fmt"
	"math"
	"strings"
)

// Series is one line of a plot: a value per x.
type Series struct {
	Name   string
	Unit   string
	Color  string
	Values []float64
}

// PlotSVG draws each series against xs on its own panel, stacked, with its
// own y scale from 0, and the x axis labelled xLabel: a small, dependency
// free chart for docs/benchmarks.md.
func PlotSVG(title, xLabel string, xs []float64, series []Series) string {
	const (
		width, panelHeight = 560, 180
		left, right        = 70, 20
		top, gap           = 40, 50
	)
	height := top + len(series)*(panelHeight+gap)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/><text x="%d" y="22" font-size="14">%s</text>`+"\n", left, escape(title))
	maxX := 0.0
	for _, x := range xs {
		maxX = math.Max(maxX, x)
	}
	px := func(x float64) float64 { return left + x/maxX*float64(width-left-right) }
	for i, s := range series {
		y0 := float64(top + i*(panelHeight+gap))
		maxY := 0.0
		for _, v := range s.Values {
			maxY = math.Max(maxY, v)
		}
		if maxY == 0 {
			maxY = 1
		}
		maxY *= 1.15
		py := func(v float64) float64 { return y0 + panelHeight - v/maxY*panelHeight }
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="black"/>`+"\n", left, y0+panelHeight, width-right, y0+panelHeight)
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="black"/>`+"\n", left, y0, left, y0+panelHeight)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" fill="%s">%s (%s)</text>`+"\n", left+5, y0-6, s.Color, escape(s.Name), escape(s.Unit))
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%.4g</text><text x="%d" y="%.1f" text-anchor="end">0</text>`+"\n",
			left-5, y0+10, maxY/1.15, left-5, y0+panelHeight)
		var points []string
		for j, v := range s.Values {
			if j >= len(xs) {
				break
			}
			points = append(points, fmt.Sprintf("%.1f,%.1f", px(xs[j]), py(v)))
			fmt.Fprintf(&b, `<circle cx="%.1f" cy="%.1f" r="3" fill="%s"/><text x="%.1f" y="%.1f" text-anchor="middle">%.4g</text>`+"\n",
				px(xs[j]), py(v), s.Color, px(xs[j]), py(v)-8, v)
			fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%.0f</text>`+"\n", px(xs[j]), y0+panelHeight+16, xs[j])
		}
		fmt.Fprintf(&b, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"/>`+"\n", strings.Join(points, " "), s.Color)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s</text>`+"\n", width-right, y0+panelHeight+32, escape(xLabel))
	}
	b.WriteString("</svg>\n")
	return b.String()
}

func escape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}
