package volume

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/volcrypt/volcrypt/header"
	"github.com/volcrypt/volcrypt/internal/dm"
	"github.com/volcrypt/volcrypt/internal/loop"
	"github.com/volcrypt/volcrypt/internal/secret"
)

// ErrNoDeviceMapper means the kernel has no device-mapper: mappings cannot
// be made on this host (the userspace engine still works).
var ErrNoDeviceMapper = dm.ErrNoDeviceMapper

// ActivateOptions tune a dm-crypt mapping, with cryptsetup's meanings.
type ActivateOptions struct {
	ReadOnly            bool
	AllowDiscards       bool
	SameCPUCrypt        bool
	SubmitFromCryptCPUs bool
	NoReadWorkqueue     bool
	NoWriteWorkqueue    bool
	// Persistent stores the performance and discard flags in the header's
	// config.flags, so later opens use them too.
	Persistent bool
}

// The LUKS2 config.flags names of the activation flags, as cryptsetup's.
const (
	flagAllowDiscards       = "allow-discards"
	flagSameCPUCrypt        = "same-cpu-crypt"
	flagSubmitFromCryptCPUs = "submit-from-crypt-cpus"
	flagNoReadWorkqueue     = "no-read-workqueue"
	flagNoWriteWorkqueue    = "no-write-workqueue"
)

func (o ActivateOptions) flags() []string {
	var f []string
	for _, x := range []struct {
		on   bool
		name string
	}{
		{o.AllowDiscards, flagAllowDiscards}, {o.SameCPUCrypt, flagSameCPUCrypt},
		{o.SubmitFromCryptCPUs, flagSubmitFromCryptCPUs}, {o.NoReadWorkqueue, flagNoReadWorkqueue},
		{o.NoWriteWorkqueue, flagNoWriteWorkqueue},
	} {
		if x.on {
			f = append(f, x.name)
		}
	}
	return f
}

// withFlags adds the flags stored in the header to the options.
func (o ActivateOptions) withFlags(flags []string) ActivateOptions {
	has := func(n string) bool { return slices.Contains(flags, n) }
	o.AllowDiscards = o.AllowDiscards || has(flagAllowDiscards)
	o.SameCPUCrypt = o.SameCPUCrypt || has(flagSameCPUCrypt)
	o.SubmitFromCryptCPUs = o.SubmitFromCryptCPUs || has(flagSubmitFromCryptCPUs)
	o.NoReadWorkqueue = o.NoReadWorkqueue || has(flagNoReadWorkqueue)
	o.NoWriteWorkqueue = o.NoWriteWorkqueue || has(flagNoWriteWorkqueue)
	return o
}

// Activate maps the volume's data segment as /dev/mapper/NAME with dm-crypt,
// as `cryptsetup open` does: the key goes through the kernel keyring, the
// table and DM UUID are cryptsetup's, and an image file is attached to a
// loop device (autoclear: it goes away with the mapping). On failure nothing
// is left behind: no mapping, no loop device.
func (v *Volume) Activate(name string, key *secret.Buffer, o ActivateOptions) error {
	h := v.Header
	if unmet := h.Meta.UnmetRequirements(); len(unmet) > 0 {
		return fmt.Errorf("activate: %w", &header.RequirementsError{Requirements: unmet})
	}
	seg, err := h.DataSegment()
	if err != nil {
		return err
	}
	if seg.Type != header.SegmentCrypt {
		return fmt.Errorf("activate: data segment of type %q is not supported", seg.Type)
	}
	did, ok := h.Meta.SegmentDigest(0)
	if !ok {
		return fmt.Errorf("activate: %w: no digest for the data segment", header.ErrInvalid)
	}
	if err := dm.Available(); err != nil {
		return fmt.Errorf("activate %s: %w", name, err)
	}
	if o.Persistent {
		if err := v.update(func(h *header.Header) error {
			h.Meta.Config.Flags = mergeFlags(h.Meta.Config.Flags, o.flags())
			return nil
		}); err != nil {
			return fmt.Errorf("store activation flags: %w", err)
		}
	}
	o = o.withFlags(h.Meta.Config.Flags)

	readOnly := o.ReadOnly || v.rdonly
	var (
		major, minor uint32
		size         int64
		lo           *loop.Device
	)
	st, err := v.data.Stat()
	if err != nil {
		return err
	}
	if st.Mode().IsRegular() {
		if lo, err = loop.Attach(v.Path, readOnly); err != nil {
			return fmt.Errorf("activate %s: %w", name, err)
		}
		// The mapping holds the loop device; once it is gone, autoclear
		// detaches it. Close our hold whatever happens.
		defer lo.Close()
		major, minor = lo.Major(), lo.Minor()
		size = st.Size()
	} else {
		var us unix.Stat_t
		if err := unix.Fstat(int(v.data.Fd()), &us); err != nil {
			return err
		}
		major, minor = unix.Major(us.Rdev), unix.Minor(us.Rdev)
		if size, err = deviceSize(v.data); err != nil {
			return err
		}
	}
	length := int64(seg.Size.Bytes)
	if seg.Size.Dynamic {
		length = size - int64(seg.Offset)
	}
	length -= length % int64(seg.SectorSize)
	if length <= 0 {
		return fmt.Errorf("activate %s: device of %d bytes has no room for data after offset %d: %w", name, size, seg.Offset, ErrDeviceNotFound)
	}
	t := dm.CryptTarget{
		Cipher: seg.Encryption, KeySize: key.Len(),
		IVOffset: uint64(*seg.IVTweak), Device: dm.DevNum(major, minor),
		OffsetBytes: uint64(seg.Offset), SizeBytes: uint64(length), SectorSizeBytes: seg.SectorSize,
		AllowDiscards: o.AllowDiscards, SameCPUCrypt: o.SameCPUCrypt, SubmitFromCryptCPUs: o.SubmitFromCryptCPUs,
		NoReadWorkqueue: o.NoReadWorkqueue, NoWriteWorkqueue: o.NoWriteWorkqueue,
	}
	typ := dm.TypeLUKS2
	if h.Version == 2 {
		t.KeyDescription = dm.LUKS2KeyDescription(h.UUID, did)
	} else {
		typ = dm.TypeLUKS1
	}
	_, err = dm.CreateCrypt(name, t, key.Bytes(), dm.CryptOptions{UUID: dm.CryptUUID(typ, h.UUID, name), ReadOnly: readOnly})
	if err != nil {
		if lo != nil {
			_ = lo.Detach()
		}
		return fmt.Errorf("activate %s: %w", name, err)
	}
	v.log.Debug("mapping created", "name", name, "device", t.Device)
	return nil
}

