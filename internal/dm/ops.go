package dm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"golang.org/x/sys/unix"
)

// Create makes a new, empty mapped device (DM_DEV_CREATE) and returns its
// state. uuid may be empty. A name or UUID already in use gives ErrExists.
// The device has no table until Load and Resume.
func Create(name, uuid string) (Info, error) {
	if err := checkName(name); err != nil {
		return Info{}, err
	}
	c, err := openControl()
	if err != nil {
		return Info{}, err
	}
	defer c.close()
	return c.create(name, uuid)
}

func (c *control) create(name, uuid string) (Info, error) {
	rep, err := c.call(unix.DM_DEV_CREATE, header{name: name, uuid: uuid}, nil)
	if errors.Is(err, unix.EBUSY) {
		return Info{}, fmt.Errorf("create device %s: name or uuid in use: %w", name, ErrExists)
	}
	if err != nil {
		return Info{}, mapErrno("create device", name, err)
	}
	return infoFromReply(rep), nil
}

// Load loads targets as the inactive table of a device (DM_TABLE_LOAD). A
// readOnly table refuses writes. Resume makes it live.
func Load(name string, targets []Target, readOnly bool) error {
	c, err := openControl()
	if err != nil {
		return err
	}
	defer c.close()
	return c.load(name, targets, readOnly)
}

// rawTarget is a Target whose parameters are bytes, so that a hex key
// never becomes an unwipeable string.
type rawTarget struct {
	start, length uint64
	typ           string
	params        []byte
}

// encodeTargets lays out the targets as a sequence of struct dm_target_spec,
// each followed by its NUL-terminated parameters, padded to 8 bytes; each
// spec's next field is the offset from that spec to the following one.
func encodeTargets(targets []rawTarget) ([]byte, error) {
	size := 0
	for _, t := range targets {
		if t.typ == "" || len(t.typ) >= unix.DM_MAX_TYPE_NAME {
			return nil, fmt.Errorf("target type %q: %w", t.typ, ErrInvalid)
		}
		if indexNUL(t.params) >= 0 {
			return nil, fmt.Errorf("target parameters contain a NUL byte: %w", ErrInvalid)
		}
		size += targetSpecSize + (len(t.params)+1+7)&^7
	}
	data := make([]byte, size)
	off := 0
	for _, t := range targets {
		n := targetSpecSize + (len(t.params)+1+7)&^7
		spec := data[off : off+n]
		binary.NativeEndian.PutUint64(spec[offSpecStart:], t.start)
		binary.NativeEndian.PutUint64(spec[offSpecLength:], t.length)
		binary.NativeEndian.PutUint32(spec[offSpecNext:], uint32(n))
		copy(spec[offSpecType:offSpecType+unix.DM_MAX_TYPE_NAME-1], t.typ)
		copy(spec[targetSpecSize:], t.params)
		off += n
	}
	return data, nil
}

func (c *control) load(name string, targets []Target, readOnly bool) error {
	raw := make([]rawTarget, len(targets))
	for i, t := range targets {
		raw[i] = rawTarget{t.StartSector, t.LengthSectors, t.Type, []byte(t.Params)}
	}
	return c.loadTargets(name, raw, readOnly, false)
}

// loadRaw loads one target covering sectors [0, length) whose parameters
// carry secrets: every copy is wiped and the kernel is asked to wipe its own.
func (c *control) loadRaw(name string, length uint64, typ string, params []byte, readOnly bool) error {
	return c.loadTargets(name, []rawTarget{{0, length, typ, params}}, readOnly, true)
}

func (c *control) loadTargets(name string, targets []rawTarget, readOnly, secure bool) error {
	if len(targets) == 0 {
		return fmt.Errorf("load table %s: no targets: %w", name, ErrInvalid)
	}
	data, err := encodeTargets(targets)
	if err != nil {
		return fmt.Errorf("load table %s: %w", name, err)
	}
	defer clear(data)
	h := header{name: name}
	if readOnly {
		h.flags |= unix.DM_READONLY_FLAG
	}
	if secure {
		h.flags |= unix.DM_SECURE_DATA_FLAG
	}
	req := newRequest(ioctlHeaderSize + len(data) + 8)
	defer req.wipe()
	if err := req.fill(h, data); err != nil {
		return fmt.Errorf("load table %s: %w", name, err)
	}
	// target_count is not part of header: set it after fill.
	req.setU32(offTargetCount, uint32(len(targets)))
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(c.fd), uintptr(unix.DM_TABLE_LOAD), uintptrOf(req))
	if errno != 0 {
		return mapErrno("load table", name, errno)
	}
	return nil
}

