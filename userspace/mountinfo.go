package userspace

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// MountInfo is a volcrypt FUSE mount as the kernel lists it.
type MountInfo struct {
	// Dir is the mount point, Source the device it serves (Options.Source).
	Dir, Source string
	// ReadOnly is true for a read-only mount.
	ReadOnly bool
}

// Lookup finds the volcrypt FUSE mount at dir (an absolute, clean path) in
// /proc/self/mountinfo; ok is false when there is none.
func Lookup(dir string) (info MountInfo, ok bool, err error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return MountInfo{}, false, fmt.Errorf("read mount table: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if m, found := parseMountinfo(sc.Text()); found && m.Dir == dir {
			info = m // the last one is on top
		}
	}
	if err := sc.Err(); err != nil {
		return MountInfo{}, false, fmt.Errorf("read mount table: %w", err)
	}
	return info, info.Dir != "", nil
}

// parseMountinfo reads one line of /proc/self/mountinfo:
// "id parent maj:min root mountpoint options [optional...] - fstype source superoptions".
func parseMountinfo(line string) (MountInfo, bool) {
	fields := strings.Fields(line)
	sep := -1
	for i, f := range fields {
		if f == "-" && i >= 6 {
			sep = i
			break
		}
	}
	if sep < 0 || len(fields) < sep+3 || fields[sep+1] != FSType {
		return MountInfo{}, false
	}
	ro := false
	for _, o := range strings.Split(fields[5], ",") {
		if o == "ro" {
			ro = true
		}
	}
	return MountInfo{Dir: unescape(fields[4]), Source: unescape(fields[sep+2]), ReadOnly: ro}, true
}

// unescape undoes the kernel's octal escapes (\040 for a space) in
// mountinfo fields.
func unescape(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
