package translator

import (
	runtimev3 "github.com/envoyproxy/go-control-plane/envoy/service/runtime/v3"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/shadowplane/shadowplane/policy"
)

// buildRuntime builds the one RTDS layer of the group: for every mirror of
// every policy that applies here, its runtime key holds its share; for
// every routing rule, its weights (see routeWeights).
//
// The value is a Struct {"numerator": N, "denominator": "MILLION"}, not a
// number: Envoy reads a plain integer as a percent over 100 (anything above
// 100 meaning always), so only the struct keeps four decimals. Verified in
// Envoy's source/common/runtime/runtime_impl.cc (ProtoLayer, which serves
// both static and RTDS layers, keeps a struct value with a "numerator" or
// "denominator" field as one entry under its whole top-level key, dots
// included, and parses it as envoy.type.v3.FractionalPercent, denominator
// by enum name, which featureEnabled then uses), and against Envoy 1.40
// itself: a layer value {numerator: 250000, denominator: MILLION} mirrored
// 508 of 2000 requests. Note that Envoy's admin /runtime shows such an
// entry as protobuf text, not as a number.
func (t *translation) buildRuntime() *runtimev3.Runtime {
	fields := map[string]*structpb.Value{}
	for _, l := range t.listeners {
		for _, p := range l.policies {
			for _, m := range p.Mirrors {
				key := policy.RuntimeKey(p, m)
				if _, dup := fields[key]; dup {
					continue // the policy applies to several listeners
				}
				fields[key] = fractionValue(m.PartsPerMillion)
			}
		}
		for _, e := range l.entries {
			if e.rule != nil {
				routeWeights(fields, e.rule, e.backends, l.port.App)
			}
		}
	}
	return &runtimev3.Runtime{Name: RuntimeLayerName, Layer: &structpb.Struct{Fields: fields}}
}

// fractionValue is a runtime fractional percent in parts per million.
func fractionValue(ppm uint32) *structpb.Value {
	return structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{
		"numerator":   structpb.NewNumberValue(float64(ppm)),
		"denominator": structpb.NewStringValue("MILLION"),
	}})
}
