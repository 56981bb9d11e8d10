package volume

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/volcrypt/volcrypt/crypt"
	"github.com/volcrypt/volcrypt/header"
	"github.com/volcrypt/volcrypt/internal/secret"
	"github.com/volcrypt/volcrypt/kdf"
)

// DecryptOptions describe an in-place decryption.
type DecryptOptions struct {
	// HeaderFile receives the header for the time of the decryption (the
	// data moves down over the header's place on the device); it must not
	// exist when a decryption starts, and is removed when it ends. To
	// resume, pass the same file. When it is the detached header of the
	// volume instead, the data is decrypted where it is, and the file is
	// left with no key slot (as cryptsetup leaves it).
	HeaderFile string
	// Progress, when set, is called after each chunk.
	Progress func(Progress)
}

// Decrypt turns the LUKS2 volume on path back into its plain data, moved
// to the start of the device, and resumes an interrupted decryption when
// o.HeaderFile holds one. The volume's header moves to o.HeaderFile first
// (as cryptsetup 2.7 does for a decryption with a data shift); every step
// is recorded there, so an interruption at any point loses nothing.
func Decrypt(ctx context.Context, path string, passphrase []byte, o DecryptOptions) error {
	if o.HeaderFile == "" {
		return fmt.Errorf("%w: decryption moves the header to a file while it runs; name one with --header", ErrInvalidParams)
	}
	f, l, err := openLocked(path)
	if err != nil {
		return err
	}
	defer f.Close()
	defer l.Unlock()

	// A crash during the final clean-up leaves the renamed header file:
	// destroy it, and if the device holds no LUKS header any more the
	// decryption is finished.
	if _, err := os.Stat(o.HeaderFile + ".done"); err == nil {
		if err := destroyHeaderFile(o.HeaderFile + ".done"); err != nil {
			return err
		}
		if _, err := os.Stat(o.HeaderFile); errors.Is(err, os.ErrNotExist) {
			if _, err := header.Read(f); errors.Is(err, header.ErrNotLUKS) {
				return nil
			}
		}
	}
	if handled, err := decryptDetached(ctx, f, o.HeaderFile, passphrase, o.Progress); handled {
		return err
	}
	var j *unshiftJob
	if _, err := os.Stat(o.HeaderFile); err == nil {
		j, err = resumeUnshiftJob(f, o.HeaderFile, passphrase)
		if err != nil {
			return err
		}
	} else if errors.Is(err, os.ErrNotExist) {
		if j, err = startUnshiftJob(ctx, f, o.HeaderFile, passphrase); err != nil {
			return err
		}
	} else {
		return fmt.Errorf("header file: %w", err)
	}
	defer j.close()
	j.progress = o.Progress
	return j.run(ctx)
}

// unshiftJob is a decryption with a data shift, direction forward: the
// header lives in a file, and each hotzone of logical data [a, a+L) is
// read from physical a+shift, decrypted and written at physical a. L ≤
// shift, so the source of the hotzone in progress is never overwritten and
// redoing it after a crash is safe.
type unshiftJob struct {
	f, hf    *os.File
	hfPath   string
	h        *header.Header
	c        *crypt.Cipher
	digest   int
	shift    int64
	size     int64 // logical size of the data
	cipher   string
	sector   int
	next     int64 // logical start of the next hotzone; size when done
	progress func(Progress)
}

func (j *unshiftJob) close() {
	if j.c != nil {
		j.c.Wipe()
	}
	if j.hf != nil {
		j.hf.Close()
	}
}

