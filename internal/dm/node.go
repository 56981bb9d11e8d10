package dm

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// MapperDir is where device nodes named after mapped devices live.
const MapperDir = "/dev/mapper"

// udevWait is how long to wait for udev to make a node before making it.
const udevWait = 2 * time.Second

// NodePath returns /dev/mapper/NAME.
func NodePath(name string) string { return filepath.Join(MapperDir, name) }

// udevRunning reports whether udev manages /dev: its control socket exists
// and DM_DISABLE_UDEV (libdevmapper's switch) is not set.
func udevRunning() bool {
	if os.Getenv("DM_DISABLE_UDEV") != "" {
		return false
	}
	_, err := os.Stat("/run/udev/control")
	return err == nil
}

// ensureNode makes sure /dev/mapper/NAME is a block node (or udev's symlink)
// for major:minor. With udev running it first waits for udev's node.
func ensureNode(name string, major, minor uint32) error {
	if udevRunning() {
		deadline := time.Now().Add(udevWait)
		for time.Now().Before(deadline) {
			if nodeMatches(NodePath(name), major, minor) {
				return nil
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	return makeNode(name, major, minor)
}

// nodeMatches reports whether path (followed if a symlink) is the block
// device major:minor.
func nodeMatches(path string, major, minor uint32) bool {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return false
	}
	return st.Mode&unix.S_IFMT == unix.S_IFBLK && unix.Major(st.Rdev) == major && unix.Minor(st.Rdev) == minor
}

// makeNode creates /dev/mapper/NAME as a block device node, replacing a
// stale node of the same name.
func makeNode(name string, major, minor uint32) error {
	path := NodePath(name)
	if nodeMatches(path, major, minor) {
		return nil
	}
	if err := os.MkdirAll(MapperDir, 0o755); err != nil {
		return fmt.Errorf("make node %s: %w", path, err)
	}
	if _, err := os.Lstat(path); err == nil {
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("make node %s: remove stale node: %w", path, err)
		}
	}
	err := unix.Mknod(path, unix.S_IFBLK|0o600, int(unix.Mkdev(major, minor)))
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("make node %s: %w", path, err)
	}
	return nil
}

// removeNode removes /dev/mapper/NAME if it still refers to major:minor (a
// node we made, or a symlink udev has not removed yet). Best effort: the
// device itself is already gone.
func removeNode(name string, major, minor uint32) {
	path := NodePath(name)
	fi, err := os.Lstat(path)
	if err != nil {
		return
	}
	if fi.Mode()&os.ModeSymlink != 0 {
		if udevRunning() {
			return // udev removes its own links
		}
		// A dangling symlink to the removed dm-N, or one that still points
		// to our device number, is ours to clean.
		if _, err := os.Stat(path); err == nil && !nodeMatches(path, major, minor) {
			return
		}
		_ = os.Remove(path)
		return
	}
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return
	}
	if st.Mode&unix.S_IFMT == unix.S_IFBLK && unix.Major(st.Rdev) == major && unix.Minor(st.Rdev) == minor {
		_ = os.Remove(path)
	}
}

// pruneNodes removes block nodes in /dev/mapper that belong to no existing
// mapped device: the nodes of devices that went away by deferred removal
// while udev was not there to clean up. It only touches block nodes (not
// udev's symlinks) whose major is the device mapper's, and does nothing
// when udev runs. Best effort.
func (c *control) pruneNodes() {
	if udevRunning() {
		return
	}
	major, ok := dmBlockMajor()
	if !ok {
		return
	}
	// Read the directory before listing devices: a node seen here was
	// made after its device, so a device missing from the later list is
	// really gone, even while other tools create devices concurrently.
	entries, err := os.ReadDir(MapperDir)
	if err != nil {
		return
	}
	rep, err := c.call(unix.DM_LIST_DEVICES, header{}, nil)
	if err != nil {
		return
	}
	devs, err := parseNameList(rep.data)
	if err != nil {
		return
	}
	live := map[uint32]bool{}
	for _, d := range devs {
		live[d.Minor] = true
	}
	for _, e := range entries {
		if e.Type()&os.ModeDevice == 0 || e.Type()&os.ModeCharDevice != 0 {
			continue
		}
		var st unix.Stat_t
		path := filepath.Join(MapperDir, e.Name())
		if unix.Lstat(path, &st) != nil || st.Mode&unix.S_IFMT != unix.S_IFBLK {
			continue
		}
		if unix.Major(st.Rdev) == major && !live[unix.Minor(st.Rdev)] {
			_ = os.Remove(path)
		}
	}
}

// dmBlockMajor reads the device mapper's block major from /proc/devices.
func dmBlockMajor() (uint32, bool) {
	b, err := os.ReadFile("/proc/devices")
	if err != nil {
		return 0, false
	}
	block := false
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "Block devices:") {
			block = true
			continue
		}
		f := strings.Fields(line)
		if block && len(f) == 2 && f[1] == "device-mapper" {
			n, err := strconv.ParseUint(f[0], 10, 32)
			return uint32(n), err == nil
		}
	}
	return 0, false
}
