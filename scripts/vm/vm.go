// Package vm holds the guest side of scripts/vmtest (the initramfs /init and its module list)
// and a self-test of the VM, run with:
//
//	go test -exec "$PWD/scripts/vmtest" ./scripts/vm/   (from the repository root)
//
// Outside the VM (VOLCRYPT_VM unset) every test skips.
package vm

import "os"

// inVM reports whether this process runs inside scripts/vmtest's VM. It lives outside the
// tests so that -cover has a statement to count: the self-test checks that coverage data
// written in the VM reaches go test on the host.
func inVM() bool {
	return os.Getenv("VOLCRYPT_VM") == "1"
}
