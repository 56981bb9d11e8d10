package dm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ControlPath is the device-mapper control node.
const ControlPath = "/dev/mapper/control"

// ioctlHeaderSize is sizeof(struct dm_ioctl) from linux/dm-ioctl.h.
const ioctlHeaderSize = unix.SizeofDmIoctl // 312

// targetSpecSize is sizeof(struct dm_target_spec).
const targetSpecSize = unix.SizeofDmTargetSpec // 40

// Interface version we speak. The kernel accepts any request whose major
// number equals its own and whose minor number is not newer than its own;
// 4.0.0 keeps us compatible with every 4.x kernel, and the features we use
// (deferred remove, UUID in lists) are checked by flags, not by version.
const (
	ioctlVersionMajor = 4
	ioctlVersionMinor = 0
	ioctlVersionPatch = 0
)

// Byte offsets of the fields of struct dm_ioctl. They are checked against
// unix.DmIoctl in the tests.
const (
	offVersion     = 0
	offDataSize    = 12
	offDataStart   = 16
	offTargetCount = 20
	offOpenCount   = 24
	offFlags       = 28
	offEventNr     = 32
	offDev         = 40
	offName        = 48
	offUUID        = 48 + unix.DM_NAME_LEN
)

// Byte offsets of the fields of struct dm_target_spec.
const (
	offSpecStart  = 0
	offSpecLength = 8
	offSpecStatus = 16
	offSpecNext   = 20
	offSpecType   = 24
)

// Buffer sizes for ioctl replies: start small, double on DM_BUFFER_FULL_FLAG.
// A variable so tests can force the retry path.
var initialBufferSize = 16 << 10

const maxBufferSize = 16 << 20

// request is one ioctl buffer: a struct dm_ioctl followed by a data area.
// The memory comes from a []uint64 so the header is 8-byte aligned.
type request struct {
	words []uint64
	buf   []byte
}

func newRequest(size int) *request {
	if size < ioctlHeaderSize {
		size = ioctlHeaderSize
	}
	size = (size + 7) &^ 7
	words := make([]uint64, size/8)
	buf := unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), size)
	return &request{words: words, buf: buf}
}

func (r *request) u32(off int) uint32       { return binary.NativeEndian.Uint32(r.buf[off:]) }
func (r *request) setU32(off int, v uint32) { binary.NativeEndian.PutUint32(r.buf[off:], v) }

// wipe zeroes the whole buffer; used for requests that carried key material.
func (r *request) wipe() { clear(r.buf) }

// header describes a request before it is sent.
type header struct {
	name  string
	uuid  string
	flags uint32
	dev   uint64
	event uint32
}

// fill writes the header and data into the buffer.
func (r *request) fill(h header, data []byte) error {
	clear(r.buf)
	if len(h.name) >= unix.DM_NAME_LEN {
		return fmt.Errorf("device name %q: longer than %d bytes: %w", h.name, unix.DM_NAME_LEN-1, ErrInvalid)
	}
	if len(h.uuid) >= unix.DM_UUID_LEN {
		return fmt.Errorf("device uuid %q: longer than %d bytes: %w", h.uuid, unix.DM_UUID_LEN-1, ErrInvalid)
	}
	if ioctlHeaderSize+len(data) > len(r.buf) {
		return fmt.Errorf("ioctl data of %d bytes does not fit: %w", len(data), ErrInvalid)
	}
	r.setU32(offVersion, ioctlVersionMajor)
	r.setU32(offVersion+4, ioctlVersionMinor)
	r.setU32(offVersion+8, ioctlVersionPatch)
	r.setU32(offDataSize, uint32(len(r.buf)))
	r.setU32(offDataStart, ioctlHeaderSize)
	r.setU32(offFlags, h.flags)
	r.setU32(offEventNr, h.event)
	binary.NativeEndian.PutUint64(r.buf[offDev:], h.dev)
	copy(r.buf[offName:offName+unix.DM_NAME_LEN-1], h.name)
	copy(r.buf[offUUID:offUUID+unix.DM_UUID_LEN-1], h.uuid)
	copy(r.buf[ioctlHeaderSize:], data)
	return nil
}

// reply is the decoded header of a completed request plus its data area.
type reply struct {
	version     [3]uint32
	targetCount uint32
	openCount   int32
	flags       uint32
	eventNr     uint32
	dev         uint64
	name        string
	uuid        string
	data        []byte // the data area the kernel filled, from data_start
}

