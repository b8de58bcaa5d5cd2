// Command etcd is etcd's own server main, pinned by this module's go.mod so the
// integration tests run against a known release.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
