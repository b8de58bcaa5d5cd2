package logging

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/go-hclog"
)

func TestCut(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		limit int
		want  string
	}{
		{name: "short stays", in: "hello", limit: 5, want: "hello"},
		{name: "long is cut with its length", in: strings.Repeat("a", 100), limit: 40, want: "aaaaaaaaaaaa [... cut, 100 bytes in all]"},
		{name: "no room left: marker only", in: strings.Repeat("a", 100), limit: 3, want: " [... cut, 100 bytes in all]"},
		{name: "never splits a character", in: strings.Repeat("é", 50), limit: 29, want: " [... cut, 100 bytes in all]"},
		{name: "whole characters kept", in: strings.Repeat("é", 50), limit: 31, want: "é [... cut, 100 bytes in all]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Cut(tt.in, tt.limit)
			if got != tt.want {
				t.Errorf("Cut = %q, want %q", got, tt.want)
			}
			if !utf8.ValidString(got) {
				t.Errorf("Cut = %q: invalid UTF-8", got)
			}
		})
	}
}

// logOnce logs one entry through a bounded logger and returns what was
// written.
func logOnce(t *testing.T, jsonFormat bool, limit int, msg string, args ...any) string {
	t.Helper()
	var out bytes.Buffer
	logger := New(Options{Name: "shadowplane", Level: hclog.Info, JSON: jsonFormat, Output: &out, MaxLine: limit})
	logger.Info(msg, args...)
	return out.String()
}

func TestJSONEntriesAreBounded(t *testing.T) {
	huge := strings.Repeat("x", 1<<20)
	tests := []struct {
		name string
		msg  string
		args []any
		// wantCut are the fields whose values must end in the marker.
		wantCut []string
		// wantKept are fields that must come through whole.
		wantKept map[string]string
	}{
		{
			name: "1 MiB message", msg: huge, args: []any{"node", "entrance-1"},
			wantCut: []string{"@message"}, wantKept: map[string]string{"node": "entrance-1"},
		},
		{
			name: "1 MiB value", msg: "NACK", args: []any{"node", "entrance-1", "detail", huge},
			wantCut: []string{"detail"}, wantKept: map[string]string{"@message": "NACK", "node": "entrance-1"},
		},
		{
			// The largest value is cut first, and only as far as needed.
			name: "two large values", msg: "both", args: []any{"a", strings.Repeat("a", 5000), "b", strings.Repeat("b", 3000)},
			wantCut: []string{"a"}, wantKept: map[string]string{"@message": "both", "b": strings.Repeat("b", 3000)},
		},
		{
			name: "two values, each too large", msg: "both", args: []any{"a", strings.Repeat("a", 5000), "b", strings.Repeat("b", 5000)},
			wantCut: []string{"a", "b"}, wantKept: map[string]string{"@message": "both"},
		},
		{
			name: "escapes count", msg: "control characters", args: []any{"raw", strings.Repeat("\x01", 5000)},
			wantCut: []string{"raw"}, wantKept: map[string]string{"@message": "control characters"},
		},
		{
			name: "large non-string value", msg: "list", args: []any{"names", strings.Split(strings.Repeat("name,", 2000), ",")},
			wantCut: []string{"names"}, wantKept: map[string]string{"@message": "list"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			line := logOnce(t, true, MaxLine, tt.msg, tt.args...)
			if len(line) > MaxLine {
				t.Fatalf("entry is %d bytes, over %d", len(line), MaxLine)
			}
			if strings.Count(line, "\n") != 1 || !strings.HasSuffix(line, "\n") {
				t.Fatalf("entry is not one line: %q", line[:min(len(line), 200)])
			}
			var entry map[string]any
			if err := json.Unmarshal([]byte(line), &entry); err != nil {
				t.Fatalf("cut entry is not JSON: %v", err)
			}
			if entry["@level"] != "info" || entry["@module"] != "shadowplane" || entry["@timestamp"] == nil {
				t.Errorf("hclog's fields lost: %v", entry)
			}
			for _, k := range tt.wantCut {
				v, _ := entry[k].(string)
				if !strings.Contains(v, "[... cut, ") || len(v) < keepAtLeast {
					t.Errorf("%s = %.80q..., want a readable cut value with the marker", k, v)
				}
			}
			for k, want := range tt.wantKept {
				if entry[k] != want {
					t.Errorf("%s = %v, want %q kept whole", k, entry[k], want)
				}
			}
		})
	}
}

func TestJSONEntryWithTooManyFieldsDropsThem(t *testing.T) {
	var args []any
	for i := range 400 {
		args = append(args, strings.Repeat("k", 10)+string(rune('a'+i%26))+strings.Repeat("z", i/26), "value")
	}
	line := logOnce(t, true, 1024, "many fields", args...)
	if len(line) > 1024 {
		t.Fatalf("entry is %d bytes, over 1024", len(line))
	}
	var entry map[string]any
	if err := json.Unmarshal([]byte(line), &entry); err != nil {
		t.Fatalf("entry is not JSON: %v: %q", err, line)
	}
	if entry["@message"] != "many fields" || entry["@dropped"] != float64(400) {
		t.Errorf("entry = %v, want the message and @dropped 400", entry)
	}
}

func TestShortEntriesPassUnchanged(t *testing.T) {
	for _, jsonFormat := range []bool{true, false} {
		var plain, bounded bytes.Buffer
		opts := &hclog.LoggerOptions{Name: "shadowplane", JSONFormat: jsonFormat, Output: &plain, TimeFn: fixedTime}
		hclog.New(opts).Info("hello", "k", "v")
		opts.Output = NewBoundedWriter(&bounded, MaxLine, jsonFormat)
		hclog.New(opts).Info("hello", "k", "v")
		if plain.String() != bounded.String() {
			t.Errorf("json=%v: bounded %q, plain %q", jsonFormat, bounded.String(), plain.String())
		}
	}
}

func TestTextEntriesAreBounded(t *testing.T) {
	line := logOnce(t, false, MaxLine, "NACK", "detail", strings.Repeat("y", 1<<20))
	if len(line) > MaxLine || strings.Count(line, "\n") != 1 {
		t.Fatalf("text entry is %d bytes with %d newlines", len(line), strings.Count(line, "\n"))
	}
	if !strings.Contains(line, "[INFO]  shadowplane: NACK: detail=yyy") || !strings.Contains(line, "[... cut, 10486") || !strings.HasSuffix(line, " bytes in all]\n") {
		t.Errorf("text entry = %.100q ... %q", line, line[len(line)-60:])
	}
}

func fixedTime() time.Time { return time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC) }
