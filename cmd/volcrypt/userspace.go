package main

import (
	"errors"

	"github.com/spf13/cobra"

	"github.com/volcrypt/volcrypt/internal/secret"
	"github.com/volcrypt/volcrypt/volume"
)

// openUserspace serves the unlocked volume's plaintext as a file under
// mountpoint through FUSE (open --userspace; issue 9).
func (a *app) openUserspace(cmd *cobra.Command, v *volume.Volume, key *secret.Buffer, mountpoint string, readOnly bool) error {
	return usageError{errors.New("--userspace is not implemented yet")}
}

// closeUserspace unmounts a userspace volume at name; handled is false when
// name is not such a mount point, so close treats it as a mapping name.
func (a *app) closeUserspace(name string) (handled bool, err error) { return false, nil }

// statusUserspace reports a userspace volume at name; handled as above.
func (a *app) statusUserspace(name string) (handled bool, err error) { return false, nil }
