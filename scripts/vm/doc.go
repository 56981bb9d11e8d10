// Package vm holds the guest side of scripts/vmtest (the initramfs /init and its module list)
// and a self-test of the VM, run with:
//
//	go test -exec scripts/vmtest ./scripts/vm/
//
// Outside the VM (VOLCRYPT_VM unset) every test skips.
package vm
