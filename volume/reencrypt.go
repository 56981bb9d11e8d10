package volume

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/volcrypt/volcrypt/crypt"
	"github.com/volcrypt/volcrypt/header"
	"github.com/volcrypt/volcrypt/internal/lock"
	"github.com/volcrypt/volcrypt/internal/secret"
	"github.com/volcrypt/volcrypt/kdf"
	"golang.org/x/sys/unix"
)

// ErrNotInReencryption means a volume carries no reencryption of the kind
// asked for, or its state is one volcrypt cannot resume.
var ErrNotInReencryption = errors.New("no resumable reencryption")

// Progress reports how far an in-place operation has come.
type Progress struct {
	DoneBytes, TotalBytes int64
}

// EncryptOptions describe an in-place encryption. The embedded format
// options choose the cipher, key size, KDF and header layout; their
// OffsetBytes and Force are ignored.
type EncryptOptions struct {
	FormatOptions
	// ReduceDeviceSizeBytes is the space at the end of the device that the
	// file system does not use (shrink it first). Half of it holds the
	// header at the start: the data moves up by ReduceDeviceSizeBytes/2,
	// as with cryptsetup reencrypt --encrypt --reduce-device-size. It must
	// be 0 with a detached header (FormatOptions.HeaderFile): then the data
	// stays where it is and is encrypted in place, hotzone by hotzone, as
	// with cryptsetup reencrypt --encrypt --header.
	ReduceDeviceSizeBytes int64
	// Progress, when set, is called after each chunk.
	Progress func(Progress)
}

// The commit stages of a hotzone in the in-place jobs, at which tests kill
// their child processes.
const (
	stageChecksums = "checksums" // the hotzone's checksums are durable
	stageHotzone   = "hotzone"   // the header naming the hotzone is durable
	stageData      = "data"      // the hotzone's new data is durable
	stageProgress  = "progress"  // the header recording it done is durable
	stageFinish    = "finish"    // the job's final clean-up has begun
	// the final header is durable, the old key slots not yet wiped
	stageFinishHeader = "finish-header"
)

// testKillPoint, set only in tests' child processes before a job starts,
// is called at each commit stage; it may end the process there.
var testKillPoint func(stage string)

// commitStage marks that stage of a hotzone's commit as reached.
func commitStage(stage string) {
	if testKillPoint != nil {
		testKillPoint(stage)
	}
}

// The largest data shift cryptsetup accepts.
const maxDataShift = 1 << 30

