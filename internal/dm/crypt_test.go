package dm

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

const testLUKSUUID = "5b1d3e2a-7c4f-4a8e-9d21-0f6b8c3a9e17"

func TestCryptParams(t *testing.T) {
	key := bytes.Repeat([]byte{0xab}, 64)
	for _, tc := range []struct {
		name   string
		target CryptTarget
		key    []byte
		want   string // Params as loaded (cryptsetup's order)
		kernel string // String() (kernel's order, key masked)
	}{
		{
			name: "luks2 keyring",
			target: CryptTarget{Cipher: "aes-xts-plain64", KeySize: 64, KeyDescription: LUKS2KeyDescription(testLUKSUUID, 0),
				Device: "7:0", OffsetBytes: 16 << 20, SizeBytes: 100 << 20},
			want:   "aes-xts-plain64 :64:logon:cryptsetup:" + testLUKSUUID + "-d0 0 7:0 32768",
			kernel: "0 204800 crypt aes-xts-plain64 :64:logon:cryptsetup:" + testLUKSUUID + "-d0 0 7:0 32768",
		},
		{
			name:   "hex key",
			target: CryptTarget{Cipher: "aes-xts-plain64", KeySize: 64, Device: "7:1", SizeBytes: 1 << 20, IVOffset: 8},
			key:    key,
			want:   "aes-xts-plain64 " + strings.Repeat("ab", 64) + " 8 7:1 0",
			kernel: "0 2048 crypt aes-xts-plain64 " + strings.Repeat("0", 128) + " 8 7:1 0",
		},
		{
			name: "all flags",
			target: CryptTarget{Cipher: "aes-xts-plain64", KeySize: 64, KeyDescription: "cryptsetup:x-d0", Device: "259:2",
				OffsetBytes: 4096, SizeBytes: 8192, SectorSizeBytes: 4096, AllowDiscards: true, SameCPUCrypt: true,
				SubmitFromCryptCPUs: true, NoReadWorkqueue: true, NoWriteWorkqueue: true, IVLargeSectors: true},
			want: "aes-xts-plain64 :64:logon:cryptsetup:x-d0 0 259:2 8 7 allow_discards same_cpu_crypt submit_from_crypt_cpus" +
				" no_read_workqueue no_write_workqueue iv_large_sectors sector_size:4096",
			kernel: "0 16 crypt aes-xts-plain64 :64:logon:cryptsetup:x-d0 0 259:2 8 7 allow_discards same_cpu_crypt submit_from_crypt_cpus" +
				" no_read_workqueue no_write_workqueue sector_size:4096 iv_large_sectors",
		},
		{
			name:   "no key",
			target: CryptTarget{Cipher: "cipher_null-ecb", Device: "7:0", SizeBytes: 512},
			want:   "cipher_null-ecb - 0 7:0 0",
			kernel: "0 1 crypt cipher_null-ecb - 0 7:0 0",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.target.Params(tc.key)
			require.NoError(t, err)
			require.Equal(t, tc.want, string(got))
			require.Equal(t, tc.kernel, tc.target.String())

			parsed, err := ParseCryptLine(tc.kernel)
			require.NoError(t, err)
			require.Equal(t, tc.target, parsed)
			require.Equal(t, tc.kernel, parsed.String())
		})
	}
}

func TestCryptValidate(t *testing.T) {
	ok := CryptTarget{Cipher: "aes-xts-plain64", KeySize: 64, KeyDescription: "cryptsetup:x-d0", Device: "7:0", SizeBytes: 4096}
	require.NoError(t, ok.Validate())
	for name, mut := range map[string]func(*CryptTarget){
		"no cipher":       func(c *CryptTarget) { c.Cipher = "" },
		"space in cipher": func(c *CryptTarget) { c.Cipher = "aes xts" },
		"negative key":    func(c *CryptTarget) { c.KeySize = -1 },
		"desc no size":    func(c *CryptTarget) { c.KeySize = 0 },
		"space in desc":   func(c *CryptTarget) { c.KeyDescription = "a b" },
		"no device":       func(c *CryptTarget) { c.Device = "" },
		"zero size":       func(c *CryptTarget) { c.SizeBytes = 0 },
		"odd size":        func(c *CryptTarget) { c.SizeBytes = 1000 },
		"odd offset":      func(c *CryptTarget) { c.OffsetBytes = 100 },
		"sector size":     func(c *CryptTarget) { c.SectorSizeBytes = 1000 },
		"size vs sector":  func(c *CryptTarget) { c.SectorSizeBytes = 4096; c.SizeBytes = 6144 },
		"bad extra":       func(c *CryptTarget) { c.Extra = []string{"a b"} },
	} {
		t.Run(name, func(t *testing.T) {
			c := ok
			mut(&c)
			require.ErrorIs(t, c.Validate(), ErrInvalid)
			_, err := c.Params(make([]byte, 64))
			require.ErrorIs(t, err, ErrInvalid)
		})
	}
	hexTarget := ok
	hexTarget.KeyDescription = ""
	_, err := hexTarget.Params(nil)
	require.ErrorIs(t, err, ErrInvalid, "hex table without a key")
	_, err = hexTarget.Params(make([]byte, 32))
	require.ErrorIs(t, err, ErrInvalid, "key of the wrong size")
}

