package main

import (
	"errors"
	"syscall"

	"github.com/volcrypt/volcrypt/header"
	"github.com/volcrypt/volcrypt/internal/dm"
	"github.com/volcrypt/volcrypt/internal/loop"
	"github.com/volcrypt/volcrypt/internal/passphrase"
	"github.com/volcrypt/volcrypt/kdf"
	"github.com/volcrypt/volcrypt/userspace"
	"github.com/volcrypt/volcrypt/volume"
)

// Exit codes, as cryptsetup's.
const (
	exitOK         = 0
	exitUsage      = 1 // wrong parameters
	exitNoKey      = 2 // no key available with this passphrase, or no permission
	exitNoMemory   = 3
	exitWrongDev   = 4
	exitBusyExists = 5
)

// exitCode maps an error to cryptsetup's exit code and a hint saying what
// to do about it. This is the one place that does so.
func exitCode(err error) (int, string) {
	var cost *kdf.CostError
	var busy *dm.BusyError
	var req *header.RequirementsError
	var unkept *tpmSlotUnkeptError
	if errors.As(err, &unkept) {
		return exitUsage, "--force removes it; re-enroll afterwards"
	}
	if hint, ok := tpmHint(err); ok {
		return exitNoKey, hint
	}
	switch {
	case errors.As(err, &cost):
		return exitUsage, "the key slot's KDF cost is above volcrypt's safety limit; if you trust this header, raise the limit with " + cost.Flag
	case errors.As(err, &req):
		return exitUsage, "this volume needs features volcrypt does not implement; use cryptsetup for it"
	case errors.As(err, &busy):
		return exitBusyExists, "unmount it or stop what holds it, or close with --deferred"
	case errors.Is(err, dm.ErrExists):
		return exitBusyExists, "choose another name, or close the existing mapping first"
	case errors.Is(err, dm.ErrBusy), errors.Is(err, loop.ErrBusy):
		return exitBusyExists, ""
	case errors.Is(err, dm.ErrNoDeviceMapper):
		return exitWrongDev, "this kernel has no device-mapper (modprobe dm_crypt); scripts/vmtest runs volcrypt in a VM that has it"
	case errors.Is(err, dm.ErrNotFound):
		return exitWrongDev, ""
	case errors.Is(err, userspace.ErrNoFusermount):
		return exitWrongDev, "install fuse3 (fusermount3) or run as root"
	case errors.Is(err, userspace.ErrNoFUSE):
		return exitWrongDev, "modprobe fuse"
	case errors.Is(err, loop.ErrNoLoop):
		return exitWrongDev, "modprobe loop"
	case errors.Is(err, dm.ErrPermission):
		return exitNoKey, "run as root"
	case errors.Is(err, header.ErrWrongKey):
		return exitNoKey, ""
	case errors.Is(err, volume.ErrPermission), errors.Is(err, syscall.EPERM), errors.Is(err, syscall.EACCES):
		return exitNoKey, "run as root or check the device's permissions"
	case errors.Is(err, passphrase.ErrMismatch), errors.Is(err, passphrase.ErrEmpty):
		return exitNoKey, ""
	case errors.Is(err, errRecoveryTypo):
		return exitNoKey, ""
	case errors.Is(err, passphrase.ErrNoTerminal):
		return exitUsage, ""
	case errors.Is(err, syscall.ENOMEM):
		return exitNoMemory, "lower --pbkdf-memory"
	case errors.Is(err, volume.ErrDeviceNotFound):
		return exitWrongDev, ""
	case errors.Is(err, volume.ErrInUse), errors.Is(err, syscall.EBUSY), errors.Is(err, syscall.EEXIST):
		return exitBusyExists, ""
	case errors.Is(err, volume.ErrHasSignature):
		return exitUsage, "run with -q/--batch-mode to overwrite it"
	case errors.Is(err, volume.ErrLastKeyslot):
		return exitUsage, "run with -q/--batch-mode to remove it anyway"
	case errors.Is(err, header.ErrKeyslotNotFound):
		return exitUsage, "list the key slots with 'volcrypt key list DEVICE'"
	case errors.Is(err, header.ErrKeyslotInUse):
		return exitBusyExists, "choose another --key-slot or remove the key first"
	}
	return exitUsage, ""
}
