package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/shadowplane/shadowplane/internal/copystats"
)

var updateTop = flag.Bool("update-top", false, "rewrite testdata/top*.golden")

// TestTopRendering: two readings of /metrics two seconds apart render as
// the golden table (80 columns at most) and the golden JSON.
func TestTopRendering(t *testing.T) {
	read := func(name string) []copystats.Mirror {
		t.Helper()
		data, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		mirrors, err := copystats.ReadMetrics(bytes.NewReader(data))
		if err != nil {
			t.Fatal(err)
		}
		return mirrors
	}
	first, second := read("top-metrics-1.txt"), read("top-metrics-2.txt")
	rows := topRows(first, first, second, 2*time.Second)

	for _, tt := range []struct{ output, golden string }{{"table", "top.golden"}, {"json", "top.json.golden"}} {
		var b bytes.Buffer
		if err := renderTop(&b, tt.output, rows, false); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join("testdata", tt.golden)
		if *updateTop {
			if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (run with -update-top to create it)", err)
		}
		if b.String() != string(want) {
			t.Errorf("%s output:\n%s\nwant:\n%s", tt.output, b.String(), want)
		}
		if tt.output == "table" {
			for _, line := range strings.Split(strings.TrimRight(b.String(), "\n"), "\n") {
				if len(line) > 80 {
					t.Errorf("line of %d columns: %q", len(line), line)
				}
			}
		}
	}

	// In place, each refresh starts by homing the cursor and clearing.
	var b bytes.Buffer
	if err := renderTop(&b, "table", rows, true); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(b.String(), "\x1b[H\x1b[2J") {
		t.Errorf("in-place refresh does not clear the screen first: %q", b.String()[:10])
	}
}