func TestParseCryptErrors(t *testing.T) {
	for name, line := range map[string]string{
		"short":          "0 8 crypt",
		"type":           "0 8 linear 7:0 0",
		"start":          "8 8 crypt aes-xts-plain64 - 0 7:0 0",
		"bad start":      "x 8 crypt aes-xts-plain64 - 0 7:0 0",
		"few params":     "0 8 crypt aes-xts-plain64 - 0 7:0",
		"iv":             "0 8 crypt aes-xts-plain64 - x 7:0 0",
		"offset":         "0 8 crypt aes-xts-plain64 - 0 7:0 x",
		"huge offset":    "0 8 crypt aes-xts-plain64 - 0 7:0 18446744073709551615",
		"count":          "0 8 crypt aes-xts-plain64 - 0 7:0 0 2 allow_discards",
		"count nan":      "0 8 crypt aes-xts-plain64 - 0 7:0 0 x",
		"sector":         "0 8 crypt aes-xts-plain64 - 0 7:0 0 1 sector_size:1000",
		"odd hex":        "0 8 crypt aes-xts-plain64 abc 0 7:0 0",
		"not hex":        "0 8 crypt aes-xts-plain64 zz 0 7:0 0",
		"keyring short":  "0 8 crypt aes-xts-plain64 :64:logon 0 7:0 0",
		"keyring size":   "0 8 crypt aes-xts-plain64 :x:logon:a:b 0 7:0 0",
		"keyring nodesc": "0 8 crypt aes-xts-plain64 :64:logon: 0 7:0 0",
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseCryptLine(line)
			require.ErrorIs(t, err, ErrInvalid)
		})
	}
}

func TestParseCryptKeepsUnknown(t *testing.T) {
	line := "0 8 crypt capi:xts(aes)-plain64 :32:user:my:key 5 8:16 2048 3 allow_discards integrity:28:aead future_flag"
	c, err := ParseCryptLine(line)
	require.NoError(t, err)
	require.Equal(t, "user", c.KeyType)
	require.Equal(t, "my:key", c.KeyDescription)
	require.Equal(t, "28:aead", c.Integrity)
	require.Equal(t, []string{"future_flag"}, c.Extra)
	require.Equal(t, uint64(5), c.IVOffset)
	require.Equal(t, uint64(2048*512), c.OffsetBytes)
	require.Equal(t, line, c.String())
}

func FuzzParseCrypt(f *testing.F) {
	f.Add("0 204800 crypt aes-xts-plain64 :64:logon:cryptsetup:" + testLUKSUUID + "-d0 0 7:0 32768")
	f.Add("0 16 crypt aes-xts-plain64 0000 0 259:2 8 2 allow_discards sector_size:4096")
	for _, tc := range cryptsetupTables {
		f.Add(tc.line)
	}
	f.Fuzz(func(t *testing.T, line string) {
		c, err := ParseCryptLine(line)
		if err != nil {
			return
		}
		// What parses must format and parse back to the same target.
		again, err := ParseCryptLine(c.String())
		require.NoError(t, err, c.String())
		require.Equal(t, c.String(), again.String())
	})
}

func TestCryptUUID(t *testing.T) {
	for _, tc := range []struct {
		typ, uuid, name, want string
	}{
		{TypeLUKS2, testLUKSUUID, "vol", "CRYPT-LUKS2-5b1d3e2a7c4f4a8e9d210f6b8c3a9e17-vol"},
		{TypeLUKS1, testLUKSUUID, "my-vol", "CRYPT-LUKS1-5b1d3e2a7c4f4a8e9d210f6b8c3a9e17-my-vol"},
		{TypePlain, "", "plain-vol", "CRYPT-PLAIN-plain-vol"},
	} {
		got := CryptUUID(tc.typ, tc.uuid, tc.name)
		require.Equal(t, tc.want, got)
		typ, uuid, name, ok := ParseCryptUUID(got)
		require.True(t, ok)
		require.Equal(t, tc.typ, typ)
		require.Equal(t, tc.uuid, uuid)
		require.Equal(t, tc.name, name)
	}
	long := CryptUUID(TypeLUKS2, testLUKSUUID, strings.Repeat("n", 127))
	require.Len(t, long, 128)

	for _, bad := range []string{"", "LVM-abc", "CRYPT-", "CRYPT--x"} {
		_, _, _, ok := ParseCryptUUID(bad)
		require.False(t, ok, bad)
	}
	typ, uuid, name, ok := ParseCryptUUID("CRYPT-LUKS2-notauuid-vol")
	require.True(t, ok)
	require.Equal(t, TypeLUKS2, typ)
	require.Empty(t, uuid)
	require.Equal(t, "notauuid-vol", name)
}