func startUnshiftJob(ctx context.Context, f *os.File, hfPath string, passphrase []byte) (*unshiftJob, error) {
	h, err := header.Read(f)
	if err != nil {
		return nil, fmt.Errorf("read header of %s: %w", f.Name(), err)
	}
	if err := checkWritable(h); err != nil {
		return nil, err
	}
	if _, k := h.Meta.ReencryptKeyslot(); k != nil {
		return nil, fmt.Errorf("%w: %s is in the middle of a %s; finish it first", ErrNotInReencryption, f.Name(), k.Mode)
	}
	seg, err := singleCryptSegment(h, "decrypts")
	if err != nil {
		return nil, err
	}
	shift := int64(seg.Offset)
	if shift < h.KeyslotsEnd() {
		return nil, fmt.Errorf("%w: the data of %s starts at %d, inside the header area; in-place decryption of volumes with a detached header is not implemented", ErrInvalidParams, f.Name(), shift)
	}
	dev, err := deviceSize(f)
	if err != nil {
		return nil, err
	}
	size := dev - shift
	size -= size % int64(seg.SectorSize)
	vk, _, err := h.Unlock(f, passphrase, header.UnlockOptions{Keyslot: -1, Segment: 0, Limits: kdf.DefaultLimits()})
	if err != nil {
		return nil, err
	}
	defer vk.Wipe()
	j := &unshiftJob{f: f, hfPath: hfPath, h: h, shift: shift, size: size, cipher: seg.Encryption, sector: seg.SectorSize}
	j.digest, _ = h.Meta.SegmentDigest(0)
	if j.c, err = crypt.New(j.cipher, vk.Bytes(), j.sector); err != nil {
		return nil, err
	}
	if _, err := h.AddReencryptKeyslot(header.ReencryptDecrypt, header.DirectionForward, "datashift", 0, uint64(shift)); err != nil {
		j.close()
		return nil, err
	}
	j.setSegments(0)
	d := h.Meta.Digests[j.digest]
	if err := h.SetReencryptDigest(vk.Bytes(), nil, d.Hash, d.Iterations); err != nil {
		j.close()
		return nil, err
	}
	// The header with its key slots goes to the file first; only then is
	// the device's copy wiped, which the first hotzone overwrites anyway.
	// The file is written under a temporary name and renamed when complete,
	// so that a rerun after a crash finds either no file (and starts over
	// from the intact device header) or a complete one (and resumes).
	partial := hfPath + ".partial"
	hf, err := os.OpenFile(partial, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		j.close()
		return nil, fmt.Errorf("header file: %w", err)
	}
	j.hf = hf
	if err := j.exportHeader(); err != nil {
		j.close()
		os.Remove(partial)
		return nil, err
	}
	if err := os.Rename(partial, hfPath); err != nil {
		j.close()
		os.Remove(partial)
		return nil, fmt.Errorf("header file: %w", err)
	}
	if err := syncDir(filepath.Dir(hfPath)); err != nil {
		j.close()
		return nil, fmt.Errorf("header file: %w", err)
	}
	if err := zeroRange(f, 0, h.KeyslotsEnd()); err != nil {
		j.close()
		return nil, fmt.Errorf("wipe the header on %s: %w", f.Name(), err)
	}
	return j, nil
}

