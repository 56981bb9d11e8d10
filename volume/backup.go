package volume

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/volcrypt/volcrypt/header"
)

// ErrOtherVolume means a header backup belongs to another volume (another
// UUID) than the device holds, or the device holds no LUKS header:
// restoring it replaces whatever key slots are there.
var ErrOtherVolume = errors.New("header backup is not of this volume")

// maxBackupSize bounds a header backup file: two largest header copies and
// the largest key-slot area.
const maxBackupSize = 2*header.MaxHeaderSize + header.MaxKeyslotsSize

// BackupHeader copies the header and key-slot area, the bytes cryptsetup
// luksHeaderBackup saves, to a new file (read-only for its owner, as
// cryptsetup makes it). An existing file is never overwritten.
func (v *Volume) BackupHeader(file string) error {
	if v.Header.Version != 2 {
		return fmt.Errorf("header backup: LUKS%d %w; use cryptsetup luksHeaderBackup", v.Header.Version, header.ErrReadOnlyFormat)
	}
	var buf []byte
	err := v.withLock(false, func() error {
		h, err := header.Read(v.hdr)
		if err != nil {
			return fmt.Errorf("read header: %w", err)
		}
		buf = make([]byte, h.KeyslotsEnd())
		if _, err := v.hdr.ReadAt(buf, 0); err != nil {
			return fmt.Errorf("read header and key slots: %w", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("header backup: %w", err)
	}
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o400)
	if err != nil {
		return fmt.Errorf("header backup: %w", err)
	}
	if _, err = f.Write(buf); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(file)
		return fmt.Errorf("header backup %s: %w", file, err)
	}
	return nil
}

// RestoreOptions say where a header backup goes and what to allow.
type RestoreOptions struct {
	// HeaderFile is a detached header to restore into instead of the
	// device.
	HeaderFile string
	// AllowOtherVolume restores a backup whose UUID differs from the
	// header on the device, or onto a device with no LUKS header.
	AllowOtherVolume bool
}

// ReadBackup reads and checks a header backup file: a LUKS2 header with at
// least one valid copy and its whole key-slot area.
func ReadBackup(file string) (*header.Header, []byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, nil, fmt.Errorf("header backup: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxBackupSize+1))
	if err != nil {
		return nil, nil, fmt.Errorf("header backup %s: %w", file, err)
	}
	if len(b) > maxBackupSize {
		return nil, nil, fmt.Errorf("header backup %s: larger than any LUKS2 header (%d bytes): %w", file, maxBackupSize, header.ErrNotLUKS)
	}
	h, err := header.Read(bytes.NewReader(b))
	if err != nil {
		return nil, nil, fmt.Errorf("header backup %s: %w", file, err)
	}
	if h.Version != 2 {
		return nil, nil, fmt.Errorf("header backup %s: LUKS%d %w; use cryptsetup luksHeaderRestore", file, h.Version, header.ErrReadOnlyFormat)
	}
	if int64(len(b)) < h.KeyslotsEnd() {
		return nil, nil, fmt.Errorf("header backup %s: %d bytes, the header and key slots need %d: %w", file, len(b), h.KeyslotsEnd(), header.ErrInvalid)
	}
	return h, b[:h.KeyslotsEnd()], nil
}

// RestoreHeader writes a header backup (from BackupHeader or cryptsetup
// luksHeaderBackup) to device, or to o.HeaderFile. It refuses a backup of
// another volume, or a device without a LUKS header, unless
// o.AllowOtherVolume; and always one whose data offset differs from the
// header it replaces, since the data would no longer be found.
func RestoreHeader(device, file string, o RestoreOptions) error {
	h, b, err := ReadBackup(file)
	if err != nil {
		return err
	}
	target := device
	if o.HeaderFile != "" {
		target = o.HeaderFile
	}
	f, err := openFile(target, false)
	if err != nil {
		return err
	}
	defer f.Close()
	size, err := deviceSize(f)
	if err != nil {
		return err
	}
	seg, err := h.DataSegment()
	if err != nil {
		return fmt.Errorf("header backup %s: %w", file, err)
	}
	if size < int64(len(b)) || (o.HeaderFile == "" && size < int64(seg.Offset)) {
		return fmt.Errorf("%s is %d bytes, too small for the backup's header and data offset %d: %w", target, size, seg.Offset, ErrDeviceNotFound)
	}
	v := &Volume{Path: device, HeaderPath: target, hdr: f}
	return v.withLock(true, func() error {
		cur, err := header.Read(f)
		switch {
		case err != nil && !o.AllowOtherVolume:
			return fmt.Errorf("%s holds no valid LUKS header (%v): %w", target, err, ErrOtherVolume)
		case err == nil && cur.UUID != h.UUID && !o.AllowOtherVolume:
			return fmt.Errorf("%s holds volume %s, the backup is of %s: %w", target, cur.UUID, h.UUID, ErrOtherVolume)
		case err == nil:
			if curSeg, err := cur.DataSegment(); err == nil && curSeg.Offset != seg.Offset {
				return fmt.Errorf("data offset differs: %d on %s, %d in the backup: %w", curSeg.Offset, target, seg.Offset, header.ErrInvalid)
			}
		}
		// Key slots first, then the secondary copy, then the primary,
		// each flushed.
		hs := h.Size
		for _, r := range [][2]int64{{2 * hs, int64(len(b))}, {hs, 2 * hs}, {0, hs}} {
			if _, err := f.WriteAt(b[r[0]:r[1]], r[0]); err != nil {
				return fmt.Errorf("restore header: %w", err)
			}
			if err := f.Sync(); err != nil {
				return fmt.Errorf("restore header: %w", err)
			}
		}
		return nil
	})
}
