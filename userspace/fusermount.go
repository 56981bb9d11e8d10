package userspace

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// ErrNoFusermount means the process may not mount(2) and the fusermount3
// helper, which mounts FUSE for unprivileged users (Debian package fuse3),
// is not installed.
var ErrNoFusermount = errors.New("mounting FUSE without root needs fusermount3 (package fuse3)")

// fusermount returns the path of fusermount3 (or of the older fusermount),
// where go-fuse looks for it.
func fusermount() (string, error) {
	for _, name := range []string{"fusermount3", "/bin/fusermount3", "fusermount", "/bin/fusermount"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", ErrNoFusermount
}

// Unmount unmounts the volcrypt mount at dir, as Mount.Unmount does, for a
// process other than its server (volcrypt close): a busy mount's error wraps
// EBUSY, one that is not mounted EINVAL.
func Unmount(dir string) error {
	if err := unmount(dir, 0); err != nil {
		return fmt.Errorf("unmount %s: %w", dir, err)
	}
	return nil
}

// unmount unmounts dir with umount2(2), or, when this process may not
// (a mount made through fusermount3 by an unprivileged user), with
// fusermount3 -u; flags is 0 or MNT_DETACH. A busy mount's error wraps
// EBUSY either way, one that is not mounted EINVAL.
func unmount(dir string, flags int) error {
	err := unix.Unmount(dir, flags)
	if !errors.Is(err, unix.EPERM) {
		return err
	}
	bin, lerr := fusermount()
	if lerr != nil {
		return err
	}
	args := []string{"-u", dir}
	if flags&unix.MNT_DETACH != 0 {
		args = []string{"-u", "-z", dir}
	}
	var out bytes.Buffer
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		// Decided by the mount table, not by the message: still mounted
		// means busy (or not this user's), gone means it was not mounted.
		msg := lastLine(out.Bytes())
		abs, aerr := filepath.Abs(dir)
		if aerr != nil {
			return fmt.Errorf("%s: %s: %w", bin, msg, err)
		}
		_, mounted, lerr := Lookup(abs)
		switch {
		case lerr != nil:
			return fmt.Errorf("%s: %s: %w", bin, msg, err)
		case mounted:
			return fmt.Errorf("%s: %w", msg, unix.EBUSY)
		}
		return fmt.Errorf("%s: %w", msg, unix.EINVAL)
	}
	return nil
}

// lastLine is the last non-empty line of a program's output.
func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

// stderrMu serializes captureStderr.
var stderrMu sync.Mutex

// captureStderr points os.Stderr at a pipe until the returned function is
// called, which restores it and returns the last line written: go-fuse
// hands os.Stderr to fusermount3, which reports its failures there.
func captureStderr() (last func() string) {
	stderrMu.Lock()
	r, w, err := os.Pipe()
	if err != nil {
		stderrMu.Unlock()
		return func() string { return "" }
	}
	old := os.Stderr
	os.Stderr = w
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(r, 64<<10))
		_, _ = io.Copy(io.Discard, r)
		r.Close()
		got <- b
	}()
	return func() string {
		os.Stderr = old
		w.Close()
		stderrMu.Unlock()
		return lastLine(<-got)
	}
}
