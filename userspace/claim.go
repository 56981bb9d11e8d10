package userspace

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// ServedError means another process already serves a device or header
// file: it holds the file's Claim. PID is 0 when the holder is not known.
type ServedError struct {
	Path string
	PID  int
}

func (e *ServedError) Error() string {
	if e.PID > 0 {
		return fmt.Sprintf("busy: %s is already served by PID %d", e.Path, e.PID)
	}
	return fmt.Sprintf("busy: %s is already served by another process", e.Path)
}

// Unwrap gives EBUSY, the errno a busy device has.
func (e *ServedError) Unwrap() error { return unix.EBUSY }

// Claim says, for as long as it is held, that this process serves a file:
// an open file description lock (fcntl F_OFD_SETLK) on the file,
// which every process on the host sees, whoever runs it and wherever it
// keeps its state files.
//
// It is not flock(2) on purpose: cryptsetup, and volcrypt through
// internal/lock, flock an image file itself (a block device through
// /run/cryptsetup/L_MAJ:MIN) for every header read or change, and wait
// for the lock. A server holding flock(LOCK_EX) would make each of them
// (and its own header reads) wait until it stops. On Linux, flock and
// fcntl record locks are separate: no cryptsetup or volcrypt command ever
// waits on a Claim, and the claim lies far past the data (see claimBase).
// (Except on NFS, where the kernel emulates flock with whole-file record
// locks: there a served image's cryptsetup commands would wait.)
type Claim struct {
	f *os.File
}

// claimBase is where the claims' byte range starts: far past any file's
// end (a record lock may lie there), so that it never meets a lock on the
// data. A server locks the one byte at claimBase+PID: the kernel reports
// OFD locks' owners with no PID (-1), so the lock's offset says it.
const claimBase = 1 << 62

// claimPIDs is the span of PIDs (Linux's pid_max is at most 2^22).
const claimPIDs = 1 << 23

// ClaimFile takes the claim on the file at path: exclusive when write is
// set (the file is opened for writing), else shared, which a second
// read-only server could share; but any claim held elsewhere fails with a
// *ServedError, so one file is served once. Release releases it.
func ClaimFile(path string, write bool) (*Claim, error) {
	flag, typ := os.O_RDONLY, int16(unix.F_RDLCK)
	if write {
		flag, typ = os.O_RDWR, unix.F_WRLCK
	}
	f, err := os.OpenFile(path, flag|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("claim %s: %w", path, err)
	}
	// Any claim at all (a reader's too) is a server elsewhere: asked as a
	// write lock, which F_OFD_GETLK allows on a read-only descriptor.
	probe := unix.Flock_t{Type: unix.F_WRLCK, Start: claimBase, Len: claimPIDs}
	if err := unix.FcntlFlock(f.Fd(), unix.F_OFD_GETLK, &probe); err != nil {
		f.Close()
		return nil, fmt.Errorf("claim %s: %w", path, err)
	}
	if probe.Type != unix.F_UNLCK {
		f.Close()
		return nil, &ServedError{Path: path, PID: int(probe.Start - claimBase)}
	}
	lk := unix.Flock_t{Type: typ, Start: claimBase + int64(os.Getpid()), Len: 1}
	err = unix.FcntlFlock(f.Fd(), unix.F_OFD_SETLK, &lk)
	if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EACCES) {
		f.Close()
		return nil, &ServedError{Path: path}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("claim %s: %w", path, err)
	}
	return &Claim{f: f}, nil
}

// Release releases the claim; idempotent, nil-safe.
func (c *Claim) Release() {
	if c == nil || c.f == nil {
		return
	}
	_ = c.f.Close()
	c.f = nil
}
