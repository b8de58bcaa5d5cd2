package translator

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"

	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
)

// versionLength is how many hex characters of the hash a version keeps.
const versionLength = 16

// versions hashes each type's resources on their own, so a change re-sends
// only the types whose content changed: a percent change only RTDS, an
// endpoint change only EDS, a match change only RDS.
func versions(out *Output) map[string]string {
	return map[string]string{
		resourcev3.ListenerType: contentVersion(out.Listeners),
		resourcev3.RouteType:    contentVersion(out.Routes),
		resourcev3.ClusterType:  contentVersion(out.Clusters),
		resourcev3.EndpointType: contentVersion(out.Endpoints),
		resourcev3.RuntimeType:  contentVersion(out.Runtimes),
	}
}

// contentVersion is the first hex characters of a SHA-256 over the
// deterministic encoding of the resources, in their (sorted) order, each
// prefixed by its length so that boundaries count.
func contentVersion[M proto.Message](resources []M) string {
	h := sha256.New()
	opts := proto.MarshalOptions{Deterministic: true}
	var size [8]byte
	for _, r := range resources {
		b, err := opts.Marshal(r)
		if err != nil {
			// Only invalid UTF-8 in a string field fails, which Kubernetes
			// objects cannot carry; hash the error so the version still moves.
			b = []byte(fmt.Sprintf("unmarshalable %T: %v", r, err))
		}
		binary.BigEndian.PutUint64(size[:], uint64(len(b)))
		h.Write(size[:])
		h.Write(b)
	}
	return hex.EncodeToString(h.Sum(nil))[:versionLength]
}