// Resume makes a loaded inactive table live and resumes I/O
// (DM_DEV_SUSPEND without the suspend flag).
func Resume(name string) error {
	c, err := openControl()
	if err != nil {
		return err
	}
	defer c.close()
	if err := c.resume(name); err != nil {
		return err
	}
	info, err := c.info(name)
	if err != nil {
		return err
	}
	if err := ensureNode(name, info.Major, info.Minor); err != nil {
		return fmt.Errorf("resume device %s: %w", name, err)
	}
	return nil
}

func (c *control) resume(name string) error {
	if _, err := c.call(unix.DM_DEV_SUSPEND, header{name: name}, nil); err != nil {
		return mapErrno("resume device", name, err)
	}
	return nil
}

// deviceRemoveCmd is DM_DEV_REMOVE, named for the cleanup paths.
const deviceRemoveCmd = unix.DM_DEV_REMOVE

// Suspend stops I/O to a device, flushing what is queued (DM_DEV_SUSPEND).
func Suspend(name string) error {
	c, err := openControl()
	if err != nil {
		return err
	}
	defer c.close()
	if _, err := c.call(unix.DM_DEV_SUSPEND, header{name: name, flags: unix.DM_SUSPEND_FLAG}, nil); err != nil {
		return mapErrno("suspend device", name, err)
	}
	return nil
}

// RemoveOptions tune Remove.
type RemoveOptions struct {
	// Deferred schedules removal for the last close when the device is in
	// use, instead of failing with ErrBusy.
	Deferred bool
	// Retries is how many more times a removal refused with EBUSY while
	// nothing holds the device open (a short-lived opener such as udev's
	// blkid) is tried again, 100 ms apart. 0 means 5.
	Retries int
}

// Remove removes a device (DM_DEV_REMOVE) and the /dev/mapper node this
// package made for it. An open device gives a *BusyError (ErrBusy) unless
// opts.Deferred is set; then the device goes away at its last close and
// Remove returns nil (Info shows DeferredRemove meanwhile). Without udev
// nobody removes the node of a device that went away later by deferred
// removal; Remove and CreateCrypt prune such stale nodes.
func Remove(name string, opts RemoveOptions) error {
	if err := checkName(name); err != nil {
		return err
	}
	c, err := openControl()
	if err != nil {
		return err
	}
	defer c.close()
	return c.remove(name, opts)
}