func mergeFlags(have, add []string) []string {
	for _, f := range add {
		if !slices.Contains(have, f) {
			have = append(have, f)
		}
	}
	return have
}

// Deactivate removes the mapping NAME. A mapping in use is refused with an
// error naming what holds it, unless deferred is set: then it goes away at
// its last close.
func Deactivate(name string, deferred bool) error {
	if err := dm.Available(); err != nil {
		return fmt.Errorf("close %s: %w", name, err)
	}
	err := dm.Remove(name, dm.RemoveOptions{Deferred: deferred})
	if err != nil {
		return fmt.Errorf("close %s: %w", name, err)
	}
	return nil
}

// Status describes an active mapping.
type Status struct {
	Name          string   `json:"name"`
	Type          string   `json:"type"` // LUKS2, LUKS1, PLAIN, …
	UUID          string   `json:"uuid,omitempty"`
	Cipher        string   `json:"cipher"`
	KeyBits       int      `json:"key_bits"`
	KeyLocation   string   `json:"key_location"` // keyring or dm-crypt
	Device        string   `json:"device"`
	LoopFile      string   `json:"loop_file,omitempty"`
	SectorSize    int      `json:"sector_size"`
	OffsetSectors uint64   `json:"offset_sectors"`
	SizeSectors   uint64   `json:"size_sectors"`
	Mode          string   `json:"mode"` // read/write or readonly
	Flags         []string `json:"flags"`
	InUse         bool     `json:"in_use"`
	Holders       []string `json:"holders,omitempty"`
}

// MappingStatus reports the mapping NAME, made by volcrypt or cryptsetup.
func MappingStatus(name string) (*Status, error) {
	if err := dm.Available(); err != nil {
		return nil, fmt.Errorf("status %s: %w", name, err)
	}
	info, err := dm.GetInfo(name)
	if err != nil {
		return nil, fmt.Errorf("status %s: %w", name, err)
	}
	targets, err := dm.Table(name)
	if err != nil {
		return nil, fmt.Errorf("status %s: %w", name, err)
	}
	if len(targets) != 1 || targets[0].Type != "crypt" {
		return nil, fmt.Errorf("status %s: not a dm-crypt mapping", name)
	}
	t, err := dm.ParseCrypt(targets[0])
	if err != nil {
		return nil, fmt.Errorf("status %s: %w", name, err)
	}
	s := &Status{Name: name, Cipher: t.Cipher, KeyBits: t.KeySize * 8, Device: devicePath(t.Device),
		SectorSize: max(t.SectorSizeBytes, 512), OffsetSectors: t.OffsetBytes / 512, SizeSectors: t.SizeBytes / 512,
		Mode: "read/write", Flags: []string{}, InUse: info.OpenCount > 0, KeyLocation: "dm-crypt"}
	if t.KeyDescription != "" {
		s.KeyLocation = "keyring"
	}
	if typ, uuid, _, ok := dm.ParseCryptUUID(info.UUID); ok {
		s.Type, s.UUID = typ, uuid
	}
	if info.ReadOnly {
		s.Mode = "readonly"
	}
	for _, f := range []struct {
		on   bool
		name string
	}{{t.AllowDiscards, "discards"}, {t.SameCPUCrypt, "same_cpu_crypt"}, {t.SubmitFromCryptCPUs, "submit_from_crypt_cpus"},
		{t.NoReadWorkqueue, "no_read_workqueue"}, {t.NoWriteWorkqueue, "no_write_workqueue"}} {
		if f.on {
			s.Flags = append(s.Flags, f.name)
		}
	}
	if strings.HasPrefix(filepath.Base(s.Device), "loop") {
		if f, err := loop.BackingFile(s.Device); err == nil {
			s.LoopFile = f
		}
	}
	if s.InUse {
		s.Holders = dm.Holders(info.Major, info.Minor)
	}
	return s, nil
}

// devicePath turns "major:minor" into /dev/NAME using sysfs.
func devicePath(devnum string) string {
	b, err := os.ReadFile(filepath.Join("/sys/dev/block", devnum, "uevent"))
	if err != nil {
		return devnum
	}
	for _, line := range strings.Split(string(b), "\n") {
		if n, ok := strings.CutPrefix(line, "DEVNAME="); ok {
			return "/dev/" + n
		}
	}
	return devnum
}

// IsBusy reports whether err means a mapping or device is in use.
func IsBusy(err error) bool { return errors.Is(err, dm.ErrBusy) || errors.Is(err, dm.ErrExists) }
