package xds

import (
	"github.com/shadowplane/shadowplane/translator"
)

// otherTypeLabel is the metric label of any type URL shadowplane does not
// serve; client-supplied strings never become label values, so a client
// cannot blow up the metric's cardinality.
const otherTypeLabel = "other"

// typeLabel returns the short metric label of a type URL.
func typeLabel(typeURL string) string {
	if t, ok := translator.ResourceTypeOf(typeURL); ok {
		return t.Name
	}
	return otherTypeLabel
}

// typeKey returns the JSON key of a type URL in proxy status: the short name
// for served types and the type URL itself for anything else, so two unknown
// types never collide.
func typeKey(typeURL string) string {
	if l := typeLabel(typeURL); l != otherTypeLabel {
		return l
	}
	return typeURL
}
