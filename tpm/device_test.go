package tpm

import (
	"os"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestKernelTPMDevice runs where the kernel exposes a TPM (the VM harness:
// swtpm attached as tpm-tis). It checks the device transport (opened with
// unix.Open, blocking reads) end to end.
func TestVMKernelTPMDevice(t *testing.T) {
	for _, dev := range []string{"auto", "/dev/tpmrm0", "/dev/tpm0"} {
		path := dev
		if dev == "auto" {
			path = DefaultDevice
		}
		if _, err := os.Stat(path); err != nil {
			t.Logf("%s absent: skipping %s (runs in the VM harness: go test -exec $PWD/scripts/vmtest ./tpm)", path, dev)
			continue
		}
		t.Run(dev, func(t *testing.T) {
			tp, err := Open(dev)
			require.NoError(t, err)
			defer tp.Close()
			sec := randomSecret(t)
			// PCR 16 is the debug PCR: extending it does not disturb the rest.
			s, err := Seal(tp, sec, SealOptions{PCRs: []int{7, 16}, PIN: []byte("4711")})
			require.NoError(t, err)
			for range 3 {
				got, err := Unseal(tp, s, []byte("4711"))
				require.NoError(t, err)
				require.Equal(t, sec, got)
			}
			require.Zero(t, loadedHandles(t, tp), "handles leaked")
			extendPCR(t, tp, 16, "debug")
			_, err = Unseal(tp, s, []byte("4711"))
			require.ErrorIs(t, err, ErrPCRMismatch)
		})
	}
}
