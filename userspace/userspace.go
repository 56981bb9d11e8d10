// Package userspace serves a volume's plaintext as one file in a FUSE mount,
// for hosts without device-mapper (containers, CI runners, locked-down
// kernels): the file can be attached with losetup and mounted like a disk
// image, while every sector is encrypted and decrypted by volcrypt's
// userspace engine in this process.
//
// The file behaves like a block device: its size is fixed (truncation and
// O_TRUNC are ignored), writes past its end fail with ENOSPC, every write
// reaches the device before it is acknowledged (no write-back cache in the
// server), and fsync or close after a write calls Options.Sync, so data
// reaches the disk. All I/O is direct (FOPEN_DIRECT_IO): the kernel keeps
// no second page cache of the plaintext under the one of whatever file
// system sits on top. Shared mmap of the file works on Linux 6.6 and later
// (FUSE_DIRECT_IO_ALLOW_MMAP; earlier kernels refuse it with ENODEV): only
// mapped pages are cached, writes to them reach the server on writeback,
// and msync(MS_SYNC) calls Options.Sync like fsync.
//
// Speed: requests are up to 1 MiB; asynchronous direct I/O (a loop device
// with --direct-io) is served in parallel; reads of whole sectors are
// decrypted straight from the device's page cache when the ciphertext is
// mapped (Options.Ciphertext) into reply buffers on huge pages, which halves
// what a read costs beyond the engine's own work (see BenchmarkSequential).
package userspace

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

var (
	// ErrNoFUSE means the kernel offers no FUSE (/dev/fuse is missing).
	ErrNoFUSE = errors.New("FUSE is not available (/dev/fuse is missing)")
	// ErrNotDir means the mount point is not an existing directory.
	ErrNotDir = errors.New("mount point is not a directory")
)

// FSType is the file system type of volcrypt's mounts in /proc/self/mountinfo
// ("fuse." + the name given to the kernel).
const FSType = "fuse.volcrypt"

// DefaultName is the plaintext file's name when Options.Name is empty.
const DefaultName = "volume"

// maxRequest is the largest read or write the kernel sends in one request
// (1 MiB, the kernel's limit since Linux 4.20).
const maxRequest = 1 << 20

// Device is what a mount serves: a fixed-size random-access byte range, such
// as a *volume.Plaintext. Writes must be safe for concurrent use when they do
// not overlap (the kernel serializes writes to the file), reads always.
type Device interface {
	io.ReaderAt
	io.WriterAt
	Size() int64
}

// Options say how to serve a Device.
type Options struct {
	// Name is the file's name inside the mount point; DefaultName if empty.
	Name string
	// ReadOnly mounts read-only: the device is never written.
	ReadOnly bool
	// Sync makes completed writes durable, such as (*os.File).Sync of the
	// underlying device. It runs on fsync and on close or flush after a
	// write; nil means writes are durable when WriteAt returns.
	Sync func() error
	// Source is the mount's source shown in /proc/mounts (the device path);
	// "volcrypt" if empty.
	Source string
	// Ciphertext, if set, is the device's ciphertext mapped, which reads
	// of whole sectors decrypt from directly (see MapCiphertext); it must
	// be dev's and stay mapped until Wait returns.
	Ciphertext *Ciphertext
	// UID and GID own the file; its mode is 0600 (0400 read-only). Only
	// the user who mounts can reach it (no allow_other).
	UID, GID uint32
}

// Mount is a served file. Unmount ends it; Wait returns when the server has
// stopped, whoever unmounted it.
type Mount struct {
	// Dir is the mount point; Path the plaintext file in it.
	Dir, Path string

	server *fuse.Server
	file   *fileNode
	done   chan struct{}
	err    error // the final Sync's error, set before done closes
}

