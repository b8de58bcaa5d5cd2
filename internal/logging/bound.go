package logging

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"sync"
	"unicode/utf8"
)

// minLine is the smallest MaxLine a bounded writer accepts: room for the
// fixed fields of a JSON entry and a cut message.
const minLine = 512

// Cut returns s if it has at most max bytes, else its first bytes (whole
// UTF-8 characters) followed by a marker naming the original length, the
// whole at most max bytes.
func Cut(s string, limit int) string {
	if len(s) <= limit {
		return s
	}
	marker := cutMarker(len(s))
	return truncateUTF8(s, max(0, limit-len(marker))) + marker
}

func cutMarker(total int) string { return fmt.Sprintf(" [... cut, %d bytes in all]", total) }

// truncateUTF8 returns at most n leading bytes of s, never splitting a
// character.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// boundedWriter passes on log entries of at most max bytes; longer ones it
// cuts first. hclog writes each entry with one Write call, so a Write is an
// entry.
type boundedWriter struct {
	mu    sync.Mutex
	out   io.Writer
	limit int
	json  bool
}

// NewBoundedWriter returns a writer for hclog output that keeps every entry
// within max bytes (at least 512). A JSON entry stays a valid JSON object:
// its longest values are cut, each ending in a marker with its original
// length. A text entry is cut at the end, with the same marker.
func NewBoundedWriter(out io.Writer, limit int, json bool) io.Writer {
	return &boundedWriter{out: out, limit: max(limit, minLine), json: json}
}

func (w *boundedWriter) Write(p []byte) (int, error) {
	entry := p
	if len(entry) > w.limit {
		if w.json {
			entry = cutJSONEntry(entry, w.limit)
		} else {
			entry = cutTextEntry(entry, w.limit)
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, err := w.out.Write(entry); err != nil {
		return 0, err
	}
	// The caller's whole entry was handled, cut or not.
	return len(p), nil
}

func cutTextEntry(entry []byte, limit int) []byte {
	s := string(bytes.TrimRight(entry, "\n"))
	return []byte(Cut(s, limit-1) + "\n")
}

// fixedFields are hclog's own JSON fields, cut last.
var fixedFields = map[string]bool{"@level": true, "@timestamp": true, "@module": true}

// keepAtLeast is the fewest bytes a cut value keeps, so it stays readable.
const keepAtLeast = 64

// cutJSONEntry shrinks a JSON log entry to at most limit bytes by cutting
// its largest values, one at a time, until it fits.
func cutJSONEntry(entry []byte, limit int) []byte {
	var fields map[string]any
	dec := json.NewDecoder(bytes.NewReader(entry))
	dec.UseNumber()
	if err := dec.Decode(&fields); err != nil {
		// Not an object (never from hclog): keep it as a cut message.
		fields = map[string]any{"@message": string(entry)}
	}
	for {
		out := encodeEntry(fields)
		over := len(out) - limit
		if over <= 0 {
			return out
		}
		key := largestField(fields)
		if key == "" {
			return encodeEntry(dropFields(fields, limit))
		}
		text := valueText(fields[key])
		cut := Cut(text, max(keepAtLeast, len(text)-over))
		if len(cut) >= len(text) {
			// Every value is short: too many fields to fit.
			return encodeEntry(dropFields(fields, limit))
		}
		fields[key] = cut
	}
}

// largestField is the field with the longest encoding, other than hclog's
// fixed fields.
func largestField(fields map[string]any) string {
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys) // same input, same cut
	best, bestSize := "", 0
	for _, k := range keys {
		if fixedFields[k] {
			continue
		}
		if size := len(encodeValue(fields[k])); size > bestSize {
			best, bestSize = k, size
		}
	}
	return best
}

// dropFields keeps hclog's fixed fields and a cut message, and counts the
// fields it dropped.
func dropFields(fields map[string]any, limit int) map[string]any {
	kept := map[string]any{}
	for k := range fixedFields {
		if v, ok := fields[k]; ok {
			kept[k] = Cut(valueText(v), keepAtLeast)
		}
	}
	if msg, ok := fields["@message"]; ok {
		kept["@message"] = Cut(valueText(msg), limit/2)
	}
	kept["@dropped"] = len(fields) - len(kept)
	return kept
}

// valueText is a value as text: strings as they are, anything else as its
// JSON.
func valueText(v any) string {
	if s, ok := v.(string); ok {
		return s
	}
	return string(encodeValue(v))
}

func encodeValue(v any) []byte {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return []byte(fmt.Sprintf("%q", err.Error()))
	}
	return bytes.TrimRight(b.Bytes(), "\n")
}

// encodeEntry encodes fields as one JSON line, keys sorted as hclog does.
func encodeEntry(fields map[string]any) []byte {
	return append(encodeValue(fields), '\n')
}
