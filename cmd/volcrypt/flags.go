package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/volcrypt/volcrypt/internal/secret"
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
