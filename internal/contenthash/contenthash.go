// Package contenthash is shadowplane's one content hash: SHA-256 over
// length-prefixed parts, shortened to Length hex characters. The xDS
// versions and the watcher's verdict fingerprints use it, so equal content
// always hashes equal, and moving the boundary between two parts changes
// the hash.
package contenthash

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"

	"google.golang.org/protobuf/proto"
)

// Length is how many hex characters of the SHA-256 a hash keeps.
const Length = 16

// Of hashes parts in order.
func Of(parts ...[]byte) string {
	h := sha256.New()
	for _, p := range parts {
		writePart(h, p)
	}
	return sum(h)
}

// Messages hashes protobuf messages by their deterministic encoding, in
// order. A message that does not encode (only invalid UTF-8 in a string
// field does that) is hashed by its error, so the hash still moves.
func Messages[M proto.Message](messages []M) string {
	h := sha256.New()
	opts := proto.MarshalOptions{Deterministic: true}
	for _, m := range messages {
		b, err := opts.Marshal(m)
		if err != nil {
			b = fmt.Appendf(nil, "unmarshalable %T: %v", m, err)
		}
		writePart(h, b)
	}
	return sum(h)
}

func writePart(h hash.Hash, part []byte) {
	var size [8]byte
	binary.BigEndian.PutUint64(size[:], uint64(len(part)))
	h.Write(size[:])
	h.Write(part)
}

func sum(h hash.Hash) string {
	return hex.EncodeToString(h.Sum(nil))[:Length]
}
