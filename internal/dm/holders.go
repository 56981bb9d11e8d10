package dm

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Holders describes who keeps the block device major:minor open, for a
// "device is busy" message: mount points from /proc/self/mountinfo
// ("mounted on /mnt"), devices stacked on it from
// /sys/dev/block/MAJOR:MINOR/holders ("held by dm-3 (name)") and processes
// with it open ("open by pid 42 (mkfs.ext4)", from /proc/PID/fd; complete
// only for root). It returns nil when nothing is found.
func Holders(major, minor uint32) []string {
	var out []string
	devnum := fmt.Sprintf("%d:%d", major, minor)
	for _, mp := range mountPoints("/proc/self/mountinfo", devnum) {
		out = append(out, "mounted on "+mp)
	}
	entries, err := os.ReadDir(filepath.Join("/sys/dev/block", devnum, "holders"))
	if err == nil {
		for _, e := range entries {
			h := e.Name()
			if name, err := os.ReadFile(filepath.Join("/sys/class/block", h, "dm", "name")); err == nil {
				h += " (" + strings.TrimSpace(string(name)) + ")"
			}
			out = append(out, "held by "+h)
		}
	}
	return append(out, openers(major, minor)...)
}

// openers lists the processes that have the block device open.
func openers(major, minor uint32) []string {
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	self := os.Getpid()
	var out []string
	for _, p := range procs {
		pid, err := strconv.Atoi(p.Name())
		if err != nil || pid == self {
			continue
		}
		fdDir := filepath.Join("/proc", p.Name(), "fd")
		fds, err := os.ReadDir(fdDir)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			var st unix.Stat_t
			if unix.Stat(filepath.Join(fdDir, fd.Name()), &st) != nil {
				continue
			}
			if st.Mode&unix.S_IFMT == unix.S_IFBLK && unix.Major(st.Rdev) == major && unix.Minor(st.Rdev) == minor {
				comm, _ := os.ReadFile(filepath.Join("/proc", p.Name(), "comm"))
				out = append(out, fmt.Sprintf("open by pid %d (%s)", pid, strings.TrimSpace(string(comm))))
				break
			}
		}
	}
	return out
}

// mountPoints returns the mount points of devnum listed in a mountinfo file.
func mountPoints(path, devnum string) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	return parseMountInfo(bufio.NewScanner(f), devnum)
}

func parseMountInfo(sc *bufio.Scanner, devnum string) []string {
	var out []string
	for sc.Scan() {
		// 36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw
		f := strings.Fields(sc.Text())
		if len(f) < 5 || f[2] != devnum {
			continue
		}
		out = append(out, unescapeMount(f[4]))
	}
	return out
}

// unescapeMount undoes the octal escapes (\040 for space ...) of mountinfo.
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1:i+4]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(s string) bool {
	if len(s) != 3 {
		return false
	}
	for i := 0; i < 3; i++ {
		if s[i] < '0' || s[i] > '7' {
			return false
		}
	}
	return true
}
