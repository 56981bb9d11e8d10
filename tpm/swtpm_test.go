package tpm

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
	"github.com/stretchr/testify/require"
)

// swtpmInstance is a swtpm process started by a test.
type swtpmInstance struct {
	Port   int    // data (server) port; the control port is Port+1
	Device string // device string for Open
	cmd    *exec.Cmd
}

// freePortPair finds P such that P and P+1 are both free on 127.0.0.1.
func freePortPair(t testing.TB) int {
	for range 200 {
		p := 20000 + rand.IntN(40000)
		l1, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue
		}
		l2, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p+1))
		l1.Close()
		if err != nil {
			continue
		}
		l2.Close()
		return p
	}
	t.Fatal("no free port pair")
	return 0
}

// startSwtpm starts a fresh swtpm (TCP) in a temporary state directory and
// stops it when the test ends: TPM2_Shutdown first, so the dictionary-attack
// counter does not grow, then kill of its own pid only.
func startSwtpm(t testing.TB) *swtpmInstance {
	t.Helper()
	bin, err := exec.LookPath("swtpm")
	if err != nil {
		t.Skip("swtpm not installed (Debian: apt-get install swtpm swtpm-tools): skipping TPM test")
	}
	// Not t.TempDir: its name holds the test name, and a comma there
	// breaks swtpm's option syntax.
	dir, err := os.MkdirTemp("", "swtpm-state-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	for attempt := 0; ; attempt++ {
		port := freePortPair(t)
		cmd := exec.Command(bin, "socket", "--tpm2",
			"--tpmstate", "dir="+dir,
			"--server", fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", port),
			"--ctrl", fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", port+1),
			"--flags", "not-need-init,startup-clear")
		logf, err := os.Create(filepath.Join(dir, "swtpm.log"))
		require.NoError(t, err)
		cmd.Stdout, cmd.Stderr = logf, logf
		require.NoError(t, cmd.Start())
		inst := &swtpmInstance{Port: port, Device: "swtpm:host=127.0.0.1,port=" + strconv.Itoa(port), cmd: cmd}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited); logf.Close() }()
		ok := false
		for i := 0; i < 200; i++ {
			c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
			if err == nil {
				c.Close()
				ok = true
				break
			}
			select {
			case <-exited:
				i = 200
			case <-time.After(10 * time.Millisecond):
			}
		}
		if !ok {
			_ = cmd.Process.Kill()
			<-exited
			if attempt < 3 {
				continue
			}
			log, _ := os.ReadFile(filepath.Join(dir, "swtpm.log"))
			t.Fatalf("swtpm did not start: %s", log)
		}
		t.Cleanup(func() {
			if tp, err := Open(inst.Device); err == nil {
				_, _ = (tpm2.Shutdown{ShutdownType: tpm2.TPMSUClear}).Execute(tp)
				tp.Close()
			}
			_ = cmd.Process.Kill()
			<-exited
		})
		return inst
	}
}

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
