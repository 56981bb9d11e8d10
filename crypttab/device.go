package crypttab

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// ErrDeviceNotFound means no device matches a crypttab device field.
var ErrDeviceNotFound = errors.New("device not found")

// Tags a device may be named by, and the /dev/disk directory of each.
var tagDirs = map[string]string{
	"UUID":      "by-uuid",
	"PARTUUID":  "by-partuuid",
	"LABEL":     "by-label",
	"PARTLABEL": "by-partlabel",
}

// SplitDevice splits a device field into its tag (UUID, PARTUUID, LABEL,
// PARTLABEL; "" for a path) and value. A path must be absolute.
func SplitDevice(spec string) (tag, value string, err error) {
	if t, v, ok := strings.Cut(spec, "="); ok {
		if _, known := tagDirs[strings.ToUpper(t)]; known {
			if v == "" {
				return "", "", fmt.Errorf("%w: device %q has an empty %s", ErrSyntax, spec, t)
			}
			return strings.ToUpper(t), v, nil
		}
	}
	if !strings.HasPrefix(spec, "/") {
		return "", "", fmt.Errorf("%w: device %q is neither an absolute path nor UUID=, PARTUUID=, LABEL= or PARTLABEL=", ErrSyntax, spec)
	}
	return "", spec, nil
}

// Resolver finds the device a crypttab device field names. With udev, the
// /dev/disk/by-* links answer; without it (an initramfs without udev, a
// VM), UUID= and LABEL= are found by reading the LUKS header of each
// candidate device, and blkid(8) is asked for the rest if it is installed.
type Resolver struct {
	// DevDir is where device nodes and disk/by-* links live ("/dev").
	DevDir string
	// SysBlockDir lists the block devices to scan ("/sys/class/block").
	SysBlockDir string
	// Candidates, when set, are scanned instead of SysBlockDir's devices
	// (image files in tests).
	Candidates []string
}

// DefaultResolver looks in /dev and /sys/class/block.
var DefaultResolver = Resolver{DevDir: "/dev", SysBlockDir: "/sys/class/block"}

// Find returns the path of the device spec names.
func (r Resolver) Find(spec string) (string, error) {
	tag, val, err := SplitDevice(spec)
	if err != nil {
		return "", err
	}
	if tag == "" {
		if _, err := os.Stat(val); err != nil {
			return "", fmt.Errorf("%s: %w", val, ErrDeviceNotFound)
		}
		return val, nil
	}
	link := filepath.Join(r.devDir(), "disk", tagDirs[tag], val)
	if p, err := filepath.EvalSymlinks(link); err == nil {
		return p, nil
	}
	if tag == "UUID" || tag == "LABEL" {
		for _, dev := range r.candidates() {
			uuid, label, err := readLUKSIDs(dev)
			if err != nil {
				continue
			}
			if (tag == "UUID" && strings.EqualFold(uuid, val)) || (tag == "LABEL" && label == val) {
				return dev, nil
			}
		}
	}
	if r.Candidates == nil {
		if blkid, err := exec.LookPath("blkid"); err == nil {
			out, err := exec.Command(blkid, "-l", "-o", "device", "-t", tag+"="+val).Output()
			if p := strings.TrimSpace(string(out)); err == nil && p != "" {
				return p, nil
			}
		}
	}
	return "", fmt.Errorf("%s: %w", spec, ErrDeviceNotFound)
}

func (r Resolver) devDir() string {
	if r.DevDir == "" {
		return "/dev"
	}
	return r.DevDir
}

func (r Resolver) candidates() []string {
	if r.Candidates != nil {
		return r.Candidates
	}
	dir := r.SysBlockDir
	if dir == "" {
		dir = "/sys/class/block"
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range ents {
		// Mappings and RAM disks never hold the LUKS header we look for.
		if strings.HasPrefix(e.Name(), "dm-") || strings.HasPrefix(e.Name(), "ram") {
			continue
		}
		out = append(out, filepath.Join(r.devDir(), e.Name()))
	}
	return out
}

// luksMagic starts LUKS1 and LUKS2 headers.
var luksMagic = []byte("LUKS\xba\xbe")

// readLUKSIDs reads the UUID and (LUKS2) label from the binary header of
// dev. Both LUKS versions keep the UUID at byte 168; LUKS2 keeps the label
// at byte 24.
func readLUKSIDs(dev string) (uuid, label string, err error) {
	f, err := os.Open(dev)
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	var b [512]byte
	if _, err := io.ReadFull(f, b[:]); err != nil {
		return "", "", err
	}
	if !bytes.Equal(b[:6], luksMagic) {
		return "", "", fmt.Errorf("%s: no LUKS header", dev)
	}
	cstr := func(p []byte) string {
		if i := bytes.IndexByte(p, 0); i >= 0 {
			p = p[:i]
		}
		return string(p)
	}
	uuid = cstr(b[168:208])
	if binary.BigEndian.Uint16(b[6:8]) == 2 {
		label = cstr(b[24:72])
	}
	return uuid, label, nil
}
