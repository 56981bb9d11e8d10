package dm

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// Table lines and device-mapper UUIDs printed by `dmsetup table` (with and
// without --showkeys) and `dmsetup info` for mappings opened by cryptsetup
// 2.6.1 on Linux 6.1.0-57-cloud-amd64 in the test VM, on a 32 MiB image on
// /dev/loop0 (7:0). Keys are from throw-away volumes.
var cryptsetupTables = []struct {
	name string
	line string // as the kernel prints it
	want CryptTarget
}{
	{
		name: "luks2 open",
		line: "0 32768 crypt aes-xts-plain64 :64:logon:cryptsetup:5b1d3e2a-7c4f-4a8e-9d21-0f6b8c3a9e17-d0 0 7:0 32768",
		want: CryptTarget{Cipher: "aes-xts-plain64", KeySize: 64, KeyDescription: "cryptsetup:5b1d3e2a-7c4f-4a8e-9d21-0f6b8c3a9e17-d0",
			Device: "7:0", OffsetBytes: 16 << 20, SizeBytes: 16 << 20},
	},
	{
		name: "luks2 all perf flags, --readonly",
		line: "0 32768 crypt aes-xts-plain64 :64:logon:cryptsetup:5b1d3e2a-7c4f-4a8e-9d21-0f6b8c3a9e17-d0 0 7:0 32768 5 allow_discards same_cpu_crypt submit_from_crypt_cpus no_read_workqueue no_write_workqueue",
		want: CryptTarget{Cipher: "aes-xts-plain64", KeySize: 64, KeyDescription: "cryptsetup:5b1d3e2a-7c4f-4a8e-9d21-0f6b8c3a9e17-d0",
			Device: "7:0", OffsetBytes: 16 << 20, SizeBytes: 16 << 20, AllowDiscards: true, SameCPUCrypt: true,
			SubmitFromCryptCPUs: true, NoReadWorkqueue: true, NoWriteWorkqueue: true},
	},
	{
		name: "luks2 --sector-size 4096",
		line: "0 32768 crypt aes-xts-plain64 :64:logon:cryptsetup:11111111-2222-3333-4444-555555555555-d0 0 7:0 32768 1 sector_size:4096",
		want: CryptTarget{Cipher: "aes-xts-plain64", KeySize: 64, KeyDescription: "cryptsetup:11111111-2222-3333-4444-555555555555-d0",
			Device: "7:0", OffsetBytes: 16 << 20, SizeBytes: 16 << 20, SectorSizeBytes: 4096},
	},
	{
		name: "luks1 --showkeys",
		line: "0 61440 crypt aes-xts-plain64 ecdf3d811267872bcb974cf7cf9f5abb03cbe76a6dc573375e49633a3cee64c818d93abbf4ad28d062e3ac15b7f18d542023e29997aef22ce6d1ded965e61014 0 7:0 4096",
		want: CryptTarget{Cipher: "aes-xts-plain64", KeySize: 64, Device: "7:0", OffsetBytes: 2 << 20, SizeBytes: 30 << 20},
	},
	{
		name: "plain --offset 8 --skip 16",
		line: "0 65528 crypt aes-xts-plain64 " + strings.Repeat("0", 128) + " 16 7:0 8",
		want: CryptTarget{Cipher: "aes-xts-plain64", KeySize: 64, Device: "7:0", IVOffset: 16, OffsetBytes: 4096, SizeBytes: 65528 * 512},
	},
	{
		name: "plain essiv --sector-size 4096 --iv-large-sectors",
		line: "0 65536 crypt aes-cbc-essiv:sha256 " + strings.Repeat("0", 64) + " 0 7:0 0 2 sector_size:4096 iv_large_sectors",
		want: CryptTarget{Cipher: "aes-cbc-essiv:sha256", KeySize: 32, Device: "7:0", SizeBytes: 32 << 20,
			SectorSizeBytes: 4096, IVLargeSectors: true},
	},
	{
		name: "plain --size 2048",
		line: "0 2048 crypt aes-xts-plain64 " + strings.Repeat("0", 128) + " 0 7:0 0",
		want: CryptTarget{Cipher: "aes-xts-plain64", KeySize: 64, Device: "7:0", SizeBytes: 1 << 20},
	},
}

func TestCryptsetupTables(t *testing.T) {
	for _, tc := range cryptsetupTables {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseCryptLine(tc.line)
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
			// Formatting gives the kernel's line back, hex keys masked.
			masked := []byte(strings.SplitN(tc.line, " ", 4)[3])
			maskCryptKey(masked)
			require.Equal(t, strings.Join(strings.SplitN(tc.line, " ", 4)[:3], " ")+" "+string(masked), got.String())
		})
	}
}

func TestCryptsetupUUIDs(t *testing.T) {
	for _, tc := range []struct{ dmUUID, typ, uuid, name string }{
		{"CRYPT-LUKS2-5b1d3e2a7c4f4a8e9d210f6b8c3a9e17-luksvol", TypeLUKS2, "5b1d3e2a-7c4f-4a8e-9d21-0f6b8c3a9e17", "luksvol"},
		{"CRYPT-LUKS2-11111111222233334444555555555555-l4k", TypeLUKS2, "11111111-2222-3333-4444-555555555555", "l4k"},
		{"CRYPT-LUKS1-11111111222233334444555555555555-l1", TypeLUKS1, "11111111-2222-3333-4444-555555555555", "l1"},
		{"CRYPT-PLAIN-pl", TypePlain, "", "pl"},
	} {
		typ, uuid, name, ok := ParseCryptUUID(tc.dmUUID)
		require.True(t, ok, tc.dmUUID)
		require.Equal(t, []string{tc.typ, tc.uuid, tc.name}, []string{typ, uuid, name})
		require.Equal(t, tc.dmUUID, CryptUUID(typ, uuid, name))
	}
}
