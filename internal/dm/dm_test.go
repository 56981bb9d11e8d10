package dm

import (
	"bufio"
	"encoding/binary"
	"os"
	"strings"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestIoctlLayout(t *testing.T) {
	var d unix.DmIoctl
	require.Equal(t, 312, ioctlHeaderSize)
	require.Equal(t, uintptr(312), unsafe.Sizeof(d))
	require.Equal(t, uintptr(offDataSize), unsafe.Offsetof(d.Data_size))
	require.Equal(t, uintptr(offDataStart), unsafe.Offsetof(d.Data_start))
	require.Equal(t, uintptr(offTargetCount), unsafe.Offsetof(d.Target_count))
	require.Equal(t, uintptr(offOpenCount), unsafe.Offsetof(d.Open_count))
	require.Equal(t, uintptr(offFlags), unsafe.Offsetof(d.Flags))
	require.Equal(t, uintptr(offEventNr), unsafe.Offsetof(d.Event_nr))
	require.Equal(t, uintptr(offDev), unsafe.Offsetof(d.Dev))
	require.Equal(t, uintptr(offName), unsafe.Offsetof(d.Name))
	require.Equal(t, uintptr(offUUID), unsafe.Offsetof(d.Uuid))

	var s unix.DmTargetSpec
	require.Equal(t, uintptr(40), unsafe.Sizeof(s))
	require.Equal(t, uintptr(offSpecLength), unsafe.Offsetof(s.Length))
	require.Equal(t, uintptr(offSpecStatus), unsafe.Offsetof(s.Status))
	require.Equal(t, uintptr(offSpecNext), unsafe.Offsetof(s.Next))
	require.Equal(t, uintptr(offSpecType), unsafe.Offsetof(s.Target_type))
}

func TestRequestFillDecode(t *testing.T) {
	r := newRequest(1000)
	require.Len(t, r.buf, 1000)
	require.NoError(t, r.fill(header{name: "vol", uuid: "CRYPT-PLAIN-vol", flags: unix.DM_READONLY_FLAG, dev: unix.Mkdev(253, 3)}, []byte("abc")))
	d := (*unix.DmIoctl)(unsafe.Pointer(&r.buf[0]))
	require.Equal(t, [3]uint32{4, 0, 0}, d.Version)
	require.Equal(t, uint32(1000), d.Data_size)
	require.Equal(t, uint32(312), d.Data_start)
	require.Equal(t, uint32(unix.DM_READONLY_FLAG), d.Flags)
	require.Equal(t, "vol", cString(d.Name[:]))
	require.Equal(t, "CRYPT-PLAIN-vol", cString(d.Uuid[:]))
	require.Equal(t, "abc", string(r.buf[312:315]))

	// Pretend the kernel answered with 4 bytes of data.
	d.Data_size = 316
	d.Open_count = 2
	rep, err := r.decode()
	require.NoError(t, err)
	require.Equal(t, "vol", rep.name)
	require.Equal(t, int32(2), rep.openCount)
	require.Equal(t, uint32(253), unix.Major(rep.dev))
	require.Equal(t, uint32(3), unix.Minor(rep.dev))
	require.Len(t, rep.data, 4)

	require.ErrorIs(t, r.fill(header{name: strings.Repeat("n", 128)}, nil), ErrInvalid)
	require.ErrorIs(t, r.fill(header{uuid: strings.Repeat("u", 129)}, nil), ErrInvalid)
	require.ErrorIs(t, r.fill(header{}, make([]byte, 1000)), ErrInvalid)
	d.Data_start = 5000
	_, err = r.decode()
	require.ErrorIs(t, err, ErrInvalid)
}

func TestEncodeTargets(t *testing.T) {
	data, err := encodeTargets([]rawTarget{
		{0, 100, "linear", []byte("7:0 0")},
		{100, 50, "error", nil},
	})
	require.NoError(t, err)
	// spec 40 + "7:0 0\0" padded to 8 = 48; then 40 + 8.
	require.Len(t, data, 48+48)
	require.Equal(t, uint32(48), binary.NativeEndian.Uint32(data[offSpecNext:]))
	require.Equal(t, uint64(100), binary.NativeEndian.Uint64(data[offSpecLength:]))
	require.Equal(t, "linear", cString(data[offSpecType:offSpecType+16]))
	require.Equal(t, "7:0 0", cString(data[40:]))
	require.Equal(t, uint64(100), binary.NativeEndian.Uint64(data[48+offSpecStart:]))
	require.Equal(t, "error", cString(data[48+offSpecType:]))

	_, err = encodeTargets([]rawTarget{{0, 1, "", nil}})
	require.ErrorIs(t, err, ErrInvalid)
	_, err = encodeTargets([]rawTarget{{0, 1, "a-very-long-target-name", nil}})
	require.ErrorIs(t, err, ErrInvalid)
	_, err = encodeTargets([]rawTarget{{0, 1, "error", []byte("a\x00b")}})
	require.ErrorIs(t, err, ErrInvalid)
}

// kernelStatus lays targets out as the kernel's retrieve_status does: next
// is the offset from the start of the data area.
func kernelStatus(targets []Target) []byte {
	var data []byte
	for _, tg := range targets {
		spec := make([]byte, targetSpecSize)
		binary.NativeEndian.PutUint64(spec[offSpecStart:], tg.StartSector)
		binary.NativeEndian.PutUint64(spec[offSpecLength:], tg.LengthSectors)
		copy(spec[offSpecType:], tg.Type)
		body := append([]byte(tg.Params), 0)
		for len(body)%8 != 0 {
			body = append(body, 0)
		}
		next := len(data) + len(spec) + len(body)
		binary.NativeEndian.PutUint32(spec[offSpecNext:], uint32(next))
		data = append(data, spec...)
		data = append(data, body...)
	}
	return data
}

func TestParseTargets(t *testing.T) {
	key := strings.Repeat("ab", 64)
	in := []Target{
		{0, 2048, "crypt", "aes-xts-plain64 " + key + " 0 7:0 4096"},
		{2048, 8, "linear", "7:1 0"},
	}
	data := kernelStatus(in)
	out, err := parseTargets(data, 2, true)
	require.NoError(t, err)
	require.Len(t, out, 2)
	require.Equal(t, "0 2048 crypt aes-xts-plain64 "+strings.Repeat("0", 128)+" 0 7:0 4096", out[0].String())
	require.Equal(t, in[1], out[1])
	require.NotContains(t, string(data), key, "the key must be masked in the kernel buffer too")

	// Unmasked (status) keeps params.
	out, err = parseTargets(kernelStatus(in[1:]), 1, false)
	require.NoError(t, err)
	require.Equal(t, in[1:], out)

	_, err = parseTargets(data[:30], 1, true)
	require.ErrorIs(t, err, ErrInvalid)
	bad := kernelStatus(in)
	binary.NativeEndian.PutUint32(bad[offSpecNext:], 0)
	_, err = parseTargets(bad, 2, true)
	require.ErrorIs(t, err, ErrInvalid)
}

func TestMaskCryptKey(t *testing.T) {
	for _, tc := range []struct{ name, in, want string }{
		{"hex", "aes-xts-plain64 00ff 0 7:0 0", "aes-xts-plain64 0000 0 7:0 0"},
		{"keyring", "aes-xts-plain64 :64:logon:cryptsetup:x-d0 0 7:0 0", "aes-xts-plain64 :64:logon:cryptsetup:x-d0 0 7:0 0"},
		{"nokey", "cipher_null-ecb - 0 7:0 0", "cipher_null-ecb - 0 7:0 0"},
		{"short", "aes", "aes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := []byte(tc.in)
			maskCryptKey(b)
			require.Equal(t, tc.want, string(b))
		})
	}
}

