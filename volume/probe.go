package volume

import (
	"bytes"
	"encoding/binary"
	"io"
)

// signature is a magic number that marks data on a device.
type signature struct {
	name  string
	off   int64
	magic []byte
}

var signatures = []signature{
	{"LUKS", 0, []byte("LUKS\xba\xbe")},
	{"LUKS2 secondary header", 16384, []byte("SKUL\xba\xbe")},
	{"ext2/3/4 file system", 1080, []byte{0x53, 0xef}},
	{"XFS file system", 0, []byte("XFSB")},
	{"btrfs file system", 65600, []byte("_BHRfS_M")},
	{"swap space", 4086, []byte("SWAPSPACE2")},
	{"swap space", 4086, []byte("SWAP-SPACE")},
	{"GPT partition table", 512, []byte("EFI PART")},
	{"FAT file system", 54, []byte("FAT")},
	{"FAT32 file system", 82, []byte("FAT32")},
	{"BitLocker volume", 3, []byte("-FVE-FS-")},
	{"NTFS file system", 3, []byte("NTFS    ")},
	{"ISO 9660 file system", 32769, []byte("CD001")},
	{"squashfs file system", 0, []byte("hsqs")},
}

// Probe names the first signature of a file system, partition table or
// LUKS header found on r, or returns "" when it finds none.
func Probe(r io.ReaderAt) (string, error) {
	for _, s := range signatures {
		buf := make([]byte, len(s.magic))
		if _, err := r.ReadAt(buf, s.off); err != nil {
			if err == io.EOF {
				continue
			}
			return "", err
		}
		if bytes.Equal(buf, s.magic) {
			return s.name, nil
		}
	}
	// An MBR: boot signature and at least one partition entry.
	mbr := make([]byte, 512)
	if _, err := r.ReadAt(mbr, 0); err == nil && binary.LittleEndian.Uint16(mbr[510:]) == 0xaa55 {
		for i := 0; i < 4; i++ {
			if mbr[446+16*i+4] != 0 {
				return "DOS partition table", nil
			}
		}
	}
	return "", nil
}