// Serve mounts a file system holding one file, Name, whose contents are dev,
// at dir, and serves it until unmounted. It mounts with mount(2) if it may
// (root, or CAP_SYS_ADMIN), else through fusermount3, the setuid helper
// with which a user mounts FUSE on a directory the user may write (always
// nosuid and nodev; fusermount3 reports its own failures on stderr).
func Serve(dir string, dev Device, o Options) (*Mount, error) {
	if o.Name == "" {
		o.Name = DefaultName
	}
	if o.Source == "" {
		o.Source = "volcrypt"
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return nil, fmt.Errorf("mount %s: %w", dir, ErrNoFUSE)
	}
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("mount %s: %w", dir, ErrNotDir)
	}
	f := &fileNode{dev: dev, size: dev.Size(), ct: o.Ciphertext, readOnly: o.ReadOnly, sync: o.Sync, uid: o.UID, gid: o.GID, mounted: time.Now()}
	root := &rootNode{name: o.Name, file: f}
	// The file's size and the directory never change while mounted.
	timeout := time.Hour
	quiet := log.New(io.Discard, "", 0) // a library never prints
	flags := uintptr(unix.MS_NOSUID | unix.MS_NODEV)
	if o.ReadOnly {
		flags |= unix.MS_RDONLY
	}
	var extra []string
	if o.ReadOnly {
		extra = append(extra, "ro") // for fusermount3; mount(2) has MS_RDONLY
	}
	// Root mounts with mount(2) only, so that its errno is the failure's;
	// another user tries mount(2) (it may hold CAP_SYS_ADMIN), then
	// fusermount3, whose own message is the one that says why it failed.
	privileged := os.Geteuid() == 0
	helperOutput := func() string { return "" }
	if !privileged {
		helperOutput = captureStderr()
	}
	server, err := fs.Mount(dir, root, &fs.Options{
		EntryTimeout: &timeout,
		AttrTimeout:  &timeout,
		UID:          o.UID,
		GID:          o.GID,
		Logger:       quiet,
		MountOptions: fuse.MountOptions{
			FsName:            o.Source,
			Name:              "volcrypt",
			DirectMount:       true,       // and fusermount3 if it fails,
			DirectMountStrict: privileged, // except for root
			DirectMountFlags:  flags,
			Options:           extra,
			MaxWrite:          maxRequest,
			MaxReadAhead:      maxRequest,
			MaxBackground:     64,
			// Asynchronous direct I/O (a loop device's, with
			// --direct-io) stays asynchronous: its requests are
			// sent together and served in parallel. And shared
			// mmap despite direct I/O (Linux 6.6 on): the
			// mapping's pages are cached, written back as
			// requests, and msync reaches Fsync.
			ExtraCapabilities: fuse.CAP_ASYNC_DIO | fuse.CAP_DIRECT_IO_ALLOW_MMAP,
			DisableXAttrs:     true,
			Logger:            quiet,
		},
	})
	msg := helperOutput()
	if err != nil {
		if _, ferr := fusermount(); ferr != nil && !privileged {
			err = fmt.Errorf("%w (mount(2): %w)", ferr, err)
		} else if msg != "" {
			err = fmt.Errorf("%s (%w)", msg, err)
		}
		return nil, fmt.Errorf("mount %s: %w", dir, err)
	}
	m := &Mount{Dir: dir, Path: dir + "/" + o.Name, server: server, file: f, done: make(chan struct{})}
	go func() {
		server.Wait()
		f.bufs.release()
		m.err = f.flush()
		close(m.done)
	}()
	return m, nil
}

// Unmount unmounts the file system; it fails (EBUSY) while the file is
// open or attached to a loop device. The server then stops: Wait returns.
func (m *Mount) Unmount() error {
	if err := unmount(m.Dir, 0); err != nil {
		return fmt.Errorf("unmount %s: %w", m.Dir, err)
	}
	return nil
}

// Detach unmounts lazily (MNT_DETACH): the mount point is free at once and
// the server stops when the last user of the file has gone.
func (m *Mount) Detach() error {
	if err := unmount(m.Dir, unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detach %s: %w", m.Dir, err)
	}
	return nil
}

// Wait blocks until the server has stopped and returns the error of the
// final Sync, if any.
func (m *Mount) Wait() error {
	<-m.done
	return m.err
}

// Done is closed when the server has stopped.
func (m *Mount) Done() <-chan struct{} { return m.done }

// rootNode is the mount's directory, holding the one file.
type rootNode struct {
	fs.Inode
	name string
	file *fileNode
}

var _ = (fs.NodeOnAdder)((*rootNode)(nil))
var _ = (fs.NodeStatfser)((*rootNode)(nil))

func (r *rootNode) OnAdd(ctx context.Context) {
	ch := r.NewPersistentInode(ctx, r.file, fs.StableAttr{Mode: syscall.S_IFREG, Ino: 2})
	r.AddChild(r.name, ch, false)
}

// Statfs reports the file's size as the file system's, all used.
func (r *rootNode) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	const bsize = 4096
	out.Bsize = bsize
	out.Frsize = bsize
	out.Blocks = uint64(r.file.size+bsize-1) / bsize
	out.Files = 1
	out.NameLen = 255
	return 0
}