// nameList lays devices out as the kernel's list_get_info does.
func nameList(devs []Device, withUUID bool) []byte {
	var data []byte
	for i, d := range devs {
		start := len(data)
		e := make([]byte, 12)
		binary.NativeEndian.PutUint64(e, unix.Mkdev(d.Major, d.Minor))
		e = append(e, d.Name...)
		e = append(e, 0)
		for len(e)%8 != 0 {
			e = append(e, 0)
		}
		var flags uint32
		if withUUID {
			flags = unix.DM_NAME_LIST_FLAG_HAS_UUID
		}
		e = binary.NativeEndian.AppendUint32(e, 7)
		e = binary.NativeEndian.AppendUint32(e, flags)
		if withUUID {
			e = append(e, d.UUID...)
			e = append(e, 0)
		}
		for len(e)%8 != 0 {
			e = append(e, 0)
		}
		if i+1 < len(devs) {
			binary.NativeEndian.PutUint32(e[8:], uint32(len(e)))
		}
		data = append(data, e...)
		_ = start
	}
	return data
}

func TestParseNameList(t *testing.T) {
	devs := []Device{
		{Name: "a", UUID: "CRYPT-PLAIN-a", Major: 253, Minor: 0},
		{Name: "longer-name-here", UUID: "CRYPT-LUKS2-0123456789abcdef0123456789abcdef-longer-name-here", Major: 253, Minor: 300},
	}
	got, err := parseNameList(nameList(devs, true))
	require.NoError(t, err)
	require.Equal(t, devs, got)

	got, err = parseNameList(nameList(devs, false))
	require.NoError(t, err)
	require.Equal(t, "longer-name-here", got[1].Name)
	require.Empty(t, got[1].UUID)

	got, err = parseNameList(make([]byte, 16)) // dev 0: no devices
	require.NoError(t, err)
	require.Empty(t, got)

	bad := nameList(devs, true)
	binary.NativeEndian.PutUint32(bad[8:], 4)
	_, err = parseNameList(bad)
	require.ErrorIs(t, err, ErrInvalid)
}

