// Package loop attaches regular files to loop block devices through the
// kernel's ioctls (/dev/loop-control LOOP_CTL_GET_FREE, then LOOP_CONFIGURE,
// or LOOP_SET_FD + LOOP_SET_STATUS64 on kernels before 5.8), as cryptsetup
// does for image files: with the autoclear flag, direct I/O when the
// backing file system allows it, and the backing file's name recorded.
//
// Autoclear means the kernel detaches the loop device at its last close.
// Attach therefore returns an open Device: keep it open until whatever uses
// the loop device (a dm-crypt mapping) has opened it, then Close it; the
// loop device then goes away by itself when the mapping is removed.
package loop

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ControlPath is the loop control node.
const ControlPath = "/dev/loop-control"

// Sentinel errors; match them with errors.Is.
var (
	// ErrNoLoop means the kernel has no loop driver or no free device.
	ErrNoLoop = errors.New("loop devices not available")
	// ErrNotFound means no loop device is attached to the file, or the
	// device is not a loop device.
	ErrNotFound = errors.New("loop device not found")
	// ErrBusy means the loop device is in use.
	ErrBusy = errors.New("loop device busy")
)

// Device is an attached loop device held open by this process.
type Device struct {
	// Path is the device node, e.g. /dev/loop3.
	Path string
	// ReadOnly reports a read-only attachment.
	ReadOnly bool
	// DirectIO reports that the kernel accepted direct I/O for the backing file.
	DirectIO bool
	f        *os.File
}

// Major and Minor return the loop device's number.
func (d *Device) Major() uint32 { return unix.Major(d.rdev()) }

// Minor returns the loop device's minor number.
func (d *Device) Minor() uint32 { return unix.Minor(d.rdev()) }

func (d *Device) rdev() uint64 {
	var st unix.Stat_t
	if d.f == nil || unix.Fstat(int(d.f.Fd()), &st) != nil {
		return 0
	}
	return st.Rdev
}

// Close releases this process's hold on the loop device. With nothing
// else holding it open, the kernel detaches it (autoclear).
func (d *Device) Close() error {
	if d.f == nil {
		return nil
	}
	err := d.f.Close()
	d.f = nil
	return err
}

// Detach detaches the loop device now (LOOP_CLR_FD) and closes it. If
// something else holds it open, the kernel detaches it at the last close.
func (d *Device) Detach() error {
	if d.f == nil {
		return Detach(d.Path)
	}
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, d.f.Fd(), unix.LOOP_CLR_FD, 0)
	closeErr := d.Close()
	if errno != 0 && errno != unix.ENXIO {
		return fmt.Errorf("detach %s: %w", d.Path, errno)
	}
	return closeErr
}

// Attach attaches the regular file path to a free loop device, read-only
// if readOnly, with autoclear and (where it works) direct I/O.
func Attach(path string, readOnly bool) (*Device, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("attach %s: %w", path, err)
	}
	flags := unix.O_RDWR
	if readOnly {
		flags = unix.O_RDONLY
	}
	backing, err := os.OpenFile(abs, flags|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("attach %s: %w", path, err)
	}
	defer backing.Close()
	fi, err := backing.Stat()
	if err != nil {
		return nil, fmt.Errorf("attach %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("attach %s: not a regular file", path)
	}

	ctl, err := os.OpenFile(ControlPath, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("attach %s: open %s: %w: %w", path, ControlPath, ErrNoLoop, err)
	}
	defer ctl.Close()

	// Another process may take the free device between GET_FREE and our
	// configure (EBUSY): try again with the next free one.
	var lastErr error
	for attempt := 0; attempt < 20; attempt++ {
		n, _, errno := unix.Syscall(unix.SYS_IOCTL, ctl.Fd(), unix.LOOP_CTL_GET_FREE, 0)
		if errno != 0 {
			return nil, fmt.Errorf("attach %s: get free loop device: %w: %w", path, ErrNoLoop, errno)
		}
		dev := "/dev/loop" + strconv.Itoa(int(n))
		d, err := configure(dev, backing, abs, readOnly)
		if err == nil {
			return d, nil
		}
		if !errors.Is(err, unix.EBUSY) {
			return nil, fmt.Errorf("attach %s: %w", path, err)
		}
		lastErr = err
		time.Sleep(time.Duration(attempt+1) * 10 * time.Millisecond)
	}
	return nil, fmt.Errorf("attach %s: %w: %w", path, ErrBusy, lastErr)
}

// openLoopNode opens /dev/loopN, making the node when devtmpfs has not.
func openLoopNode(dev string, flags int) (*os.File, error) {
	f, err := os.OpenFile(dev, flags|unix.O_CLOEXEC, 0)
	if errors.Is(err, os.ErrNotExist) {
		n, convErr := strconv.Atoi(strings.TrimPrefix(dev, "/dev/loop"))
		if convErr == nil {
			_ = unix.Mknod(dev, unix.S_IFBLK|0o660, int(unix.Mkdev(7, uint32(n))))
			f, err = os.OpenFile(dev, flags|unix.O_CLOEXEC, 0)
		}
	}
	return f, err
}

