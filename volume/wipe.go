package volume

import (
	"context"
	"errors"
	"fmt"

	"github.com/volcrypt/volcrypt/internal/secret"
)

// wipeChunk is how much Wipe encrypts and writes at a time, and so how
// often it checks the context and reports progress.
const wipeChunk = 4 << 20

// Wipe writes encrypted zeros over the whole data segment through the
// userspace engine, as dm-crypt would write them: afterwards the volume
// reads as zeros and its ciphertext shows nothing of what the device held
// before, nor which sectors are in use (BitLocker's "encrypt entire
// drive"). key is the volume key.
//
// progress, when set, is called with 0 bytes done before the first chunk
// (TotalBytes says how much there is to do) and after each chunk. The
// context is checked between chunks: when it ends, Wipe flushes what it has
// written and returns an error wrapping the context's, and the volume stays
// valid; the part not reached keeps its old contents and a later Wipe
// starts again from the beginning. The volume must not be mapped meanwhile.
func (v *Volume) Wipe(ctx context.Context, key *secret.Buffer, progress func(Progress)) error {
	if v.rdonly {
		return fmt.Errorf("wipe: %s is open read-only", v.Path)
	}
	pt, err := v.Plaintext(key)
	if err != nil {
		return fmt.Errorf("wipe: %w", err)
	}
	defer pt.Close()
	size := pt.Size()
	zeros := make([]byte, min(wipeChunk, size))
	var done int64
	if progress != nil {
		progress(Progress{TotalBytes: size})
	}
	for done < size {
		if err := ctx.Err(); err != nil {
			if cause := context.Cause(ctx); cause != nil && !errors.Is(err, cause) {
				err = fmt.Errorf("%w (%w)", err, cause) // such as the signal that stopped it
			}
			return v.wipeStopped(done, size, err)
		}
		n := min(int64(len(zeros)), size-done)
		if _, err := pt.WriteAt(zeros[:n], done); err != nil {
			return v.wipeStopped(done, size, err)
		}
		done += n
		if progress != nil {
			progress(Progress{DoneBytes: done, TotalBytes: size})
		}
	}
	if err := v.data.Sync(); err != nil {
		return fmt.Errorf("wipe: flush %s: %w", v.Path, err)
	}
	return nil
}

// wipeStopped flushes what a stopped Wipe wrote and says how far it got.
func (v *Volume) wipeStopped(done, size int64, cause error) error {
	if err := v.data.Sync(); err != nil {
		cause = fmt.Errorf("%w (and flush: %w)", cause, err)
	}
	return fmt.Errorf("wipe stopped after %d of %d bytes: %w", done, size, cause)
}
