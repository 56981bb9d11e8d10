package tpm

import (
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/stretchr/testify/require"

	"github.com/volcrypt/volcrypt/internal/swtpmtest"
)

// swtpmInstance is a swtpm process started by a test (internal/swtpmtest).
type swtpmInstance = swtpmtest.TPM

// startSwtpm starts a fresh swtpm that stops when the test ends.
func startSwtpm(t testing.TB) *swtpmInstance { return swtpmtest.Start(t) }

// freePortPair finds P such that P and P+1 are both free on 127.0.0.1.
func freePortPair(t testing.TB) int { return swtpmtest.FreePortPair(t) }

// openSwtpm starts swtpm and opens it; the connection closes with the test.
func openTestTPM(t testing.TB) (*swtpmInstance, transport.TPMCloser) {
	t.Helper()
	inst := startSwtpm(t)
	tp, err := Open(inst.Device)
	require.NoError(t, err)
	t.Cleanup(func() { tp.Close() })
	return inst, tp
}

// extendPCR extends a sha256 PCR with the hash of data.
func extendPCR(t testing.TB, tp transport.TPM, pcr int, data string) {
	t.Helper()
	d := sha256Sum([]byte(data))
	_, err := tpm2.PCRExtend{
		PCRHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(pcr), Auth: tpm2.PasswordAuth(nil)},
		Digests:   tpm2.TPMLDigestValues{Digests: []tpm2.TPMTHA{{HashAlg: tpm2.TPMAlgSHA256, Digest: d}}},
	}.Execute(tp)
	require.NoError(t, err)
}

// loadedHandles counts transient objects and sessions loaded in the TPM.
func loadedHandles(t testing.TB, tp transport.TPM) int {
	t.Helper()
	n := 0
	for _, first := range []tpm2.TPMHandle{0x80000000, 0x02000000, 0x03000000} {
		rsp, err := tpm2.GetCapability{Capability: tpm2.TPMCapHandles, Property: uint32(first), PropertyCount: 64}.Execute(tp)
		require.NoError(t, err)
		hs, err := rsp.CapabilityData.Data.Handles()
		require.NoError(t, err)
		for _, h := range hs.Handle {
			if h>>24 == first>>24 {
				n++
			}
		}
	}
	return n
}
