// Package faultio is a block device in memory for crash tests. It records
// every write and flush an operation makes, can fail a chosen write after
// part of it reached the device, and rebuilds the device as a crash at any
// byte of any write would have left it, with the write torn from either
// end. It is test support: nothing in volcrypt uses it in production.
package faultio

import (
	"errors"
	"fmt"
	"io"
	"sync"
)

// ErrInjected is the error a write fails with when Fail chose it.
var ErrInjected = errors.New("faultio: injected write failure")

// Op is one recorded operation: a write of Data at Off, or a flush.
type Op struct {
	Off   int64
	Data  []byte
	Flush bool
}

// Device is an in-memory device over a base image that it never changes:
// writes are kept in a log and read back on top of the image.
type Device struct {
	mu   sync.Mutex
	base []byte
	log  []Op

	failWrite, failBytes int // write number to fail, bytes of it that land; failWrite < 0: none
	writes               int
}

// New returns a device whose initial content is base (not copied: the
// caller must not change it).
func New(base []byte) *Device {
	return &Device{base: base, failWrite: -1}
}

// Fail makes write number write (counting from 0) store only its first
// bytes bytes and return ErrInjected; later writes succeed, as after an
// I/O error the operation may go on.
func (d *Device) Fail(write, bytes int) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.failWrite, d.failBytes = write, bytes
}

// Size is the device's size in bytes.
func (d *Device) Size() int64 { return int64(len(d.base)) }

// ReadAt reads the device's current content.
func (d *Device) ReadAt(p []byte, off int64) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return readOverlay(d.base, d.log, p, off)
}

// WriteAt records a write. Writes past the end of the device fail.
func (d *Device) WriteAt(p []byte, off int64) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if off < 0 || off+int64(len(p)) > int64(len(d.base)) {
		return 0, fmt.Errorf("faultio: write [%d, %d) outside the %d-byte device", off, off+int64(len(p)), len(d.base))
	}
	n := len(p)
	var err error
	if d.writes == d.failWrite {
		n, err = min(d.failBytes, len(p)), ErrInjected
	}
	d.writes++
	d.log = append(d.log, Op{Off: off, Data: append([]byte(nil), p[:n]...)})
	return n, err
}

// Sync records a flush.
func (d *Device) Sync() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.log = append(d.log, Op{Flush: true})
	return nil
}

// Close does nothing; the device stays readable.
func (d *Device) Close() error { return nil }

// Log returns the operations recorded so far.
func (d *Device) Log() []Op {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]Op(nil), d.log...)
}

// Writes returns the indexes in Log of the writes.
func (d *Device) Writes() []int {
	var idx []int
	for i, op := range d.Log() {
		if !op.Flush {
			idx = append(idx, i)
		}
	}
	return idx
}

// Unflushed returns the writes (indexes in Log) that another write follows
// before any flush: a crash may persist them in either order, so an
// operation whose safety depends on its write order must have none.
func (d *Device) Unflushed() []int {
	log := d.Log()
	var out []int
	for i, op := range log {
		if op.Flush {
			continue
		}
		for _, next := range log[i+1:] {
			if next.Flush {
				break
			}
			out = append(out, i)
			break
		}
	}
	return out
}

// Tear says which part of a torn write reached the device.
type Tear int

const (
	// Head: the first n bytes of the write landed.
	Head Tear = iota
	// Tail: the last n bytes of the write landed (disks do not promise to
	// write a request's sectors in order).
	Tail
)

func (t Tear) String() string {
	if t == Tail {
		return "tail"
	}
	return "head"
}

// Crash returns the device as a crash during operation op of Log would
// leave it: every earlier operation done, and of the write op only n bytes,
// at the end that tear names.
func (d *Device) Crash(op, n int, tear Tear) *View {
	log := d.Log()
	ops := append([]Op(nil), log[:op]...)
	w := log[op]
	n = min(max(n, 0), len(w.Data))
	if tear == Head {
		ops = append(ops, Op{Off: w.Off, Data: w.Data[:n]})
	} else {
		cut := len(w.Data) - n
		ops = append(ops, Op{Off: w.Off + int64(cut), Data: w.Data[cut:]})
	}
	return &View{base: d.base, log: ops}
}

// View is a read-only state of a device.
type View struct {
	base []byte
	log  []Op
}

// ReadAt reads the view.
func (v *View) ReadAt(p []byte, off int64) (int, error) { return readOverlay(v.base, v.log, p, off) }

// Bytes returns a copy of the view's content from off to off+n.
func (v *View) Bytes(off, n int64) []byte {
	p := make([]byte, n)
	m, _ := v.ReadAt(p, off)
	return p[:m]
}

// readOverlay reads base with the writes of log applied in order.
func readOverlay(base []byte, log []Op, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, fmt.Errorf("faultio: negative offset %d", off)
	}
	if off >= int64(len(base)) {
		return 0, io.EOF
	}
	n := copy(p, base[off:])
	end := off + int64(n)
	for _, op := range log {
		if op.Flush {
			continue
		}
		from, to := max(op.Off, off), min(op.Off+int64(len(op.Data)), end)
		if from < to {
			copy(p[from-off:to-off], op.Data[from-op.Off:to-op.Off])
		}
	}
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// Points returns the byte counts at which to tear a write of n bytes. With
// full set it is every count for writes up to 64 KiB (header copies) and
// every 512-byte sector boundary of larger ones. Otherwise it is every
// sector boundary of writes up to 64 KiB, 64 evenly spaced sector
// boundaries of larger ones (key material and wipes, where only how much
// landed matters), and the edges of a LUKS2 binary header's fields (magic,
// version, size, seqid, offset, checksum).
func Points(n int, full bool) []int {
	step := 512
	switch {
	case full && n <= 64<<10:
		step = 1
	case !full && n > 64<<10:
		step = max(512, n/64/512*512)
	}
	edges := map[int]bool{1: true, 6: true, 8: true, 16: true, 24: true, 256: true, 264: true, 448: true, 449: true, 480: true, 511: true}
	var out []int
	for i := 0; i <= n; i++ {
		if i%step == 0 || i == n || edges[i] {
			out = append(out, i)
		}
	}
	return out
}
