package kdf_test

import (
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/volcrypt/volcrypt/kdf"
)

// Parameters read from a header are checked before any work is done.
func ExampleParams_Check() {
	hostile := kdf.Params{Algorithm: kdf.Argon2id, Time: 4, MemoryKiB: 2 << 20, Threads: 4}
	err := hostile.Check(kdf.Limits{MaxMemoryKiB: 1 << 20})
	var ce *kdf.CostError
	fmt.Println(errors.Is(err, kdf.ErrCost), errors.As(err, &ce) && ce.Flag == kdf.FlagMemory)
	fmt.Println(err)
	// Output:
	// true true
	// kdf memory 2097152 KiB above the limit of 1048576 KiB (raise it with --pbkdf-memory)
}

// Cheap parameters for tests of other packages: PBKDF2 at cryptsetup's
// minimum iteration count.
func ExampleDerive() {
	p := kdf.Params{Algorithm: kdf.PBKDF2, Hash: "sha1", Time: 4096}
	key, err := kdf.Derive(p, []byte("password"), []byte("salt"), 20)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer clear(key)
	fmt.Println(hex.EncodeToString(key)) // RFC 6070
	// Output: 4b007901b765489abead49d926f721d065a429c1
}
