package xds

import (
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
)

func TestGroupHash(t *testing.T) {
	if got := (groupHash{}).ID(sidecarNode("a")); got != testGroup.Key() {
		t.Errorf("ID(valid node) = %q, want %q", got, testGroup.Key())
	}
	if got := (groupHash{}).ID(&corev3.Node{Id: "lost"}); got != "invalid/lost" {
		t.Errorf("ID(node without metadata) = %q, want invalid/lost", got)
	}
}
