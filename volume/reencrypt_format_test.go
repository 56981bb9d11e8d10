package volume

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestEncryptFormatTornWrites cuts the power during each write of the
// header format of an encryption with a data shift, at several bytes and
// with either end of the write landed, and checks that the rerun finishes
// the encryption with no byte of the data lost.
func TestEncryptFormatTornWrites(t *testing.T) {
	const dev, reduce = 8 << 20, 4 << 20
	const size = dev - reduce
	r := rand.New(rand.NewPCG(11, 12))
	orig := make([]byte, dev)
	for i := range orig {
		orig[i] = byte(r.Uint32())
	}
	img := filepath.Join(t.TempDir(), "plain.img")
	o := encryptOpts(reduce)
	o.KeyslotsSizeBytes = 1 << 20 // leaves plain data to zero before the data offset

	// The writes format makes.
	var writes [][2]int64 // offset, length
	formatTestHook = func(p []byte, off int64) ([]byte, int64, bool) {
		writes = append(writes, [2]int64{off, int64(len(p))})
		return nil, 0, false
	}
	t.Cleanup(func() { formatTestHook = nil })
	require.NoError(t, os.WriteFile(img, orig, 0o600))
	v, err := Encrypt(context.Background(), img, []byte(testPass), o)
	require.NoError(t, err)
	v.Close()
	requireSameData(t, orig[:size], plainBytes(t, img, size))
	require.GreaterOrEqual(t, len(writes), 5, "secondary header (2 writes), key slots, zeros, primary header")

	type cut struct {
		n    int64
		tail bool
	}
	for w, wr := range writes {
		cuts := []cut{{0, false}, {wr[1] / 3, false}, {wr[1] - 1, false}, {wr[1] / 2, true}}
		if w == 0 {
			// The first sector of the secondary copy, written alone
			// (sector writes are atomic): before or after.
			require.Equal(t, int64(512), wr[1])
			cuts = []cut{{0, false}, {512, false}}
		}
		for _, c := range cuts {
			t.Run(fmt.Sprintf("write-%d-at-%d-len-%d-cut-%d-tail-%v", w, wr[0], wr[1], c.n, c.tail), func(t *testing.T) {
				require.NoError(t, os.WriteFile(img, orig, 0o600))
				i := 0
				formatTestHook = func(p []byte, off int64) ([]byte, int64, bool) {
					i++
					if i-1 != w {
						return nil, 0, false
					}
					if c.tail {
						cut := int64(len(p)) - c.n
						return p[cut:], off + cut, true
					}
					return p[:c.n], off, true
				}
				_, err := Encrypt(context.Background(), img, []byte(testPass), o)
				require.ErrorIs(t, err, errSimulatedCrash)
				formatTestHook = nil
				v, err := Encrypt(context.Background(), img, []byte(testPass), o)
				require.NoError(t, err, "rerun")
				v.Close()
				requireSameData(t, orig[:size], plainBytes(t, img, size))
			})
		}
	}
}

// TestEncryptRefusesLostPrimaryMidRun: a header whose primary copy is gone
// after hotzones were encrypted must not be formatted again (that would
// take encrypted data for plain).
func TestEncryptRefusesLostPrimaryMidRun(t *testing.T) {
	const dev, fs = testDev, testDev - testReduce
	img, _ := fsImage(t, dev, fs, 16)
	runKilled(t, encryptChild(img), killCase{2, stageProgress})
	f, err := os.OpenFile(img, os.O_RDWR, 0)
	require.NoError(t, err)
	_, err = f.WriteAt(make([]byte, 4096), 0)
	f.Close()
	require.NoError(t, err)
	before, err := os.ReadFile(img)
	require.NoError(t, err)
	_, err = Encrypt(context.Background(), img, []byte(testPass), encryptOpts(testReduce))
	require.ErrorIs(t, err, ErrNotInReencryption)
	after, err := os.ReadFile(img)
	require.NoError(t, err)
	require.True(t, bytes.Equal(before, after), "the refusal changes nothing")
}