// fileNode is the plaintext file.
type fileNode struct {
	fs.Inode
	dev      Device
	ct       *Ciphertext // or nil
	size     int64
	bufs     buffers // for read replies
	readOnly bool
	sync     func() error
	uid, gid uint32
	mounted  time.Time // the file's times
	// written counts completed writes (counted after WriteAt returns,
	// before the write is acknowledged); synced is written as it was when
	// the last successful Sync started, under syncMu. Writes and fsyncs
	// run concurrently (asynchronous direct I/O): a write still inside
	// WriteAt when a Sync starts is not counted yet, so the next flush
	// syncs again.
	written atomic.Uint64
	synced  uint64
	syncMu  sync.Mutex
}

var (
	_ = (fs.NodeGetattrer)((*fileNode)(nil))
	_ = (fs.NodeSetattrer)((*fileNode)(nil))
	_ = (fs.NodeOpener)((*fileNode)(nil))
	_ = (fs.NodeReader)((*fileNode)(nil))
	_ = (fs.NodeWriter)((*fileNode)(nil))
	_ = (fs.NodeFsyncer)((*fileNode)(nil))
	_ = (fs.NodeFlusher)((*fileNode)(nil))
)

func (f *fileNode) Getattr(ctx context.Context, _ fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	out.Mode = syscall.S_IFREG | 0o600
	if f.readOnly {
		out.Mode = syscall.S_IFREG | 0o400
	}
	out.Size = uint64(f.size)
	out.Blocks = (out.Size + 511) / 512
	out.Blksize = maxRequest
	out.Nlink = 1
	out.Uid, out.Gid = f.uid, f.gid
	out.SetTimes(nil, &f.mounted, &f.mounted)
	return 0
}

// Setattr changes nothing: the size is the volume's, like a block device's
// (shells' O_TRUNC included), and mode, owner and times are fixed.
func (f *fileNode) Setattr(ctx context.Context, fh fs.FileHandle, _ *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	return f.Getattr(ctx, fh, out)
}

func (f *fileNode) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if f.readOnly && flags&syscall.O_ACCMODE != syscall.O_RDONLY {
		return nil, 0, syscall.EROFS
	}
	return nil, fuse.FOPEN_DIRECT_IO, 0
}

func (f *fileNode) Read(ctx context.Context, _ fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if off < 0 || off >= f.size {
		return fuse.ReadResultData(nil), 0
	}
	if int64(len(dest)) > f.size-off {
		dest = dest[:f.size-off]
	}
	var r fuse.ReadResult = fuse.ReadResultData(dest)
	if b, err := f.bufs.get(); err == nil {
		dest = (*b)[:len(dest)]
		r = &reply{data: dest, release: func() { f.bufs.put(b) }}
	}
	if f.readAt(dest, off) != nil {
		r.Done()
		return nil, syscall.EIO
	}
	return r, 0
}

// readAt fills p with the plaintext at off, all of it inside the file:
// decrypted from the mapped ciphertext when it covers p, else read from the
// device.
func (f *fileNode) readAt(p []byte, off int64) error {
	if f.ct != nil && f.ct.covers(off, len(p)) {
		return f.ct.decrypt(p, off)
	}
	n, err := f.dev.ReadAt(p, off)
	if n == len(p) {
		return nil
	}
	if err == nil {
		err = io.ErrUnexpectedEOF
	}
	return err
}

func (f *fileNode) Write(ctx context.Context, _ fs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	if f.readOnly {
		return 0, syscall.EROFS
	}
	if off < 0 || off >= f.size {
		return 0, syscall.ENOSPC
	}
	if int64(len(data)) > f.size-off {
		data = data[:f.size-off]
	}
	n, err := f.dev.WriteAt(data, off)
	f.written.Add(1) // even a failed write may have changed sectors
	if err != nil {
		return uint32(n), syscall.EIO
	}
	return uint32(n), 0
}

func (f *fileNode) Fsync(ctx context.Context, _ fs.FileHandle, _ uint32) syscall.Errno {
	if err := f.flush(); err != nil {
		return syscall.EIO
	}
	return 0
}

// Flush runs on every close(2): after writes, it makes them durable, so
// close reports a failure to reach the disk.
func (f *fileNode) Flush(ctx context.Context, _ fs.FileHandle) syscall.Errno {
	return f.Fsync(ctx, nil, 0)
}

// flush calls Sync if a write completed since the last successful one
// started.
func (f *fileNode) flush() error {
	f.syncMu.Lock()
	defer f.syncMu.Unlock()
	gen := f.written.Load()
	if f.sync == nil || gen == f.synced {
		return nil
	}
	if err := f.sync(); err != nil {
		return fmt.Errorf("sync: %w", err)
	}
	f.synced = gen
	return nil
}
