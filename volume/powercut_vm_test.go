package volume

import (
	"context"
	"crypto/rand"
	mrand "math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"

	"github.com/volcrypt/volcrypt/header"
	"github.com/volcrypt/volcrypt/internal/dm"
	"github.com/volcrypt/volcrypt/kdf"
)

// TestVMPowerCutDuringKeyAdd adds a key through a device-mapper device over
// the VM's scratch disk and, at a random moment, swaps its table for
// dm-flakey with drop_writes: from then on every write is silently lost,
// as in a power cut. The disk underneath must then open with the old key
// set or the new one.
func TestVMPowerCutDuringKeyAdd(t *testing.T) {
	inVM(t)
	const disk = "/dev/vda"
	if _, err := os.Stat(disk); err != nil {
		t.Skipf("no scratch disk %s: %v", disk, err)
	}
	size, err := dm.SizeBytes(disk)
	require.NoError(t, err)
	sectors := min(size, 64<<20) / 512
	const name = "volcrypt-powercut"
	linear := []dm.Target{{LengthSectors: sectors, Type: "linear", Params: disk + " 0"}}
	cut := []dm.Target{{LengthSectors: sectors, Type: "flakey", Params: disk + " 0 0 1 1 drop_writes"}}

	var run time.Duration
	outcomes := map[crashState]int{}
	const rounds = 8
	for i := range rounds {
		writeVolume(t, disk, "A")
		_, err := dm.Create(name, "")
		require.NoError(t, err)
		require.NoError(t, dm.Load(name, linear, false))
		require.NoError(t, dm.Resume(name))

		done := make(chan error, 1)
		start := time.Now()
		go func() {
			v, err := Load(dm.NodePath(name), LoadOptions{})
			if err != nil {
				done <- err
				return
			}
			err = addKey("B")(v)
			// Close before reporting, so the device is free to remove.
			v.Close()
			done <- err
		}()
		if i > 0 {
			time.Sleep(time.Duration(mrand.Int64N(int64(run) * 3 / 2)))
			require.NoError(t, dm.Load(name, cut, false))
			require.NoError(t, dm.Resume(name))
		}
		err = <-done
		if i == 0 {
			require.NoError(t, err)
			run = time.Since(start)
		}
		require.NoError(t, dm.Remove(name, dm.RemoveOptions{}))

		f, err := os.Open(disk)
		require.NoError(t, err)
		require.NoError(t, unix.IoctlSetInt(int(f.Fd()), unix.BLKFLSBUF, 0))
		got := newStateChecker().state(t, f)
		f.Close()
		require.Contains(t, []crashState{"keys [A] tokens []", "keys [A B] tokens []"}, got, "round %d", i)
		outcomes[got]++
	}
	t.Logf("%d power cuts; key add takes %v; outcomes %v", rounds-1, run, outcomes)
}

// writeVolume puts a fresh volume opened by pass on dev, with a cheap
// digest and key slot.
func writeVolume(t *testing.T, dev, pass string) {
	t.Helper()
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	require.NoError(t, err)
	defer f.Close()
	require.NoError(t, zeroRange(f, 0, 16<<20))
	key := make([]byte, 64)
	_, _ = rand.Read(key)
	h, err := header.New(key, header.NewOptions{DigestIterations: kdf.MinPBKDF2Iterations})
	require.NoError(t, err)
	p, err := cheapKDF.Resolve(context.Background(), len(key))
	require.NoError(t, err)
	_, err = h.AddKeyslot(f, 0, []byte(pass), key, header.KeyslotParams{KDF: p})
	require.NoError(t, err)
	require.NoError(t, h.Write(f))
	require.NoError(t, f.Sync())
	require.NoError(t, unix.IoctlSetInt(int(f.Fd()), unix.BLKFLSBUF, 0))
}