func TestParseVersions(t *testing.T) {
	var data []byte
	for i, e := range []struct {
		name string
		v    [3]uint32
	}{{"crypt", [3]uint32{1, 24, 0}}, {"linear", [3]uint32{1, 4, 0}}} {
		b := make([]byte, 16)
		for j, x := range e.v {
			binary.NativeEndian.PutUint32(b[4+4*j:], x)
		}
		b = append(b, e.name...)
		b = append(b, 0)
		for len(b)%8 != 0 {
			b = append(b, 0)
		}
		if i == 0 {
			binary.NativeEndian.PutUint32(b, uint32(len(b)))
		}
		data = append(data, b...)
	}
	m, err := parseVersions(data)
	require.NoError(t, err)
	require.Equal(t, Version{1, 24, 0}, m["crypt"])
	require.Equal(t, Version{1, 4, 0}, m["linear"])
	require.True(t, m["crypt"].AtLeast(1, 15, 0))
	require.False(t, m["crypt"].AtLeast(1, 25, 0))
	require.True(t, m["crypt"].AtLeast(0, 99, 0))
}

func TestCheckName(t *testing.T) {
	require.NoError(t, checkName("luks-1234"))
	for _, bad := range []string{"", "a/b", ".", "..", "control", strings.Repeat("x", 128)} {
		require.ErrorIs(t, checkName(bad), ErrInvalid, bad)
	}
}

func TestParseMountInfo(t *testing.T) {
	const mi = `22 1 253:0 / / rw,relatime shared:1 - ext4 /dev/mapper/root rw
36 22 253:3 / /mnt/my\040disk rw,noatime shared:2 - ext4 /dev/mapper/vol rw
37 22 253:3 /sub /srv rw - ext4 /dev/mapper/vol rw
38 22 253:30 / /other rw - ext4 /dev/mapper/x rw
`
	got := parseMountInfo(bufio.NewScanner(strings.NewReader(mi)), "253:3")
	require.Equal(t, []string{"/mnt/my disk", "/srv"}, got)
	require.Equal(t, `a\0b`, unescapeMount(`a\0b`))
}

func TestBusyError(t *testing.T) {
	err := error(&BusyError{Name: "vol", OpenCount: 1, Holders: []string{"mounted on /mnt"}})
	require.ErrorIs(t, err, ErrBusy)
	require.Equal(t, "device vol is busy (open count 1): mounted on /mnt", err.Error())
}

func TestMapErrno(t *testing.T) {
	require.ErrorIs(t, mapErrno("op", "n", unix.ENXIO), ErrNotFound)
	require.ErrorIs(t, mapErrno("op", "n", unix.EPERM), ErrPermission)
	require.ErrorIs(t, mapErrno("op", "n", unix.ENOKEY), ErrKeyNotAvailable)
	require.ErrorIs(t, mapErrno("op", "n", unix.EINVAL), unix.EINVAL)
}

func TestSizeBytesAndDeviceNumber(t *testing.T) {
	p := t.TempDir() + "/f"
	require.NoError(t, os.WriteFile(p, make([]byte, 3000), 0o600))
	n, err := SizeBytes(p)
	require.NoError(t, err)
	require.Equal(t, uint64(3000), n)
	_, err = SizeBytes("/dev/null")
	require.ErrorIs(t, err, ErrInvalid)
	_, err = DeviceNumber(p)
	require.ErrorIs(t, err, ErrInvalid)
	_, err = DeviceNumber(p + "-missing")
	require.ErrorIs(t, err, os.ErrNotExist)
}

// FuzzReplies feeds arbitrary bytes to the decoders of kernel replies:
// they must return an error, never panic or loop.
func FuzzReplies(f *testing.F) {
	f.Add(kernelStatus([]Target{{0, 8, "crypt", "aes-xts-plain64 - 0 7:0 0"}}), 1)
	f.Add(nameList([]Device{{Name: "a", UUID: "u", Major: 253}}, true), 1)
	f.Fuzz(func(t *testing.T, data []byte, count int) {
		_, _ = parseTargets(append([]byte(nil), data...), count%1000, true)
		_, _ = parseNameList(data)
		_, _ = parseVersions(data)
	})
}
