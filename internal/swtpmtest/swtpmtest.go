// Package swtpmtest starts software TPMs (swtpm) for tests: each on its own
// free ports and state directory, stopped when the test ends. It is imported
// only by tests.
package swtpmtest

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
)

// TPM is a running swtpm.
type TPM struct {
	// Port is the TPM command port; the control port is Port+1.
	Port int
	// Device is the device string volcrypt and systemd take:
	// "swtpm:host=127.0.0.1,port=P".
	Device string
	// TCTI is the same for tpm2-tools (TPM2TOOLS_TCTI).
	TCTI string
}

// FreePortPair finds P such that P and P+1 are both free on 127.0.0.1.
func FreePortPair(t testing.TB) int {
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
	t.Fatal("no free port pair for swtpm")
	return 0
}

// Start starts a fresh swtpm with PCRs at their reset values and stops it
// when the test ends: tpm2_shutdown first (so the dictionary-attack counter
// does not grow), then a kill of its own pid only. It skips the test when
// swtpm is not installed.
func Start(t testing.TB) *TPM {
	t.Helper()
	bin, err := exec.LookPath("swtpm")
	if err != nil {
		t.Skip("swtpm not installed (Debian: apt-get install swtpm swtpm-tools): skipping TPM test")
	}
	// Not t.TempDir: its name holds the test name, and a comma there breaks
	// swtpm's option syntax.
	dir, err := os.MkdirTemp("", "swtpm-state-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	for attempt := 0; ; attempt++ {
		port := FreePortPair(t)
		cmd := exec.Command(bin, "socket", "--tpm2",
			"--tpmstate", "dir="+dir,
			"--server", fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", port),
			"--ctrl", fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", port+1),
			"--flags", "not-need-init,startup-clear")
		logf, err := os.Create(filepath.Join(dir, "swtpm.log"))
		if err != nil {
			t.Fatal(err)
		}
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited); logf.Close() }()
		if !waitListening(port, exited) {
			_ = cmd.Process.Kill()
			<-exited
			if attempt < 3 {
				continue
			}
			log, _ := os.ReadFile(filepath.Join(dir, "swtpm.log"))
			t.Fatalf("swtpm did not start: %s", log)
		}
		tp := &TPM{Port: port, Device: "swtpm:host=127.0.0.1,port=" + strconv.Itoa(port),
			TCTI: "swtpm:host=127.0.0.1,port=" + strconv.Itoa(port)}
		t.Cleanup(func() {
			_ = tp.Tool("tpm2_shutdown", "-c")
			_ = cmd.Process.Kill()
			<-exited
		})
		return tp
	}
}

func waitListening(port int, exited <-chan struct{}) bool {
	for range 200 {
		c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			c.Close()
			return true
		}
		select {
		case <-exited:
			return false
		case <-time.After(10 * time.Millisecond):
		}
	}
	return false
}

// Tool runs a tpm2-tools command against this TPM.
func (tp *TPM) Tool(name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "TPM2TOOLS_TCTI="+tp.TCTI)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s: %w: %s", name, err, out)
	}
	return nil
}

// ExtendPCR changes PCR pcr of the sha256 bank, as a boot-chain change
// would.
func (tp *TPM) ExtendPCR(pcr int) error {
	return tp.Tool("tpm2_pcrextend", fmt.Sprintf("%d:sha256=%064x", pcr, rand.Uint64()))
}
