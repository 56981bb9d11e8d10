package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/volcrypt/volcrypt/internal/secret"
	"github.com/volcrypt/volcrypt/volume"
)

// sizeFlag is a byte size with an optional k, m or g suffix (powers of 1024).
type sizeFlag int64

func (s *sizeFlag) String() string { return strconv.FormatInt(int64(*s), 10) }
func (s *sizeFlag) Type() string   { return "size" }
func (s *sizeFlag) Set(v string) error {
	mult := int64(1)
	lower := strings.ToLower(strings.TrimSpace(v))
	for suffix, m := range map[string]int64{"k": 1 << 10, "m": 1 << 20, "g": 1 << 30} {
		if strings.HasSuffix(lower, suffix) {
			lower, mult = strings.TrimSuffix(lower, suffix), m
		}
	}
	n, err := strconv.ParseInt(lower, 10, 64)
	if err != nil || n <= 0 {
		return fmt.Errorf("%q is not a size (like 16k, 4m or 16777216)", v)
	}
	*s = sizeFlag(n * mult)
	return nil
}

// registerNewVolumeFlags registers the flags format and encrypt share for
// a new volume: its cipher, key size, labels, UUID and header sizes.
func registerNewVolumeFlags(fs *pflag.FlagSet, o *volume.FormatOptions) {
	fs.StringVarP(&o.Cipher, "cipher", "c", "aes-xts-plain64", "cipher specification of the data")
	fs.IntVarP(&o.KeySizeBits, "key-size", "s", 512, "volume key size in bits")
	fs.StringVar(&o.Label, "label", "", "label of the volume")
	fs.StringVar(&o.Subsystem, "subsystem", "", "subsystem label of the volume")
	fs.StringVar(&o.UUID, "uuid", "", "UUID of the volume (random by default)")
	fs.Var((*sizeFlag)(&o.MetadataSizeBytes), "luks2-metadata-size", "size of each header copy: 16k, 32k, … 4m")
	fs.Var((*sizeFlag)(&o.KeyslotsSizeBytes), "luks2-keyslots-size", "size of the key-slot area (e.g. 16m)")
}

// readVolumeKeyFile reads exactly keyBits/8 bytes of a volume key file.
func readVolumeKeyFile(path string, keyBits int) (*secret.Buffer, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("volume key file: %w", err)
	}
	defer secret.Wipe(b)
	if len(b) < keyBits/8 {
		return nil, usageError{fmt.Errorf("volume key file %s holds %d bytes, the key size needs %d", path, len(b), keyBits/8)}
	}
	buf := secret.New(keyBits / 8)
	copy(buf.Bytes(), b)
	return buf, nil
}