func (r *request) decode() (reply, error) {
	var rep reply
	for i := range rep.version {
		rep.version[i] = r.u32(offVersion + 4*i)
	}
	rep.targetCount = r.u32(offTargetCount)
	rep.openCount = int32(r.u32(offOpenCount))
	rep.flags = r.u32(offFlags)
	rep.eventNr = r.u32(offEventNr)
	rep.dev = binary.NativeEndian.Uint64(r.buf[offDev:])
	rep.name = cString(r.buf[offName : offName+unix.DM_NAME_LEN])
	rep.uuid = cString(r.buf[offUUID : offUUID+unix.DM_UUID_LEN])
	start := int(r.u32(offDataStart))
	size := int(r.u32(offDataSize))
	if start < ioctlHeaderSize || start > len(r.buf) || size > len(r.buf) {
		return rep, fmt.Errorf("kernel reply: data area %d..%d outside buffer of %d bytes: %w", start, size, len(r.buf), ErrInvalid)
	}
	if size < start {
		size = start
	}
	rep.data = r.buf[start:size]
	return rep, nil
}

func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// control is an open /dev/mapper/control.
type control struct {
	fd int
}

// openControl opens the control node, creating it from sysfs when the
// device-mapper module is loaded but the node is missing.
func openControl() (*control, error) {
	fd, err := unix.Open(ControlPath, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if errors.Is(err, unix.ENOENT) {
		if mkErr := makeControlNode(); mkErr == nil {
			fd, err = unix.Open(ControlPath, unix.O_RDWR|unix.O_CLOEXEC, 0)
		}
	}
	if err != nil {
		switch {
		case errors.Is(err, unix.ENOENT), errors.Is(err, unix.ENXIO), errors.Is(err, unix.ENODEV):
			return nil, fmt.Errorf("open %s: %w: %w", ControlPath, ErrNoDeviceMapper, err)
		case errors.Is(err, unix.EACCES), errors.Is(err, unix.EPERM):
			return nil, fmt.Errorf("open %s: %w: %w", ControlPath, ErrPermission, err)
		}
		return nil, fmt.Errorf("open %s: %w", ControlPath, err)
	}
	return &control{fd: fd}, nil
}

// makeControlNode creates /dev/mapper/control from
// /sys/class/misc/device-mapper/dev, as libdevmapper does.
func makeControlNode() error {
	b, err := os.ReadFile("/sys/class/misc/device-mapper/dev")
	if err != nil {
		return err
	}
	major, minor, err := parseMajorMinor(strings.TrimSpace(string(b)))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(ControlPath), 0o755); err != nil {
		return err
	}
	return unix.Mknod(ControlPath, unix.S_IFCHR|0o600, int(unix.Mkdev(major, minor)))
}

func (c *control) close() error { return unix.Close(c.fd) }

// do runs one ioctl. When the kernel reports that the data area was too
// small (DM_BUFFER_FULL_FLAG), it retries with a buffer twice as large.
// secure marks requests that carry or return key material: the kernel is
// asked to wipe its copies and every buffer used is wiped here after the
// caller is done with the reply (the caller must call the returned release).
func (c *control) do(cmd uint, h header, data []byte, secure bool) (reply, func(), error) {
	size := initialBufferSize
	if need := ioctlHeaderSize + len(data) + 8; need > size {
		size = need
	}
	if secure {
		h.flags |= unix.DM_SECURE_DATA_FLAG
	}
	for {
		req := newRequest(size)
		release := func() {
			if secure {
				req.wipe()
			}
		}
		if err := req.fill(h, data); err != nil {
			release()
			return reply{}, func() {}, err
		}
		_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(c.fd), uintptr(cmd), uintptr(unsafe.Pointer(&req.buf[0])))
		if errno != 0 {
			release()
			return reply{}, func() {}, errno
		}
		rep, err := req.decode()
		if err != nil {
			release()
			return reply{}, func() {}, err
		}
		if rep.flags&unix.DM_BUFFER_FULL_FLAG != 0 {
			release()
			if size >= maxBufferSize {
				return reply{}, func() {}, fmt.Errorf("kernel reply larger than %d bytes: %w", maxBufferSize, ErrInvalid)
			}
			size *= 2
			continue
		}
		return rep, release, nil
	}
}

// call runs an ioctl that carries no secrets and whose data area the caller
// reads before the next call.
func (c *control) call(cmd uint, h header, data []byte) (reply, error) {
	rep, _, err := c.do(cmd, h, data, false)
	return rep, err
}

func parseMajorMinor(s string) (uint32, uint32, error) {
	a, b, ok := strings.Cut(s, ":")
	if !ok {
		return 0, 0, fmt.Errorf("parse device number %q: want major:minor: %w", s, ErrInvalid)
	}
	major, err := strconv.ParseUint(a, 10, 32)
	if err != nil {
		return 0, 0, fmt.Errorf("parse device number %q: %w", s, ErrInvalid)
	}
	minor, err := strconv.ParseUint(b, 10, 32)
	if err != nil {
		return 0, 0, fmt.Errorf("parse device number %q: %w", s, ErrInvalid)
	}
	return uint32(major), uint32(minor), nil
}

func uintptrOf(r *request) uintptr { return uintptr(unsafe.Pointer(&r.buf[0])) }
