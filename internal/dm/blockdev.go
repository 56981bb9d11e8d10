package dm

import (
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// DeviceNumber returns the "major:minor" of the block device at path (a
// symlink such as /dev/mapper/NAME is followed), the form crypt tables use.
func DeviceNumber(path string) (string, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return "", fmt.Errorf("device number of %s: %w", path, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK {
		return "", fmt.Errorf("device number of %s: not a block device: %w", path, ErrInvalid)
	}
	return DevNum(unix.Major(st.Rdev), unix.Minor(st.Rdev)), nil
}

// SizeBytes returns the size of a block device (BLKGETSIZE64) or of a
// regular file.
func SizeBytes(path string) (uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("size of %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("size of %s: %w", path, err)
	}
	if fi.Mode().IsRegular() {
		return uint64(fi.Size()), nil
	}
	if fi.Mode()&os.ModeDevice == 0 || fi.Mode()&os.ModeCharDevice != 0 {
		return 0, fmt.Errorf("size of %s: not a block device or regular file: %w", path, ErrInvalid)
	}
	var size uint64
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKGETSIZE64, uintptr(unsafe.Pointer(&size))); errno != 0 {
		return 0, fmt.Errorf("size of %s: %w", path, errno)
	}
	return size, nil
}

// CancelDeferredRemove cancels a removal scheduled by Remove with
// Deferred set (the "@cancel_deferred_remove" message, as
// `cryptsetup close --cancel-deferred` sends).
func CancelDeferredRemove(name string) error {
	c, err := openControl()
	if err != nil {
		return err
	}
	defer c.close()
	msg := "@cancel_deferred_remove"
	data := make([]byte, 8+len(msg)+1) // struct dm_target_msg: u64 sector, message
	copy(data[8:], msg)
	if _, err := c.call(unix.DM_TARGET_MSG, header{name: name}, data); err != nil {
		return mapErrno("cancel deferred remove of", name, err)
	}
	return nil
}
