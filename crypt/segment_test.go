package crypt

import (
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// memDev is an in-memory Device that counts its accesses.
type memDev struct {
	mu  sync.Mutex
	buf []byte
}

func (d *memDev) ReadAt(p []byte, off int64) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if off >= int64(len(d.buf)) {
		return 0, io.EOF
	}
	n := copy(p, d.buf[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

func (d *memDev) WriteAt(p []byte, off int64) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if off+int64(len(p)) > int64(len(d.buf)) {
		return 0, errors.New("memDev: write past end")
	}
	return copy(d.buf[off:], p), nil
}

// TestSegmentModel drives random unaligned reads and writes against a
// plaintext model and checks the device holds exactly what the Cipher would
// make of the model.
func TestSegmentModel(t *testing.T) {
	for _, ss := range sectorSizes {
		for _, spec := range []string{"aes-xts-plain64", "aes-cbc-essiv:sha256"} {
			t.Run(fmt.Sprintf("%s/%d", spec, ss), func(t *testing.T) {
				r := mrand.New(mrand.NewPCG(uint64(ss), 7))
				key := randBytes(t, 32)
				c, err := New(spec, key, ss)
				require.NoError(t, err)
				const offset, tweak = 3 * 4096, 1000
				size := int64(40 * ss)
				dev := &memDev{buf: make([]byte, offset+size+4096)}
				seg := NewSegment(dev, c, offset, size+int64(ss)/2, tweak) // rounded down to whole sectors
				require.Equal(t, size, seg.Size())

				model := make([]byte, size)
				_, err = seg.WriteAt(model, 0) // start from encrypted zeros
				require.NoError(t, err)

				for i := 0; i < 300; i++ {
					off := r.Int64N(size)
					n := r.IntN(3*ss + 1)
					if r.IntN(4) == 0 {
						n = r.IntN(40) // small writes inside one sector
					}
					n = min(n, int(size-off))
					if r.IntN(2) == 0 {
						p := make([]byte, n)
						for j := range p {
							p[j] = byte(r.Uint32())
						}
						m, err := seg.WriteAt(p, off)
						require.NoError(t, err)
						require.Equal(t, n, m)
						copy(model[off:], p)
					} else {
						p := make([]byte, n)
						m, err := seg.ReadAt(p, off)
						require.NoError(t, err)
						require.Equal(t, n, m)
						require.Equal(t, model[off:off+int64(n)], p, "read %d at %d", n, off)
					}
				}

				all := make([]byte, size)
				_, err = seg.ReadAt(all, 0)
				require.NoError(t, err)
				require.Equal(t, model, all)

				// The device holds the model encrypted with IVs from the tweak.
				want := make([]byte, size)
				require.NoError(t, c.Encrypt(want, model, tweak))
				require.Equal(t, want, dev.buf[offset:offset+size])
				require.Equal(t, make([]byte, 4096), dev.buf[offset+size:], "nothing written past the segment")
			})
		}
	}
}

func TestSegmentBounds(t *testing.T) {
	c, err := New("aes-xts-plain64", randBytes(t, 64), 512)
	require.NoError(t, err)
	const size = 4 * 512
	dev := &memDev{buf: make([]byte, 512+size)}
	seg := NewSegment(dev, c, 512, size, 0)

	p := make([]byte, 100)
	n, err := seg.ReadAt(p, size)
	require.ErrorIs(t, err, io.EOF)
	require.Zero(t, n)

	n, err = seg.ReadAt(p, size-30)
	require.ErrorIs(t, err, io.EOF)
	require.Equal(t, 30, n)

	n, err = seg.ReadAt(make([]byte, size), 0)
	require.NoError(t, err)
	require.Equal(t, size, n)

	_, err = seg.ReadAt(p, -1)
	require.ErrorIs(t, err, ErrOutOfRange)

	before := append([]byte(nil), dev.buf...)
	tests := []struct {
		name string
		n    int
		off  int64
	}{
		{"crosses the end", 100, size - 30},
		{"starts at the end", 1, size},
		{"starts past the end", 1, size + 512},
		{"negative offset", 10, -5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := seg.WriteAt(make([]byte, tt.n), tt.off)
			require.ErrorIs(t, err, ErrOutOfRange)
			require.Zero(t, n)
			require.Equal(t, before, dev.buf, "a refused write changes nothing")
		})
	}
	n, err = seg.WriteAt(nil, size)
	require.NoError(t, err, "an empty write at the end is fine")
	require.Zero(t, n)

	var empty Segment
	_, err = empty.ReadAt(p, 0)
	require.ErrorIs(t, err, ErrNoCipher)
	_, err = NewSegment(dev, nil, 0, size, 0).WriteAt(p, 0)
	require.ErrorIs(t, err, ErrNoCipher)
}

// TestSegmentShortDevice reports a device that ends inside the segment.
func TestSegmentShortDevice(t *testing.T) {
	c, err := New("aes-xts-plain64", randBytes(t, 64), 4096)
	require.NoError(t, err)
	dev := &memDev{buf: make([]byte, 6000)}
	seg := NewSegment(dev, c, 0, 8192, 0)
	_, err = seg.ReadAt(make([]byte, 8192), 0)
	require.ErrorIs(t, err, io.ErrUnexpectedEOF)
	_, err = seg.ReadAt(make([]byte, 10), 4100)
	require.ErrorIs(t, err, io.ErrUnexpectedEOF)
}

// TestSegmentConcurrentWrites writes disjoint, sector-sharing ranges in
// parallel; partial-sector read-modify-writes must not lose each other.
func TestSegmentConcurrentWrites(t *testing.T) {
	c, err := New("aes-xts-plain64", randBytes(t, 64), 4096)
	require.NoError(t, err)
	const size = 8 * 4096
	dev := &memDev{buf: make([]byte, size)}
	seg := NewSegment(dev, c, 0, size, 0)
	const writers, span = 16, size / 16 // 2048 bytes each: two writers per sector
	var wg sync.WaitGroup
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			p := make([]byte, span)
			for i := range p {
				p[i] = byte(w + 1)
			}
			_, err := seg.WriteAt(p, int64(w*span))
			require.NoError(t, err)
		}(w)
	}
	wg.Wait()
	got := make([]byte, size)
	_, err = seg.ReadAt(got, 0)
	require.NoError(t, err)
	for w := 0; w < writers; w++ {
		for i := 0; i < span; i++ {
			require.Equal(t, byte(w+1), got[w*span+i], "writer %d byte %d", w, i)
		}
	}
}

func TestSegmentAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under the race detector")
	}
	c, err := New("aes-xts-plain64", randBytes(t, 64), 4096)
	require.NoError(t, err)
	dev := &memDev{buf: make([]byte, 1<<20)}
	seg := NewSegment(dev, c, 0, 1<<20, 0)
	p := make([]byte, 3*4096+100)
	_, err = seg.WriteAt(p, 50) // warm the pools
	require.NoError(t, err)
	allocs := testing.AllocsPerRun(50, func() {
		_, _ = seg.WriteAt(p, 50)
		_, _ = seg.ReadAt(p, 50)
	})
	require.Zero(t, allocs)
}