func (c *control) remove(name string, opts RemoveOptions) error {
	retries := opts.Retries
	if retries <= 0 {
		retries = 5
	}
	h := header{name: name}
	if opts.Deferred {
		h.flags |= unix.DM_DEFERRED_REMOVE
	}
	for attempt := 0; ; attempt++ {
		info, err := c.info(name)
		if errors.Is(err, ErrNotFound) {
			return fmt.Errorf("remove device %s: %w", name, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("remove device %s: %w", name, err)
		}
		if info.OpenCount > 0 && !opts.Deferred {
			return &BusyError{Name: name, OpenCount: info.OpenCount, Holders: Holders(info.Major, info.Minor)}
		}
		_, err = c.call(unix.DM_DEV_REMOVE, h, nil)
		if err == nil {
			if _, statErr := c.info(name); errors.Is(statErr, ErrNotFound) {
				removeNode(name, info.Major, info.Minor)
			}
			c.pruneNodes()
			return nil
		}
		if !errors.Is(err, unix.EBUSY) {
			return mapErrno("remove device", name, err)
		}
		if attempt >= retries {
			info, _ = c.info(name)
			return &BusyError{Name: name, OpenCount: info.OpenCount, Holders: Holders(info.Major, info.Minor)}
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// GetInfo returns the state of a device (DM_DEV_STATUS); ErrNotFound if it
// does not exist.
func GetInfo(name string) (Info, error) {
	c, err := openControl()
	if err != nil {
		return Info{}, err
	}
	defer c.close()
	return c.info(name)
}

func (c *control) info(name string) (Info, error) {
	rep, err := c.call(unix.DM_DEV_STATUS, header{name: name}, nil)
	if err != nil {
		return Info{}, mapErrno("device status", name, err)
	}
	return infoFromReply(rep), nil
}

func infoFromReply(rep reply) Info {
	return Info{
		Name:           rep.name,
		UUID:           rep.uuid,
		Major:          unix.Major(rep.dev),
		Minor:          unix.Minor(rep.dev),
		OpenCount:      int(rep.openCount),
		TargetCount:    int(rep.targetCount),
		EventNr:        rep.eventNr,
		ReadOnly:       rep.flags&unix.DM_READONLY_FLAG != 0,
		Suspended:      rep.flags&unix.DM_SUSPEND_FLAG != 0,
		DeferredRemove: rep.flags&unix.DM_DEFERRED_REMOVE != 0,
		LiveTable:      rep.flags&unix.DM_ACTIVE_PRESENT_FLAG != 0,
		InactiveTable:  rep.flags&unix.DM_INACTIVE_PRESENT_FLAG != 0,
	}
}

// List returns all mapped devices (DM_LIST_DEVICES), with their UUIDs when
// the kernel reports them (4.46 and later).
func List() ([]Device, error) {
	c, err := openControl()
	if err != nil {
		return nil, err
	}
	defer c.close()
	rep, err := c.call(unix.DM_LIST_DEVICES, header{flags: unix.DM_UUID_FLAG}, nil)
	if err != nil {
		return nil, mapErrno("list devices", "", err)
	}
	return parseNameList(rep.data)
}

// parseNameList decodes a sequence of struct dm_name_list: dev (u64),
// next (u32, offset to the next entry from this one, 0 at the end), name
// (NUL-terminated); newer kernels put event_nr and flags (two u32, 8-byte
// aligned) after the name and then the UUID when flags has HAS_UUID.
func parseNameList(data []byte) ([]Device, error) {
	var devs []Device
	off := 0
	for {
		if off+12 > len(data) {
			if off == 0 {
				return nil, nil
			}
			return nil, fmt.Errorf("list devices: entry at %d past end of reply: %w", off, ErrInvalid)
		}
		dev := binary.NativeEndian.Uint64(data[off:])
		next := int(binary.NativeEndian.Uint32(data[off+8:]))
		if dev == 0 && off == 0 {
			return nil, nil // no devices
		}
		nameStart := off + 12
		end := len(data)
		if next != 0 {
			end = off + next
			if end > len(data) || next < 12 {
				return nil, fmt.Errorf("list devices: bad next offset %d: %w", next, ErrInvalid)
			}
		}
		entry := data[nameStart:end]
		name := cString(entry)
		d := Device{Name: name, Major: unix.Major(dev), Minor: unix.Minor(dev)}
		// Optional trailer: aligned event_nr, flags, uuid.
		tail := (nameStart + len(name) + 1 + 7) &^ 7
		if tail+8 <= end {
			flags := binary.NativeEndian.Uint32(data[tail+4:])
			if flags&unix.DM_NAME_LIST_FLAG_HAS_UUID != 0 && tail+8 < end {
				d.UUID = cString(data[tail+8 : end])
			}
		}
		devs = append(devs, d)
		if next == 0 {
			return devs, nil
		}
		off += next
	}
}

// Table returns the live table of a device (DM_TABLE_STATUS with
// DM_STATUS_TABLE_FLAG). Hex keys of crypt targets are replaced by zeros of
// the same length, as `dmsetup table` shows them; keyring references
// (":64:logon:desc") are kept. The kernel is asked to wipe its buffers and
// ours are wiped too.
func Table(name string) ([]Target, error) {
	return tableStatus(name, true)
}

// Status returns the status lines of a device's live table
// (DM_TABLE_STATUS), e.g. "" for crypt or the progress of other targets.
func Status(name string) ([]Target, error) {
	return tableStatus(name, false)
}

func tableStatus(name string, table bool) ([]Target, error) {
	c, err := openControl()
	if err != nil {
		return nil, err
	}
	defer c.close()
	h := header{name: name}
	op := "device status"
	if table {
		h.flags |= unix.DM_STATUS_TABLE_FLAG
		op = "device table"
	}
	rep, release, err := c.do(unix.DM_TABLE_STATUS, h, nil, table)
	if err != nil {
		return nil, mapErrno(op, name, err)
	}
	defer release()
	targets, err := parseTargets(rep.data, int(rep.targetCount), table)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", op, name, err)
	}
	return targets, nil
}

// parseTargets decodes DM_TABLE_STATUS output: target specs whose next
// field is the offset from the start of the data area to the next spec.
// With mask, crypt keys given in hex are masked before becoming strings.
func parseTargets(data []byte, count int, mask bool) ([]Target, error) {
	if count < 0 || count > len(data)/targetSpecSize {
		return nil, fmt.Errorf("%d targets cannot fit in a reply of %d bytes: %w", count, len(data), ErrInvalid)
	}
	targets := make([]Target, 0, count)
	off := 0
	for i := 0; i < count; i++ {
		if off+targetSpecSize > len(data) {
			return nil, fmt.Errorf("target %d past end of reply: %w", i, ErrInvalid)
		}
		spec := data[off:]
		t := Target{
			StartSector:   binary.NativeEndian.Uint64(spec[offSpecStart:]),
			LengthSectors: binary.NativeEndian.Uint64(spec[offSpecLength:]),
			Type:          cString(spec[offSpecType : offSpecType+unix.DM_MAX_TYPE_NAME]),
		}
		params := data[off+targetSpecSize:]
		if i := indexNUL(params); i >= 0 {
			params = params[:i]
		}
		if mask && t.Type == "crypt" {
			maskCryptKey(params)
		}
		t.Params = string(params)
		targets = append(targets, t)
		next := int(binary.NativeEndian.Uint32(spec[offSpecNext:]))
		if i+1 < count && (next <= off || next > len(data)) {
			return nil, fmt.Errorf("target %d: bad next offset %d: %w", i, next, ErrInvalid)
		}
		off = next
	}
	return targets, nil
}

func indexNUL(b []byte) int {
	for i, c := range b {
		if c == 0 {
			return i
		}
	}
	return -1
}

// maskCryptKey overwrites, in place, a hex key (the second field of crypt
// parameters) with '0' characters. Keyring references start with ':' and
// are left alone.
func maskCryptKey(params []byte) {
	start := indexByte(params, ' ')
	if start < 0 {
		return
	}
	start++
	end := start
	for end < len(params) && params[end] != ' ' {
		end++
	}
	if start < end && params[start] != ':' && params[start] != '-' {
		for i := start; i < end; i++ {
			params[i] = '0'
		}
	}
}

func indexByte(b []byte, c byte) int {
	for i := range b {
		if b[i] == c {
			return i
		}
	}
	return -1
}

// TargetVersion returns the version of a loaded target type such as "crypt"
// (DM_LIST_VERSIONS); ErrNotFound if the kernel does not have it loaded.
func TargetVersion(target string) (Version, error) {
	c, err := openControl()
	if err != nil {
		return Version{}, err
	}
	defer c.close()
	rep, err := c.call(unix.DM_LIST_VERSIONS, header{}, nil)
	if err != nil {
		return Version{}, mapErrno("list target versions", "", err)
	}
	versions, err := parseVersions(rep.data)
	if err != nil {
		return Version{}, fmt.Errorf("list target versions: %w", err)
	}
	v, ok := versions[target]
	if !ok {
		return Version{}, fmt.Errorf("target %s: %w", target, ErrNotFound)
	}
	return v, nil
}

// parseVersions decodes struct dm_target_versions entries: next (u32,
// offset from this entry), version[3], name.
func parseVersions(data []byte) (map[string]Version, error) {
	out := map[string]Version{}
	off := 0
	for off+16 <= len(data) {
		next := int(binary.NativeEndian.Uint32(data[off:]))
		v := Version{
			binary.NativeEndian.Uint32(data[off+4:]),
			binary.NativeEndian.Uint32(data[off+8:]),
			binary.NativeEndian.Uint32(data[off+12:]),
		}
		name := cString(data[off+16:])
		if name != "" {
			out[name] = v
		}
		if next == 0 {
			break
		}
		if next < 16 {
			return nil, fmt.Errorf("bad next offset %d: %w", next, ErrInvalid)
		}
		off += next
	}
	return out, nil
}