// exportHeader copies the header area to the header file and writes the
// new metadata there.
func (j *unshiftJob) exportHeader() error {
	area := make([]byte, j.h.KeyslotsEnd())
	defer secret.Wipe(area)
	if _, err := j.f.ReadAt(area, 0); err != nil {
		return fmt.Errorf("read header area: %w", err)
	}
	if _, err := j.hf.WriteAt(area, 0); err != nil {
		return fmt.Errorf("header file: %w", err)
	}
	if err := writeHeader(j.h, j.hf); err != nil {
		return fmt.Errorf("header file: %w", err)
	}
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

func resumeUnshiftJob(f *os.File, hfPath string, passphrase []byte) (*unshiftJob, error) {
	hf, err := openFile(hfPath, false)
	if err != nil {
		return nil, err
	}
	j := &unshiftJob{f: f, hf: hf, hfPath: hfPath}
	if err := j.load(passphrase); err != nil {
		j.close()
		return nil, err
	}
	return j, nil
}

func (j *unshiftJob) load(passphrase []byte) error {
	h, err := header.Read(j.hf)
	if err != nil {
		return fmt.Errorf("header file %s: %w", j.hfPath, err)
	}
	j.h = h
	_, k := h.Meta.ReencryptKeyslot()
	if k == nil || k.Mode != header.ReencryptDecrypt || k.Direction != header.DirectionForward || k.Area.Type != "datashift" || k.Area.ShiftSize == nil {
		return fmt.Errorf("%w: header file %s holds no decryption with a data shift; it must not exist when a decryption starts", ErrNotInReencryption, j.hfPath)
	}
	pid, prev := h.Meta.SegmentByFlag(header.FlagBackupPrevious)
	_, final := h.Meta.SegmentByFlag(header.FlagBackupFinal)
	if prev == nil || final == nil || prev.Type != header.SegmentCrypt || final.Type != header.SegmentLinear {
		return fmt.Errorf("%w: incomplete reencryption segments", ErrNotInReencryption)
	}
	vk, _, err := h.Unlock(j.hf, passphrase, header.UnlockOptions{Keyslot: -1, Segment: pid, Limits: kdf.DefaultLimits()})
	if err != nil {
		return err
	}
	defer vk.Wipe()
	if err := h.VerifyReencryptDigest(vk.Bytes(), nil); err != nil {
		return err
	}
	j.digest, _ = h.Meta.SegmentDigest(pid)
	j.shift = int64(*k.Area.ShiftSize)
	j.cipher, j.sector = prev.Encryption, prev.SectorSize
	dev, err := deviceSize(j.f)
	if err != nil {
		return err
	}
	j.size = dev - j.shift
	j.size -= j.size % int64(j.sector)
	if j.c, err = crypt.New(j.cipher, vk.Bytes(), j.sector); err != nil {
		return err
	}
	_, hot := h.Meta.SegmentByFlag(header.FlagInReencryption)
	switch s0 := h.Meta.Segments[0]; {
	case hot != nil && hot.Type == header.SegmentLinear:
		j.next = int64(hot.Offset)
	case s0 != nil && s0.Type == header.SegmentLinear && s0.Size.Dynamic:
		j.next = j.size
	default:
		return fmt.Errorf("%w: no hotzone in the reencryption segments", ErrNotInReencryption)
	}
	return nil
}

// setSegments lays out the segments for hotzone [a, a+shift) (all data
// plain when a ≥ size): plain data before it, the hotzone, the encrypted
// rest, then the backups of the old and new layouts.
func (j *unshiftJob) setSegments(a int64) {
	m := j.h.Meta
	add := newSegments(m)
	linear := func(off, size int64, flags ...string) *header.Segment {
		return &header.Segment{Type: header.SegmentLinear, Offset: header.U64(off), Size: header.SizeOf(size), Flags: flags}
	}
	cryptSeg := func(logical int64, flags ...string) *header.Segment {
		tweak := header.U64(logical / 512)
		return &header.Segment{Type: header.SegmentCrypt, Offset: header.U64(logical + j.shift), Size: header.SegmentSize{Dynamic: true},
			IVTweak: &tweak, Encryption: j.cipher, SectorSize: j.sector, Flags: flags}
	}
	var keyed []int
	if a >= j.size {
		add(linear(0, -1))
	} else {
		if a > 0 {
			add(linear(0, a))
		}
		end := min(a+j.shift, j.size)
		add(linear(a, end-a, header.FlagInReencryption))
		if end < j.size {
			keyed = append(keyed, add(cryptSeg(end)))
		}
	}
	prev := add(cryptSeg(0, header.FlagBackupPrevious))
	add(linear(0, -1, header.FlagBackupFinal))
	m.Digests[j.digest].Segments = append(header.IDList{prev}, keyed...)
}

// run decrypts the remaining hotzones, then wipes what is left of the
// encryption (the copy of the last shift bytes at the end of the device)
// and removes the header file.
func (j *unshiftJob) run(ctx context.Context) error {
	// Reading and decrypting the next hotzone overlaps writing the current
	// one: its source [a+2·shift, …) is never what the current hotzone's
	// write [a, a+shift) touches.
	var zones [][2]int64
	for a := j.next; a < j.size; a = min(a+j.shift, j.size) {
		zones = append(zones, [2]int64{a, min(a+j.shift, j.size)})
	}
	prepare := func(c *chunk) error {
		if _, err := j.f.ReadAt(c.b, c.start+j.shift); err != nil {
			return fmt.Errorf("read encrypted data at %d: %w", c.start+j.shift, err)
		}
		return j.c.Decrypt(c.b, c.b, uint64(c.start/512))
	}
	commit := func(c *chunk) error {
		if err := writeSync(j.f, c.b, c.start); err != nil {
			return fmt.Errorf("write plain data at %d: %w", c.start, err)
		}
		commitStage(stageData)
		if j.progress != nil {
			j.progress(Progress{DoneBytes: c.end, TotalBytes: j.size})
		}
		j.setSegments(c.end)
		if err := writeHeader(j.h, j.hf); err != nil {
			return err
		}
		commitStage(stageProgress)
		return nil
	}
	if err := pipeline(ctx, zones, j.shift, 0, prepare, commit); err != nil {
		return err
	}
	if err := zeroRange(j.f, j.size, j.size+j.shift); err != nil {
		return fmt.Errorf("wipe the encrypted leftovers: %w", err)
	}
	// The header file now guards nothing; its key slots go with it. It is
	// renamed first, so that a rerun after a crash from here on finds the
	// decryption finished and only completes this clean-up.
	j.hf.Close()
	j.hf = nil
	done := j.hfPath + ".done"
	if err := os.Rename(j.hfPath, done); err != nil {
		return fmt.Errorf("header file: %w", err)
	}
	if err := syncDir(filepath.Dir(j.hfPath)); err != nil {
		return err
	}
	commitStage(stageFinish)
	return destroyHeaderFile(done)
}

// destroyHeaderFile overwrites a finished decryption's header file with
// zeros and removes it.
func destroyHeaderFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("header file: %w", err)
	}
	size, err := deviceSize(f)
	if err == nil {
		err = zeroRange(f, 0, size)
	}
	f.Close()
	if err != nil {
		return fmt.Errorf("wipe header file: %w", err)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("remove header file: %w", err)
	}
	return syncDir(filepath.Dir(path))
}
