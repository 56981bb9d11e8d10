package main

import (
	"errors"
	"fmt"

	"github.com/volcrypt/volcrypt/internal/secret"
	"github.com/volcrypt/volcrypt/recovery"
)

// normalizeRecovery turns a typed recovery password (with spaces, dashes or
// no separators) into the canonical form stored in its key slot; any other
// passphrase is returned as it is. A recovery password with a mistyped
// group is refused here, naming the group, before any KDF runs.
func normalizeRecovery(b []byte) ([]byte, error) {
	if !recovery.Looks(string(b)) {
		return b, nil
	}
	canon, err := recovery.Parse(string(b))
	secret.Wipe(b)
	var ge *recovery.GroupError
	if errors.As(err, &ge) {
		return nil, fmt.Errorf("%w: %v; check the digits of group %d", errRecoveryTypo, ge, ge.Index)
	}
	if err != nil {
		return nil, err
	}
	return canon, nil
}

// errRecoveryTypo marks a recovery password that fails its own check.
var errRecoveryTypo = errors.New("recovery password mistyped")