func configure(dev string, backing *os.File, name string, readOnly bool) (*Device, error) {
	flags := unix.O_RDWR
	if readOnly {
		flags = unix.O_RDONLY
	}
	f, err := openLoopNode(dev, flags)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", dev, err)
	}
	d := &Device{Path: dev, ReadOnly: readOnly, f: f}

	var info unix.LoopInfo64
	info.Flags = unix.LO_FLAGS_AUTOCLEAR
	if readOnly {
		info.Flags |= unix.LO_FLAGS_READ_ONLY
	}
	copy(info.File_name[:len(info.File_name)-1], name)

	cfg := unix.LoopConfig{Fd: uint32(backing.Fd()), Info: info}
	wantDIO := canDirectIO(name)
	if wantDIO {
		cfg.Info.Flags |= unix.LO_FLAGS_DIRECT_IO
	}
	errno := ioctlPtr(f, unix.LOOP_CONFIGURE, unsafe.Pointer(&cfg))
	if wantDIO && (errno == unix.EINVAL || errno == unix.EOPNOTSUPP) {
		// Direct I/O refused by the backing file system: without it.
		cfg.Info.Flags &^= unix.LO_FLAGS_DIRECT_IO
		errno = ioctlPtr(f, unix.LOOP_CONFIGURE, unsafe.Pointer(&cfg))
	}
	switch errno {
	case 0:
		d.DirectIO = directIO(dev)
		return d, nil
	case unix.EBUSY:
		f.Close()
		return nil, fmt.Errorf("configure %s: %w", dev, unix.EBUSY)
	case unix.EINVAL, unix.ENOTTY:
		// No LOOP_CONFIGURE (kernel < 5.8): the two-step way.
	default:
		f.Close()
		return nil, fmt.Errorf("configure %s: %w", dev, errno)
	}

	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.LOOP_SET_FD, backing.Fd()); errno != 0 {
		f.Close()
		return nil, fmt.Errorf("set backing file of %s: %w", dev, errno)
	}
	if errno := ioctlPtr(f, unix.LOOP_SET_STATUS64, unsafe.Pointer(&info)); errno != 0 {
		_, _, _ = unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.LOOP_CLR_FD, 0)
		f.Close()
		return nil, fmt.Errorf("set status of %s: %w", dev, errno)
	}
	if canDirectIO(name) {
		_, _, dioErr := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.LOOP_SET_DIRECT_IO, 1)
		d.DirectIO = dioErr == 0 && directIO(dev)
	}
	return d, nil
}

// canDirectIO probes whether the backing file really does direct I/O: it
// opens it with O_DIRECT and reads one aligned 4 KiB block. Some stacks
// (overlayfs over tmpfs) let the loop driver enable direct I/O and then
// fail every request with EIO, so the kernel's own check is not enough.
func canDirectIO(path string) bool {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECT|unix.O_CLOEXEC, 0)
	if err != nil {
		return false
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if unix.Fstat(fd, &st) != nil || st.Size < 4096 {
		return false
	}
	buf, err := unix.Mmap(-1, 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANON)
	if err != nil {
		return false
	}
	defer unix.Munmap(buf)
	n, err := unix.Pread(fd, buf, 0)
	return err == nil && n == 4096
}

func ioctlPtr(f *os.File, req uint, arg unsafe.Pointer) unix.Errno {
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), uintptr(req), uintptr(arg))
	return errno
}

// sysDir returns /sys/block/loopN/loop for /dev/loopN.
func sysDir(dev string) string {
	return filepath.Join("/sys/block", filepath.Base(dev), "loop")
}

func directIO(dev string) bool {
	b, err := os.ReadFile(filepath.Join(sysDir(dev), "dio"))
	return err == nil && strings.TrimSpace(string(b)) == "1"
}

// Detach detaches the loop device dev (LOOP_CLR_FD). If it is open
// elsewhere (mapped, mounted), the kernel detaches it at its last close.
// A device with nothing attached gives ErrNotFound.
func Detach(dev string) error {
	f, err := os.OpenFile(dev, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("detach %s: %w", dev, err)
	}
	defer f.Close()
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.LOOP_CLR_FD, 0)
	switch errno {
	case 0:
		return nil
	case unix.ENXIO:
		return fmt.Errorf("detach %s: %w", dev, ErrNotFound)
	case unix.ENOTTY, unix.EINVAL:
		return fmt.Errorf("detach %s: not a loop device: %w", dev, ErrNotFound)
	}
	return fmt.Errorf("detach %s: %w", dev, errno)
}

// BackingFile returns the file attached to the loop device dev, as the
// kernel reports it in /sys/block/loopN/loop/backing_file (" (deleted)" is
// appended there when the file was removed). ErrNotFound when nothing is
// attached.
func BackingFile(dev string) (string, error) {
	b, err := os.ReadFile(filepath.Join(sysDir(dev), "backing_file"))
	if errors.Is(err, os.ErrNotExist) {
		return "", fmt.Errorf("backing file of %s: %w", dev, ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("backing file of %s: %w", dev, err)
	}
	return strings.TrimSuffix(string(b), "\n"), nil
}

// Find returns the loop device (e.g. /dev/loop3) that path is attached to:
// the first one whose backing file is the same file (same device and inode),
// or ErrNotFound.
func Find(path string) (string, error) {
	want, err := os.Stat(path)
	if err != nil {
		return "", fmt.Errorf("find loop device for %s: %w", path, err)
	}
	entries, err := os.ReadDir("/sys/block")
	if err != nil {
		return "", fmt.Errorf("find loop device for %s: %w", path, err)
	}
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "loop") {
			continue
		}
		dev := "/dev/" + e.Name()
		backing, err := BackingFile(dev)
		if err != nil {
			continue
		}
		if fi, err := os.Stat(backing); err == nil && os.SameFile(fi, want) {
			return dev, nil
		}
	}
	return "", fmt.Errorf("find loop device for %s: %w", path, ErrNotFound)
}

// Available reports whether loop devices can be attached here.
func Available() error {
	f, err := os.OpenFile(ControlPath, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w: %w", ControlPath, ErrNoLoop, err)
	}
	return f.Close()
}
