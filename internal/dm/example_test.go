package dm_test

import (
	"errors"
	"fmt"

	"github.com/volcrypt/volcrypt/internal/dm"
	"github.com/volcrypt/volcrypt/internal/loop"
)

// Opening a LUKS2 volume stored in an image file, the way `cryptsetup open`
// does: attach the file to a loop device, activate the crypt mapping with
// the volume key passed through the kernel keyring, then let go of the loop
// device (the mapping holds it; it detaches when the mapping is removed).
func ExampleCreateCrypt() {
	var (
		image      = "/var/lib/disk.img"
		luksUUID   = "5b1d3e2a-7c4f-4a8e-9d21-0f6b8c3a9e17" // from the header
		volumeKey  = make([]byte, 64)                       // unlocked from a key slot
		dataOffset = uint64(16 << 20)                       // segment "offset"
	)
	lo, err := loop.Attach(image, false)
	if err != nil {
		return
	}
	defer lo.Close()
	size, err := dm.SizeBytes(lo.Path)
	if err != nil {
		return
	}
	target := dm.CryptTarget{
		Cipher:         "aes-xts-plain64", // segment "encryption"
		KeySize:        len(volumeKey),
		KeyDescription: dm.LUKS2KeyDescription(luksUUID, 0), // digest 0 verifies the key
		Device:         dm.DevNum(lo.Major(), lo.Minor()),
		OffsetBytes:    dataOffset,
		SizeBytes:      size - dataOffset, // "dynamic" segment size
	}
	_, err = dm.CreateCrypt("data", target, volumeKey, dm.CryptOptions{
		UUID: dm.CryptUUID(dm.TypeLUKS2, luksUUID, "data"),
	})
	if errors.Is(err, dm.ErrExists) {
		fmt.Println("already open")
	}
}

// Closing: a busy device reports who holds it.
func ExampleRemove() {
	err := dm.Remove("data", dm.RemoveOptions{})
	var busy *dm.BusyError
	if errors.As(err, &busy) {
		fmt.Println(busy.Holders) // e.g. [mounted on /mnt]
	}
}
