package contenthash

import (
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func TestOf(t *testing.T) {
	tests := []struct {
		name string
		a, b [][]byte
		same bool
	}{
		{"equal parts", [][]byte{[]byte("ab"), []byte("c")}, [][]byte{[]byte("ab"), []byte("c")}, true},
		{"boundary moved", [][]byte{[]byte("ab"), []byte("c")}, [][]byte{[]byte("a"), []byte("bc")}, false},
		{"empty part added", [][]byte{[]byte("a")}, [][]byte{[]byte("a"), nil}, false},
		{"order", [][]byte{[]byte("a"), []byte("b")}, [][]byte{[]byte("b"), []byte("a")}, false},
	}
	for _, tt := range tests {
		a, b := Of(tt.a...), Of(tt.b...)
		if len(a) != Length {
			t.Errorf("%s: hash %q has %d characters, want %d", tt.name, a, len(a), Length)
		}
		if (a == b) != tt.same {
			t.Errorf("%s: %q vs %q, want same=%v", tt.name, a, b, tt.same)
		}
	}
	// The encoding is part of every version a proxy has seen: pin it
	// (sha256 of the 8-byte big-endian length 11, then "shadowplane").
	if got, want := Of([]byte("shadowplane")), "f6a719e278279427"; got != want {
		t.Errorf("Of(shadowplane) = %q, want %q", got, want)
	}
}

func TestMessages(t *testing.T) {
	a := []proto.Message{wrapperspb.String("x"), wrapperspb.String("y")}
	encoded := make([][]byte, len(a))
	for i, m := range a {
		b, err := proto.MarshalOptions{Deterministic: true}.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		encoded[i] = b
	}
	if Messages(a) != Of(encoded...) {
		t.Error("Messages differs from Of over the deterministic encodings")
	}

	// A map field's encoding order is fixed by Deterministic.
	s1, _ := structpb.NewStruct(map[string]any{"a": 1.0, "b": 2.0, "c": 3.0})
	s2, _ := structpb.NewStruct(map[string]any{"c": 3.0, "b": 2.0, "a": 1.0})
	for range 20 {
		if Messages([]*structpb.Struct{s1}) != Messages([]*structpb.Struct{s2}) {
			t.Fatal("equal maps hash differently")
		}
	}

	bad := []proto.Message{wrapperspb.String("\xff")}
	if Messages(bad) == Messages([]proto.Message{wrapperspb.String("")}) {
		t.Error("an unencodable message hashes like an empty one")
	}
}