// Encrypt turns the plain data on path into a LUKS2 volume in place whose
// passphrase is passphrase. When path already carries volcrypt's or
// cryptsetup's interrupted encryption, it resumes it instead (passphrase
// must then open it). Every step is recorded in LUKS2's own reencryption
// metadata, so an interruption at any point loses nothing.
func Encrypt(ctx context.Context, path string, passphrase []byte, o EncryptOptions) (*Volume, error) {
	if o.HeaderFile != "" {
		return encryptDetached(ctx, path, passphrase, o)
	}
	f, l, err := openLocked(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	defer l.Unlock()

	var job *shiftJob
	h, err := header.Read(f)
	primary, secondary, merr := luks2Magic(f)
	if merr != nil {
		return nil, merr
	}
	switch {
	case err == nil && primary:
		job, err = resumeShiftJob(f, h, passphrase)
	case err == nil || primary || secondary > 0:
		// A header without its primary copy, or a damaged one: format
		// was interrupted before it wrote the primary copy (the last of
		// its writes). No data is encrypted yet and the head of the data
		// is safe in the moved segment: format again, without copying
		// the (partly overwritten) head over that copy.
		job, err = restartShiftJob(ctx, f, h, secondary, passphrase, o)
	case errors.Is(err, header.ErrNotLUKS):
		job, err = startShiftJob(ctx, f, passphrase, o, false)
	default:
		return nil, fmt.Errorf("read header of %s: %w", path, err)
	}
	if err != nil {
		return nil, err
	}
	job.progress = o.Progress
	return runToEnd(ctx, job, f, l, path, LoadOptions{Logger: o.Logger})
}

// runToEnd runs an in-place job to its end, releases the device and its
// lock, and loads the result.
func runToEnd(ctx context.Context, j interface {
	run(context.Context) error
	close()
}, f *os.File, l *lock.Lock, path string, lo LoadOptions) (*Volume, error) {
	defer j.close()
	if err := j.run(ctx); err != nil {
		return nil, err
	}
	l.Unlock()
	f.Close()
	return Load(path, lo)
}

// openLocked opens a device or image for an in-place operation and takes
// cryptsetup's exclusive lock on it for the whole run.
func openLocked(path string) (*os.File, *lock.Lock, error) {
	f, err := openFile(path, false)
	if err != nil {
		return nil, nil, err
	}
	l, err := lock.Exclusive(path)
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return f, l, nil
}

// shiftJob is an encryption with a data shift: cryptsetup's "datashift"
// resilience, direction backward. The first shift bytes of the plain data
// are first copied to the end of the device (the moved segment) and the
// header written in their place; then, from the end towards the start,
// each hotzone of logical data [a, a+L) is read from physical a (or from
// the moved segment) and written encrypted at a+shift. The source of the
// hotzone is never overwritten while it is in progress (L ≤ shift), so
// redoing it after a crash is always safe.
type shiftJob struct {
	f        *os.File
	h        *header.Header
	c        *crypt.Cipher
	vk       *secret.Buffer
	digest   int   // the volume key's digest
	shift    int64 // bytes: data offset of the new layout
	size     int64 // logical size of the data (device size - 2×shift)
	moved    int64 // physical offset of the moved segment
	hotzone  int64
	next     int64 // logical start of the next hotzone; -1 when done
	cipher   string
	sector   int
	progress func(Progress)
	// formatted: this run wrote the header, zeroing the free key-slot area.
	formatted bool
}

func (j *shiftJob) close() {
	if j.c != nil {
		j.c.Wipe()
	}
	if j.vk != nil {
		j.vk.Wipe()
	}
}

// withDefaults returns o with format's defaults for the cipher, key size
// and hash it leaves empty.
func (o EncryptOptions) withDefaults() EncryptOptions {
	if o.Cipher == "" {
		o.Cipher = header.DefaultEncryption
	}
	if o.KeySizeBits == 0 {
		o.KeySizeBits = 512
	}
	if o.Hash == "" {
		o.Hash = header.DefaultHash
	}
	return o
}

// startShiftJob formats the header of an encryption with a data shift
// over the head of the plain data, first copying that head to the moved
// segment unless copied says it is there already.
func startShiftJob(ctx context.Context, f *os.File, passphrase []byte, o EncryptOptions, copied bool) (*shiftJob, error) {
	r := o.ReduceDeviceSizeBytes
	if r <= 0 {
		return nil, fmt.Errorf("%w: in-place encryption needs --reduce-device-size (space freed at the end of the device for the header)", ErrInvalidParams)
	}
	if r%(2*4096) != 0 || r/2 > maxDataShift {
		return nil, fmt.Errorf("%w: --reduce-device-size %d must be a multiple of 8 KiB up to 2 GiB", ErrInvalidParams, r)
	}
	shift := r / 2
	dev, err := deviceSize(f)
	if err != nil {
		return nil, err
	}
	sector := o.SectorSize
	if sector == 0 {
		// 512-byte sectors keep every file system block size working.
		sector = 512
	}
	size := dev - 2*shift
	if size <= 0 || size%int64(sector) != 0 {
		return nil, fmt.Errorf("%s is %d bytes: too small for --reduce-device-size %d, or not a multiple of the %d-byte sector: %w", f.Name(), dev, r, sector, ErrDeviceNotFound)
	}
	if fs, ok, err := ext4Size(f); err != nil {
		return nil, err
	} else if ok && fs > size {
		return nil, fmt.Errorf("%w: the file system on %s is %d bytes but only %d fit after reducing the device by %d; shrink it first (resize2fs)", ErrInvalidParams, f.Name(), fs, size, r)
	}
	o = o.withDefaults()
	keyLen := o.KeySizeBits / 8
	j := &shiftJob{f: f, shift: shift, size: size, moved: dev - shift, hotzone: shift, cipher: o.Cipher, sector: sector}
	j.vk = secret.New(keyLen)
	if _, err := io.ReadFull(rand.Reader, j.vk.Bytes()); err != nil {
		j.close()
		return nil, fmt.Errorf("volume key: %w", err)
	}
	if err := j.format(ctx, passphrase, o, copied); err != nil {
		j.close()
		return nil, err
	}
	return j, nil
}

// format builds the header in memory, moves the head of the data to the
// moved segment and writes the header over it.
func (j *shiftJob) format(ctx context.Context, passphrase []byte, o EncryptOptions, copied bool) error {
	iter, err := digestIterations(ctx, o.KDF, o.Hash, j.vk.Len())
	if err != nil {
		return err
	}
	h, err := header.New(j.vk.Bytes(), header.NewOptions{
		UUID: o.UUID, Label: o.Label, Subsystem: o.Subsystem,
		MetadataSizeBytes: o.MetadataSizeBytes, KeyslotsSizeBytes: o.KeyslotsSizeBytes,
		DataOffsetBytes: j.shift, Encryption: o.Cipher, SectorSize: j.sector, DigestHash: o.Hash, DigestIterations: iter,
	})
	if err != nil {
		return err
	}
	if h.KeyslotsEnd() > j.shift {
		return fmt.Errorf("%w: header and key slots (%d bytes) do not fit the %d-byte shift; use a larger --reduce-device-size", ErrInvalidParams, h.KeyslotsEnd(), j.shift)
	}
	p, err := o.KDF.Resolve(ctx, j.vk.Len())
	if err != nil {
		return err
	}
	img := &memImage{b: make([]byte, h.KeyslotsEnd())}
	defer secret.Wipe(img.b)
	if _, err := h.AddKeyslot(img, o.Keyslot, passphrase, j.vk.Bytes(), header.KeyslotParams{KDF: p, AFHash: o.Hash}); err != nil {
		return err
	}
	if _, err := h.AddReencryptKeyslot(header.ReencryptEncrypt, header.DirectionBackward, "datashift", 0, uint64(j.shift)); err != nil {
		return err
	}
	j.h = h
	j.digest, _ = h.Meta.SegmentDigest(0)
	j.next = (j.size - 1) / j.hotzone * j.hotzone
	j.setSegments(j.next)
	if err := h.SetReencryptDigest(nil, j.vk.Bytes(), o.Hash, iter); err != nil {
		return err
	}
	if err := h.Write(img); err != nil {
		return err
	}
	if j.c, err = crypt.New(j.cipher, j.vk.Bytes(), j.sector); err != nil {
		return err
	}
	// Copy the head to the moved segment; until a header copy exists a
	// rerun starts over and copies it again.
	if !copied {
		if err := copyRange(j.f, j.moved, 0, j.shift); err != nil {
			return fmt.Errorf("move the start of the data: %w", err)
		}
	}
	// Each write below is flushed before the next one starts. The
	// secondary copy first: from then on a rerun sees a LUKS2 magic and
	// never copies the head again (see Encrypt). Then the key slots, the
	// zeros over the plain data up to the data offset (its copy is safe in
	// the moved segment) and, last, the primary copy: while it is missing a
	// rerun formats again (restartShiftJob).
	// Its first sector, with the magic, is written alone: sector writes
	// are atomic, so no byte of the head changes before the magic is there.
	if err := j.formatWrite(img.b[h.Size:h.Size+512], h.Size); err != nil {
		return fmt.Errorf("write header: %w", err)
	}
	if err := j.formatWrite(img.b[h.Size+512:2*h.Size], h.Size+512); err != nil {
		return fmt.Errorf("write header: %w", err)
	}
	j.formatted = true
	if err := j.formatWrite(img.b[2*h.Size:], 2*h.Size); err != nil {
		return fmt.Errorf("write key slots: %w", err)
	}
	zeros := make([]byte, 1<<20)
	for off := h.KeyslotsEnd(); off < j.shift; {
		n := min(int64(len(zeros)), j.shift-off)
		if err := j.formatWrite(zeros[:n], off); err != nil {
			return fmt.Errorf("wipe the plain data under the header: %w", err)
		}
		off += n
	}
	if err := j.formatWrite(img.b[:h.Size], 0); err != nil {
		return fmt.Errorf("write header: %w", err)
	}
	return nil
}

// formatTestHook, set only by tests, sees each write of shiftJob.format
// before it is made. It can simulate a power cut: it returns the part of
// the write that reaches the device (at off) and true, and format then
// stops with errSimulatedCrash.
var formatTestHook func(p []byte, off int64) (part []byte, partOff int64, crash bool)

// errSimulatedCrash is the error of a write formatTestHook cut.
var errSimulatedCrash = errors.New("simulated power cut")

// formatWrite writes p at off and flushes it.
func (j *shiftJob) formatWrite(p []byte, off int64) error {
	if formatTestHook != nil {
		if part, partOff, crash := formatTestHook(p, off); crash {
			if err := writeSync(j.f, part, partOff); err != nil {
				return err
			}
			return errSimulatedCrash
		}
	}
	return writeSync(j.f, p, off)
}

// LUKS2 header copies' magics.
var (
	luks2PrimaryMagic   = []byte{'L', 'U', 'K', 'S', 0xba, 0xbe}
	luks2SecondaryMagic = []byte{'S', 'K', 'U', 'L', 0xba, 0xbe}
)

// luks2Magic reports whether f starts with a LUKS header's magic and the
// first legal offset holding a secondary copy's magic (0: none), checksums
// aside.
func luks2Magic(f io.ReaderAt) (primary bool, secondary int64, err error) {
	b := make([]byte, len(luks2PrimaryMagic))
	has := func(off int64, magic []byte) (bool, error) {
		if _, err := f.ReadAt(b, off); err != nil {
			if errors.Is(err, io.EOF) {
				return false, nil
			}
			return false, fmt.Errorf("read header magic: %w", err)
		}
		return bytes.Equal(b, magic), nil
	}
	if primary, err = has(0, luks2PrimaryMagic); err != nil {
		return false, 0, err
	}
	for _, off := range header.HeaderSizes {
		ok, err := has(off, luks2SecondaryMagic)
		if err != nil {
			return false, 0, err
		}
		if ok {
			return primary, off, nil
		}
	}
	return primary, 0, nil
}

// restartShiftJob formats again after a format that was interrupted before
// it wrote the primary header copy (h: the secondary copy, when valid;
// secondary: where a secondary magic is). It first checks that the moved
// segment is a copy of the head for the shift it uses, where format has not
// written yet, and refuses otherwise: copying the head again could copy
// damaged data over the only good copy.
func restartShiftJob(ctx context.Context, f *os.File, h *header.Header, secondary int64, passphrase []byte, o EncryptOptions) (*shiftJob, error) {
	dev, err := deviceSize(f)
	if err != nil {
		return nil, err
	}
	shift := o.ReduceDeviceSizeBytes / 2
	hdrSize := secondary
	untouched := [][2]int64{}
	if h != nil {
		_, k := h.Meta.ReencryptKeyslot()
		if k == nil || k.Mode != header.ReencryptEncrypt || k.Area.Type != "datashift" || k.Area.ShiftSize == nil {
			return nil, fmt.Errorf("%w: %s has a LUKS header without its primary copy and no encryption to resume; repair it first", ErrNotInReencryption, f.Name())
		}
		if s := int64(*k.Area.ShiftSize); shift == 0 {
			shift = s
		} else if s != shift {
			return nil, fmt.Errorf("%w: the interrupted encryption of %s moves the data by %d bytes: use --reduce-device-size %d", ErrInvalidParams, f.Name(), s, 2*s)
		}
		// The header names the moved segment: no comparison needed (the
		// key slots, zeros and primary copy may all be partly written).
		hdrSize = h.Size
		if _, m := h.Meta.SegmentByFlag(header.FlagBackupMoved); m == nil || int64(m.Offset)+shift != dev {
			return nil, fmt.Errorf("%w: the interrupted encryption of %s has no moved segment at its end", ErrNotInReencryption, f.Name())
		}
		// Format writes the primary copy before the first hotzone: a
		// header past that state lost its primary copy otherwise, and
		// formatting again would take encrypted data for plain.
		if !formatState(h, shift) {
			return nil, fmt.Errorf("%w: %s has lost the primary copy of its header in the middle of an encryption; repair it first (cryptsetup repair)", ErrNotInReencryption, f.Name())
		}
	} else if hdrSize > 0 {
		// Only the secondary copy may have been written (torn).
		untouched = append(untouched, [2]int64{0, hdrSize}, [2]int64{2 * hdrSize, shift})
	}
	if hdrSize == 0 || shift <= 0 || 2*hdrSize > shift || dev < 2*shift {
		return nil, fmt.Errorf("%w: %s holds a damaged LUKS header; refusing to encrypt over it (restore it, or wipe it if it is stale)", ErrNotInReencryption, f.Name())
	}
	moved := dev - shift
	a, b := make([]byte, 1<<20), make([]byte, 1<<20)
	defer secret.Wipe(a)
	defer secret.Wipe(b)
	for _, r := range untouched {
		for off := r[0]; off < r[1]; {
			n := min(int64(len(a)), r[1]-off)
			if _, err := f.ReadAt(a[:n], off); err != nil {
				return nil, fmt.Errorf("read %s: %w", f.Name(), err)
			}
			if _, err := f.ReadAt(b[:n], moved+off); err != nil {
				return nil, fmt.Errorf("read %s: %w", f.Name(), err)
			}
			if !bytes.Equal(a[:n], b[:n]) {
				return nil, fmt.Errorf("%w: %s holds a damaged LUKS header and the end of the device is not a copy of its start for a %d-byte shift; refusing to encrypt over it", ErrNotInReencryption, f.Name(), shift)
			}
			off += n
		}
	}
	o.ReduceDeviceSizeBytes = 2 * shift
	return startShiftJob(ctx, f, passphrase, o, true)
}

// formatState reports whether h is the header shiftJob.format writes:
// the first hotzone (the end of the data) in progress and no data
// encrypted.
func formatState(h *header.Header, shift int64) bool {
	_, prev := h.Meta.SegmentByFlag(header.FlagBackupPrevious)
	if prev == nil || prev.Size.Dynamic || prev.Size.Bytes == 0 {
		return false
	}
	first := (int64(prev.Size.Bytes) - 1) / shift * shift
	hot := false
	for _, s := range h.Meta.Segments {
		if s.Type != header.SegmentCrypt || slices.ContainsFunc(s.Flags, isBackupFlag) {
			continue
		}
		if s.IVTweak == nil || int64(*s.IVTweak)*512 != first || !slices.Contains(s.Flags, header.FlagInReencryption) {
			return false
		}
		hot = true
	}
	return hot
}

func resumeShiftJob(f *os.File, h *header.Header, passphrase []byte) (*shiftJob, error) {
	_, k := h.Meta.ReencryptKeyslot()
	if k == nil {
		return nil, fmt.Errorf("%s is already a LUKS volume with no encryption to resume: %w", f.Name(), ErrNotInReencryption)
	}
	if k.Mode != header.ReencryptEncrypt || k.Direction != header.DirectionBackward || k.Area.Type != "datashift" || k.Area.ShiftSize == nil {
		return nil, fmt.Errorf("%w: %s holds a %s reencryption (%s, %s); volcrypt resumes encryption with a data shift only",
			ErrNotInReencryption, f.Name(), k.Mode, k.Direction, k.Area.Type)
	}
	fid, final := h.Meta.SegmentByFlag(header.FlagBackupFinal)
	_, prev := h.Meta.SegmentByFlag(header.FlagBackupPrevious)
	_, moved := h.Meta.SegmentByFlag(header.FlagBackupMoved)
	if final == nil || prev == nil || moved == nil || final.Type != header.SegmentCrypt || prev.Size.Dynamic {
		return nil, fmt.Errorf("%w: incomplete reencryption segments", ErrNotInReencryption)
	}
	vk, _, err := h.Unlock(f, passphrase, header.UnlockOptions{Keyslot: -1, Segment: fid, Limits: kdf.DefaultLimits()})
	if err != nil {
		return nil, err
	}
	j := &shiftJob{f: f, h: h, vk: vk, shift: int64(*k.Area.ShiftSize), size: int64(prev.Size.Bytes),
		moved: int64(moved.Offset), cipher: final.Encryption, sector: final.SectorSize}
	j.hotzone = j.shift
	j.digest, _ = h.Meta.SegmentDigest(fid)
	if err := h.VerifyReencryptDigest(nil, vk.Bytes()); err != nil {
		j.close()
		return nil, err
	}
	if j.c, err = crypt.New(j.cipher, vk.Bytes(), j.sector); err != nil {
		j.close()
		return nil, err
	}
	// Where to go on: the hotzone in progress, or the end when the data
	// segment is already whole.
	_, hot := h.Meta.SegmentByFlag(header.FlagInReencryption)
	switch s0 := h.Meta.Segments[0]; {
	case hot != nil && hot.IVTweak != nil && !hot.Size.Dynamic && int64(hot.Size.Bytes) <= j.shift:
		j.next = int64(*hot.IVTweak) * 512
		j.hotzone = int64(hot.Size.Bytes)
	case s0 != nil && s0.Type == header.SegmentCrypt && s0.Size.Dynamic:
		j.next = -1
	default:
		// A clean state (cryptsetup writes one before its first hotzone):
		// the encrypted data starts at the first crypt segment in use.
		enc := j.size
		for id := range len(h.Meta.Segments) {
			s, ok := h.Meta.Segments[id]
			if !ok || slices.ContainsFunc(s.Flags, isBackupFlag) {
				break
			}
			if s.Type == header.SegmentCrypt && s.IVTweak != nil {
				enc = int64(*s.IVTweak) * 512
				break
			}
		}
		if enc <= 0 || enc > j.size {
			j.close()
			return nil, fmt.Errorf("%w: no hotzone in the reencryption segments", ErrNotInReencryption)
		}
		j.next = (enc - 1) / j.shift * j.shift
		j.hotzone = enc - j.next
		j.setSegments(j.next)
		if err := writeHeader(h, f); err != nil {
			j.close()
			return nil, err
		}
	}
	return j, nil
}

// newSegments empties m's segments and returns a function that adds s as
// the next segment (ids count from 0, as cryptsetup numbers them) and
// returns its id.
func newSegments(m *header.Metadata) func(s *header.Segment) int {
	m.Segments = map[int]*header.Segment{}
	return func(s *header.Segment) int {
		id := len(m.Segments)
		m.Segments[id] = s
		return id
	}
}

// setSegments writes the segment layout for hotzone [a, a+hotzone) being
// rewritten into the header's metadata (not to disk), as cryptsetup lays
// it out: plain data before the hotzone (the moved head, then data in
// place), the hotzone, the encrypted data after it, then the backups.
func (j *shiftJob) setSegments(a int64) {
	m := j.h.Meta
	add := newSegments(m)
	cryptSeg := func(logical, size int64, flags ...string) *header.Segment {
		tweak := header.U64(logical / 512)
		return &header.Segment{Type: header.SegmentCrypt, Offset: header.U64(logical + j.shift), Size: header.SizeOf(size),
			IVTweak: &tweak, Encryption: j.cipher, SectorSize: j.sector, Flags: flags}
	}
	linear := func(off, size int64, flags ...string) *header.Segment {
		return &header.Segment{Type: header.SegmentLinear, Offset: header.U64(off), Size: header.SegmentSize{Bytes: uint64(size)}, Flags: flags}
	}
	var keyed []int
	if a < 0 {
		keyed = append(keyed, add(cryptSeg(0, -1)))
	} else {
		if a > 0 {
			add(linear(j.moved, min(a, j.shift)))
		}
		if a > j.shift {
			add(linear(j.shift, a-j.shift))
		}
		end := min(a+j.hotzone, j.size)
		keyed = append(keyed, add(cryptSeg(a, end-a, header.FlagInReencryption)))
		if end < j.size {
			keyed = append(keyed, add(cryptSeg(end, j.size-end)))
		}
	}
	add(linear(0, j.size, header.FlagBackupPrevious))
	final := add(cryptSeg(0, -1, header.FlagBackupFinal))
	add(linear(j.moved, j.shift, header.FlagBackupMoved))
	m.Digests[j.digest].Segments = append(header.IDList{final}, keyed...)
}

// run rewrites the remaining hotzones and finishes. Reading and
// encrypting the next hotzone overlaps writing the current one: its
// source [a-shift, a) (or the moved segment) is never what the current
// hotzone's write [a+shift, …) or the header touches.
func (j *shiftJob) run(ctx context.Context) error {
	var zones [][2]int64
	for a, hz := j.next, j.hotzone; a >= 0; {
		zones = append(zones, [2]int64{a, min(a+hz, j.size)})
		if a == 0 {
			break
		}
		next := (a - 1) / j.shift * j.shift
		a, hz = next, a-next
	}
	prepare := func(c *chunk) error {
		src := c.start
		if c.start < j.shift {
			src = j.moved + c.start
		}
		if _, err := j.f.ReadAt(c.b, src); err != nil {
			return fmt.Errorf("read plain data at %d: %w", src, err)
		}
		return j.c.Encrypt(c.b, c.b, uint64(c.start/512))
	}
	commit := func(c *chunk) error {
		a := c.start
		if err := writeSync(j.f, c.b, a+j.shift); err != nil {
			return fmt.Errorf("write encrypted data at %d: %w", a+j.shift, err)
		}
		commitStage(stageData)
		if j.progress != nil {
			j.progress(Progress{DoneBytes: j.size - a, TotalBytes: j.size})
		}
		if a == 0 {
			// All data is encrypted: record it before wiping the moved
			// segment, which a redo of this hotzone would read.
			j.setSegments(-1)
		} else {
			// The next hotzone ends where this one starts.
			next := (a - 1) / j.shift * j.shift
			j.hotzone = a - next
			j.setSegments(next)
		}
		if err := writeHeader(j.h, j.f); err != nil {
			return err
		}
		commitStage(stageProgress)
		return nil
	}
	if err := pipeline(ctx, zones, max(j.shift, j.hotzone), 0, prepare, commit); err != nil {
		return err
	}
	return j.finish()
}

// finish wipes the plain data left in the moved segment (and, for a run
// started elsewhere, in the unused key-slot area; format zeroes it), then
// writes the final header without reencryption metadata. It runs from the
// state where all data is encrypted (as cryptsetup leaves it too), so a
// rerun after a crash wipes again.
func (j *shiftJob) finish() error {
	commitStage(stageFinish)
	j.setSegments(-1)
	j.h.ClearReencrypt()
	j.h.Meta.Digests[j.digest].Segments = header.IDList{0}
	if !j.formatted {
		if err := zeroRange(j.f, usedAreaEnd(j.h), j.h.KeyslotsEnd()); err != nil {
			return fmt.Errorf("wipe the free key-slot area: %w", err)
		}
		if err := zeroRange(j.f, j.h.KeyslotsEnd(), j.shift); err != nil {
			return fmt.Errorf("wipe the plain data under the header: %w", err)
		}
	}
	if err := zeroRange(j.f, j.moved, j.moved+j.shift); err != nil {
		return fmt.Errorf("wipe the moved copy of the data: %w", err)
	}
	return writeHeader(j.h, j.f)
}

// digestIterations returns the PBKDF2 iterations of a new volume key's
// digest: calibrated, or the minimum when the key slot's KDF cost is forced
// (no benchmark at all then, as cryptsetup does with
// --pbkdf-force-iterations).
func digestIterations(ctx context.Context, o KDFOptions, hash string, keyLen int) (uint32, error) {
	if o.ForceIterations > 0 {
		return kdf.MinPBKDF2Iterations, nil
	}
	return kdf.DigestIterations(ctx, hash, keyLen)
}

// usedAreaEnd is the end of the last key slot's area (at least the end of
// the secondary header copy).
func usedAreaEnd(h *header.Header) int64 {
	end := 2 * h.Size
	for _, k := range h.Meta.Keyslots {
		end = max(end, int64(k.Area.Offset)+int64(k.Area.Size))
	}
	return end
}

// memImage is an in-memory header area: the header is built there and
// then written to the device in a crash-safe order.
type memImage struct{ b []byte }

func (m *memImage) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(m.b)) {
		return 0, fmt.Errorf("header image: write [%d, %d) outside %d bytes", off, off+int64(len(p)), len(m.b))
	}
	return copy(m.b[off:], p), nil
}

