// Package lock takes the same advisory locks as cryptsetup 2.x, so that
// volcrypt and cryptsetup never change one LUKS2 header at the same time.
//
// cryptsetup locks a block device through a file under /run/cryptsetup
// named "L_<major>:<minor>" and a regular file (an image) by flock on the
// file itself. Readers take shared locks, writers exclusive ones. Lock files
// are created on demand (mode 0600, directory 0700) and removed by the last
// exclusive holder that can take the lock without waiting.
package lock

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// Dir is cryptsetup's lock directory (DEFAULT_LUKS2_LOCK_PATH). A variable
// for tests only.
var Dir = "/run/cryptsetup"

// ErrLocked means a Try function found the lock held elsewhere.
var ErrLocked = errors.New("device is locked by another process")

// Lock is a held lock. Unlock releases it; Unlock is idempotent.
type Lock struct {
	fd       int
	lockFile string // set for block devices: the file under Dir
}

// Exclusive waits for and takes an exclusive lock on the device or image
// file at path.
func Exclusive(path string) (*Lock, error) { return acquire(path, unix.LOCK_EX) }

// Shared waits for and takes a shared lock on the device or image file at path.
func Shared(path string) (*Lock, error) { return acquire(path, unix.LOCK_SH) }

// TryExclusive is Exclusive without waiting: ErrLocked if held elsewhere.
func TryExclusive(path string) (*Lock, error) { return acquire(path, unix.LOCK_EX|unix.LOCK_NB) }

// TryShared is Shared without waiting: ErrLocked if held exclusively elsewhere.
func TryShared(path string) (*Lock, error) { return acquire(path, unix.LOCK_SH|unix.LOCK_NB) }

// FileFor returns the lock file cryptsetup uses for the block device
// major:minor.
func FileFor(major, minor uint32) string {
	return filepath.Join(Dir, fmt.Sprintf("L_%d:%d", major, minor))
}

func acquire(path string, how int) (*Lock, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFBLK:
		return acquireDevice(path, unix.Major(st.Rdev), unix.Minor(st.Rdev), how)
	case unix.S_IFREG:
		// Like cryptsetup: read-write when possible (NFSv4 needs it for
		// flock), read-only otherwise.
		fd, err := unix.Open(path, unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err != nil {
			fd, err = unix.Open(path, unix.O_RDONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		}
		if err != nil {
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if err := flock(fd, how); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		return &Lock{fd: fd}, nil
	}
	return nil, fmt.Errorf("lock %s: neither a block device nor a regular file", path)
}

func acquireDevice(path string, major, minor uint32, how int) (*Lock, error) {
	if err := os.MkdirAll(Dir, 0o700); err != nil {
		return nil, fmt.Errorf("lock %s: lock directory: %w", path, err)
	}
	name := FileFor(major, minor)
	for {
		fd, err := unix.Open(name, unix.O_RDWR|unix.O_CREAT|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return nil, fmt.Errorf("lock %s: open %s: %w", path, name, err)
		}
		if err := flock(fd, how); err != nil {
			unix.Close(fd)
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		// The previous holder may have unlinked the file between our open
		// and flock: then we hold a lock nobody else can see; start over.
		var a, b unix.Stat_t
		if unix.Stat(name, &a) == nil && unix.Fstat(fd, &b) == nil && a.Dev == b.Dev && a.Ino == b.Ino {
			return &Lock{fd: fd, lockFile: name}, nil
		}
		unix.Close(fd)
	}
}

func flock(fd, how int) error {
	for {
		err := unix.Flock(fd, how)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EWOULDBLOCK):
			return ErrLocked
		}
		return err
	}
}

// Unlock releases the lock. For a block device it also removes the lock
// file when no one else holds or waits on it, as cryptsetup does.
func (l *Lock) Unlock() error {
	if l == nil || l.fd < 0 {
		return nil
	}
	if l.lockFile != "" && unix.Flock(l.fd, unix.LOCK_EX|unix.LOCK_NB) == nil {
		var a, b unix.Stat_t
		if unix.Stat(l.lockFile, &a) == nil && unix.Fstat(l.fd, &b) == nil && a.Dev == b.Dev && a.Ino == b.Ino {
			_ = unix.Unlink(l.lockFile)
		}
	}
	err := unix.Close(l.fd)
	l.fd = -1
	if err != nil {
		return fmt.Errorf("unlock: %w", err)
	}
	return nil
}
