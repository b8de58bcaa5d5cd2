// Package policyrefs finds the Services a policy depends on. The watcher
// uses it to ignore changes to Services and EndpointSlices that no policy
// names, and the xDS server to rebuild only the node groups a change
// touches; both must agree, so they share this one definition.
package policyrefs

import (
	"reflect"
	"slices"

	"github.com/shadowplane/shadowplane/policy"
)

// Services returns "namespace/name" of every Service the policy names: the
// Service it copies from and every Service target, sorted and without
// duplicates. It reads the policy generically, as JSON: any object in it
// with a non-empty "Service" field names a Service, in that object's
// "Namespace" or else the policy's. New kinds of Service targets (routing
// rules, say) are therefore found without a change here, as long as they
// keep those two field names.
func Services(p *policy.Policy) []string {
	var out []string
	walk(reflect.ValueOf(p), p.Namespace, &out)
	slices.Sort(out)
	return slices.Compact(out)
}

// walk visits every struct reachable from v through exported fields,
// pointers, slices, arrays and map values, as encoding/json would, and
// collects each non-empty string field named Service with its sibling
// Namespace (default: the policy's). Reflection rather than a JSON round
// trip: a change that re-reads a key of 100 policies works this out for
// each of them, and the round trip was most of that.
func walk(v reflect.Value, namespace string, out *[]string) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			walk(v.Elem(), namespace, out)
		}
	case reflect.Struct:
		t := v.Type()
		if f, ok := t.FieldByName("Service"); ok && f.IsExported() && f.Type.Kind() == reflect.String {
			if svc := v.FieldByIndex(f.Index).String(); svc != "" {
				ns := ""
				if nf, ok := t.FieldByName("Namespace"); ok && nf.IsExported() && nf.Type.Kind() == reflect.String {
					ns = v.FieldByIndex(nf.Index).String()
				}
				if ns == "" {
					ns = namespace
				}
				*out = append(*out, ns+"/"+svc)
			}
		}
		for i := range t.NumField() {
			if t.Field(i).IsExported() {
				walk(v.Field(i), namespace, out)
			}
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			walk(v.Index(i), namespace, out)
		}
	case reflect.Map:
		for it := v.MapRange(); it.Next(); {
			walk(it.Value(), namespace, out)
		}
	}
}