func (m *memImage) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off >= int64(len(m.b)) {
		return 0, io.EOF
	}
	n := copy(p, m.b[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// writeSync writes p at off and flushes it to stable storage.
func writeSync(f *os.File, p []byte, off int64) error {
	if _, err := f.WriteAt(p, off); err != nil {
		return err
	}
	return datasync(f)
}

// datasync flushes f's data (and the size, should it have changed) to
// stable storage with fdatasync: in-place operations rewrite data, so the
// journal commit of an image file's times that fsync adds to every flush
// buys nothing.
func datasync(f *os.File) error {
	for {
		err := unix.Fdatasync(int(f.Fd()))
		if !errors.Is(err, unix.EINTR) {
			if err != nil {
				return &os.PathError{Op: "fdatasync", Path: f.Name(), Err: err}
			}
			return nil
		}
	}
}

// dataSyncFile is a file whose Sync is datasync, for header.Write.
type dataSyncFile struct{ *os.File }

func (d dataSyncFile) Sync() error { return datasync(d.File) }

// writeHeader writes both copies of h to f, each flushed with datasync.
func writeHeader(h *header.Header, f *os.File) error {
	return h.Write(dataSyncFile{f})
}

// copyRange copies n bytes from src to dst on f (non-overlapping) and
// flushes.
func copyRange(f *os.File, dst, src, n int64) error {
	buf := make([]byte, min(n, 4<<20))
	defer secret.Wipe(buf)
	for done := int64(0); done < n; {
		b := buf[:min(int64(len(buf)), n-done)]
		if _, err := f.ReadAt(b, src+done); err != nil {
			return err
		}
		if _, err := f.WriteAt(b, dst+done); err != nil {
			return err
		}
		done += int64(len(b))
	}
	return datasync(f)
}

// ext4Size returns the size of an ext2/3/4 file system on r, and false
// when r holds none.
func ext4Size(r io.ReaderAt) (int64, bool, error) {
	sb := make([]byte, 1024)
	if _, err := r.ReadAt(sb, 1024); err != nil {
		if errors.Is(err, io.EOF) {
			return 0, false, nil
		}
		return 0, false, fmt.Errorf("read file system superblock: %w", err)
	}
	if binary.LittleEndian.Uint16(sb[56:]) != 0xef53 {
		return 0, false, nil
	}
	blocks := uint64(binary.LittleEndian.Uint32(sb[4:]))
	if binary.LittleEndian.Uint32(sb[96:])&0x80 != 0 { // INCOMPAT_64BIT
		blocks |= uint64(binary.LittleEndian.Uint32(sb[0x150:])) << 32
	}
	logBlock := binary.LittleEndian.Uint32(sb[24:])
	if logBlock > 6 {
		return 0, false, nil
	}
	return int64(blocks) << (10 + logBlock), true, nil
}

func isBackupFlag(f string) bool {
	return f == header.FlagBackupPrevious || f == header.FlagBackupFinal || f == header.FlagBackupMoved
}

// ReencryptionMode returns the mode (header.ReencryptEncrypt, …) of the
// reencryption in progress on path, or "" when there is none or path holds
// no LUKS header.
func ReencryptionMode(path string) (string, error) {
	f, err := openFile(path, true)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h, err := header.Read(f)
	if errors.Is(err, header.ErrNotLUKS) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read header of %s: %w", path, err)
	}
	_, k := h.Meta.ReencryptKeyslot()
	if k == nil {
		return "", nil
	}
	return k.Mode, nil
}
