package userspace

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// slowDevice is a Device over a file whose WriteAt waits until release is
// closed, once entered is closed: a write the kernel sent but the disk has
// yet to finish.
type slowDevice struct {
	*os.File
	size             int64
	entered, release chan struct{}
}

func (d *slowDevice) Size() int64 { return d.size }

func (d *slowDevice) WriteAt(p []byte, off int64) (int, error) {
	close(d.entered)
	<-d.release
	return d.File.WriteAt(p, off)
}

// TestFlushConcurrentWrite: with asynchronous direct I/O the kernel sends
// writes and fsyncs together. An fsync that runs while a write is still in
// the device must not count that write as synced: the next fsync after
// the write's acknowledgement still calls Sync. (Called on the node, as
// the kernel's concurrent requests would: a synchronous pwrite and fsync
// through a mount are serialized by the kernel's inode lock.)
func TestFlushConcurrentWrite(t *testing.T) {
	file, err := os.Create(filepath.Join(t.TempDir(), "dev"))
	require.NoError(t, err)
	defer file.Close()
	require.NoError(t, file.Truncate(1<<20))
	dev := &slowDevice{File: file, size: 1 << 20, entered: make(chan struct{}), release: make(chan struct{})}
	var syncs atomic.Int32
	f := &fileNode{dev: dev, size: dev.size, sync: func() error { syncs.Add(1); return file.Sync() }}

	written := make(chan struct{})
	go func() {
		defer close(written)
		n, errno := f.Write(context.Background(), nil, []byte("acknowledged"), 0)
		if errno != 0 || n != 12 {
			t.Errorf("write: %d, %v", n, errno)
		}
	}()
	<-dev.entered
	require.Zero(t, f.Fsync(context.Background(), nil, 0), "fsync while the write is in the device")
	select {
	case <-written:
		t.Fatal("the write finished before its device did")
	case <-time.After(10 * time.Millisecond):
	}
	close(dev.release)
	<-written
	before := syncs.Load()
	require.Zero(t, f.Fsync(context.Background(), nil, 0))
	require.Equal(t, before+1, syncs.Load(), "the fsync after the acknowledged write syncs it")
	require.Zero(t, f.Fsync(context.Background(), nil, 0))
	require.Equal(t, before+1, syncs.Load(), "nothing new to sync")
}
