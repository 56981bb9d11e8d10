// Package dm drives the Linux device mapper through ioctls on
// /dev/mapper/control, without libdevmapper or dmsetup, and builds and parses
// dm-crypt tables exactly as cryptsetup does.
//
// Sizes in this package's generic API (Target) are in 512-byte sectors, the
// unit of the device-mapper interface; CryptTarget takes bytes and is the only
// place where bytes are converted to sectors.
//
// Device nodes: the kernel only creates /dev/dm-N. When udev is not running
// (no /run/udev/control, or DM_DISABLE_UDEV is set) this package makes and
// removes /dev/mapper/NAME itself; when udev runs it waits briefly for udev's
// node and makes it itself if none appears.
package dm

import (
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// Sentinel errors; match them with errors.Is.
var (
	// ErrNoDeviceMapper means the kernel has no device mapper (or its
	// control node cannot be found).
	ErrNoDeviceMapper = errors.New("device mapper not available")
	// ErrNotFound means no device of that name exists.
	ErrNotFound = errors.New("device not found")
	// ErrExists means a device of that name or UUID exists already.
	ErrExists = errors.New("device already exists")
	// ErrBusy means the device is open (mounted, held by another device or
	// open by a process); see BusyError for who holds it.
	ErrBusy = errors.New("device is busy")
	// ErrPermission means the caller may not use the device mapper (not root).
	ErrPermission = errors.New("permission denied")
	// ErrInvalid means an argument, a table line or a kernel reply is malformed.
	ErrInvalid = errors.New("invalid argument")
	// ErrKeyNotAvailable means dm-crypt could not find the keyring key named
	// in a table (ENOKEY).
	ErrKeyNotAvailable = errors.New("key not available in the kernel keyring")
)

// BusyError says that a device could not be removed because it is in use.
// It wraps ErrBusy.
type BusyError struct {
	Name      string
	OpenCount int
	// Holders describes who holds the device: mount points
	// ("mounted on /mnt") and stacked devices ("held by dm-3").
	Holders []string
}

func (e *BusyError) Error() string {
	msg := fmt.Sprintf("device %s is busy (open count %d)", e.Name, e.OpenCount)
	if len(e.Holders) > 0 {
		msg += ": " + strings.Join(e.Holders, ", ")
	}
	return msg
}

// Unwrap makes errors.Is(err, ErrBusy) true.
func (e *BusyError) Unwrap() error { return ErrBusy }

// Target is one line of a device-mapper table. Start and length are in
// 512-byte sectors.
type Target struct {
	StartSector   uint64
	LengthSectors uint64
	Type          string // "crypt", "linear", "error", ...
	Params        string // target parameters; crypt keys given as hex are masked with zeros
}

// String formats the target like `dmsetup table`: "<start> <length> <type> <params>".
func (t Target) String() string {
	s := fmt.Sprintf("%d %d %s", t.StartSector, t.LengthSectors, t.Type)
	if t.Params != "" {
		s += " " + t.Params
	}
	return s
}

// Info is the state of a mapped device (DM_DEV_STATUS).
type Info struct {
	Name  string
	UUID  string
	Major uint32
	Minor uint32
	// OpenCount is how many times the device is open (mounts, holders, fds).
	OpenCount   int
	TargetCount int
	EventNr     uint32
	// ReadOnly reports a read-only live table.
	ReadOnly bool
	// Suspended reports a suspended device.
	Suspended bool
	// DeferredRemove reports a removal scheduled for the last close.
	DeferredRemove bool
	// LiveTable and InactiveTable report which tables are loaded.
	LiveTable     bool
	InactiveTable bool
}

// DevNum is the device number as "major:minor".
func (i Info) DevNum() string { return fmt.Sprintf("%d:%d", i.Major, i.Minor) }

// Device is one entry of List.
type Device struct {
	Name  string
	UUID  string // empty when the kernel does not report UUIDs in lists
	Major uint32
	Minor uint32
}

// Version is the kernel's device-mapper ioctl interface version.
type Version struct {
	Major, Minor, Patch uint32
}

func (v Version) String() string { return fmt.Sprintf("%d.%d.%d", v.Major, v.Minor, v.Patch) }

// AtLeast reports whether v >= major.minor.patch.
func (v Version) AtLeast(major, minor, patch uint32) bool {
	if v.Major != major {
		return v.Major > major
	}
	if v.Minor != minor {
		return v.Minor > minor
	}
	return v.Patch >= patch
}

// mapErrno turns a kernel error into one of the package sentinels where it
// has a clear meaning for the operation.
func mapErrno(op, name string, err error) error {
	var errno unix.Errno
	if !errors.As(err, &errno) {
		return fmt.Errorf("%s %s: %w", op, name, err)
	}
	switch errno {
	case unix.ENXIO:
		return fmt.Errorf("%s %s: %w", op, name, ErrNotFound)
	case unix.EPERM, unix.EACCES:
		return fmt.Errorf("%s %s: %w: %w", op, name, ErrPermission, errno)
	case unix.ENOKEY:
		return fmt.Errorf("%s %s: %w: %w", op, name, ErrKeyNotAvailable, errno)
	}
	return fmt.Errorf("%s %s: %w", op, name, errno)
}

// checkName rejects names the kernel or the /dev/mapper directory cannot hold.
func checkName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("device name is empty: %w", ErrInvalid)
	case len(name) >= unix.DM_NAME_LEN:
		return fmt.Errorf("device name %q: longer than %d bytes: %w", name, unix.DM_NAME_LEN-1, ErrInvalid)
	case strings.ContainsRune(name, '/'), name == ".", name == "..", name == "control":
		return fmt.Errorf("device name %q: not allowed: %w", name, ErrInvalid)
	}
	return nil
}

// GetVersion returns the kernel's device-mapper interface version
// (DM_VERSION).
func GetVersion() (Version, error) {
	c, err := openControl()
	if err != nil {
		return Version{}, err
	}
	defer c.close()
	rep, err := c.call(unix.DM_VERSION, header{}, nil)
	if err != nil {
		return Version{}, mapErrno("device-mapper version", "", err)
	}
	return Version{rep.version[0], rep.version[1], rep.version[2]}, nil
}

// Available reports whether the device mapper can be used: the control node
// opens and answers DM_VERSION.
func Available() error {
	_, err := GetVersion()
	return err
}
