package xds

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strconv"

	"github.com/shadowplane/shadowplane/internal/logging"
)

// MaxDebugBody bounds every /debug response. A list that does not fit is
// cut after its last whole item: the response stays valid JSON, and the
// Shown and Total headers say what is missing.
const MaxDebugBody = 1 << 20

// Response headers of the list endpoints: how many items the body holds, and
// how many matched the query. Shown < Total means the body was cut at
// MaxDebugBody or at ?limit.
const (
	HeaderShown = "Shadowplane-Shown"
	HeaderTotal = "Shadowplane-Total"
)

// maxDebugNack bounds a NACK message in /debug/proxies: Envoy's error
// details can run to megabytes, which would crowd every other proxy out.
const maxDebugNack = 4 << 10

// DebugHandler serves the debug endpoints, meant for a loopback listener of
// their own (they show every proxy's node ID, address and NACK messages):
//
//	/debug/proxies    JSON array: Proxies(); ?id=<node ID> and ?group=<key>
//	                  filter, ?limit=<n> caps the count
//	/debug/snapshots  JSON object: Snapshots() by group key; ?group=<key>
//	                  picks one (404 if unknown), ?limit=<n> caps the count
//
// Every response is at most MaxDebugBody bytes.
func (s *Server) DebugHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /debug/proxies", s.serveProxies)
	mux.HandleFunc("GET /debug/snapshots", s.serveSnapshots)
	return mux
}

func (s *Server) serveProxies(w http.ResponseWriter, r *http.Request) {
	limit, err := limitParam(r)
	if err != nil {
		writeText(w, http.StatusBadRequest, err.Error())
		return
	}
	id, group := r.URL.Query().Get("id"), r.URL.Query().Get("group")
	var items []jsonItem
	for _, p := range s.Proxies() {
		if (id != "" && p.ID != id) || (group != "" && p.Group != group) {
			continue
		}
		for typ, ts := range p.Types {
			if ts.LastNack != nil {
				nack := *ts.LastNack
				nack.Message = logging.Cut(nack.Message, maxDebugNack)
				ts.LastNack = &nack
				p.Types[typ] = ts
			}
		}
		items = append(items, jsonItem{value: p})
	}
	writeBoundedJSON(w, false, items, limit)
}

func (s *Server) serveSnapshots(w http.ResponseWriter, r *http.Request) {
	limit, err := limitParam(r)
	if err != nil {
		writeText(w, http.StatusBadRequest, err.Error())
		return
	}
	group, filtered := r.URL.Query()["group"]
	snapshots := s.Snapshots()
	keys := make([]string, 0, len(snapshots))
	for key := range snapshots {
		keys = append(keys, key)
	}
	if filtered {
		if _, ok := snapshots[group[0]]; !ok {
			writeText(w, http.StatusNotFound, fmt.Sprintf("no node group %q; GET /debug/snapshots lists them", group[0]))
			return
		}
		keys = group[:1]
	}
	sort.Strings(keys)
	items := make([]jsonItem, len(keys))
	for i, key := range keys {
		items[i] = jsonItem{key: key, value: snapshots[key]}
	}
	writeBoundedJSON(w, true, items, limit)
}

// limitParam reads ?limit; 0 means no limit but MaxDebugBody.
func limitParam(r *http.Request) (int, error) {
	raw := r.URL.Query().Get("limit")
	if raw == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(raw)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("limit %q: want a positive number", raw)
	}
	return n, nil
}

// jsonItem is one element of a JSON array, or one member of a JSON object.
type jsonItem struct {
	key   string
	value any
}

// writeBoundedJSON writes items as an indented JSON array (or object, by
// key) of at most MaxDebugBody bytes and limit items (0: no limit), and
// the Shown and Total headers.
func writeBoundedJSON(w http.ResponseWriter, object bool, items []jsonItem, limit int) {
	open, closing := "[", "]"
	if object {
		open, closing = "{", "}"
	}
	var body, entry bytes.Buffer
	body.WriteString(open)
	shown := 0
	for _, item := range items {
		if limit > 0 && shown == limit {
			break
		}
		data, err := json.MarshalIndent(item.value, "  ", "  ")
		if err != nil {
			http.Error(w, "encoding JSON: "+err.Error(), http.StatusInternalServerError)
			return
		}
		entry.Reset()
		if shown > 0 {
			entry.WriteString(",")
		}
		entry.WriteString("\n  ")
		if object {
			key, _ := json.Marshal(item.key) // a string always encodes
			entry.Write(key)
			entry.WriteString(": ")
		}
		entry.Write(data)
		if body.Len()+entry.Len()+len("\n]\n") > MaxDebugBody {
			break
		}
		body.Write(entry.Bytes())
		shown++
	}
	if shown > 0 {
		body.WriteString("\n")
	}
	body.WriteString(closing + "\n")
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set(HeaderShown, strconv.Itoa(shown))
	w.Header().Set(HeaderTotal, strconv.Itoa(len(items)))
	_, _ = w.Write(body.Bytes())
}
