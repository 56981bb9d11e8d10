package volume

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/binary"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"

	"github.com/volcrypt/volcrypt/crypt"
	"github.com/volcrypt/volcrypt/header"
	"github.com/volcrypt/volcrypt/internal/secret"
	"github.com/volcrypt/volcrypt/kdf"
)

// ReencryptOptions describe a change of volume key. Zero fields keep the
// volume's current cipher, key size and sector size.
type ReencryptOptions struct {
	Cipher      string
	KeySizeBits int
	SectorSize  int
	// Keep holds the passphrases of further key slots to keep (slot →
	// passphrase): each is re-wrapped with the new key under the same
	// passphrase and KDF, and tokens that name it (a TPM's) follow. The
	// slot the main passphrase opens is always kept. The old key's other
	// slots are removed when the reencryption ends.
	Keep map[int][]byte
	// HotzoneBytes is how much data is rewritten per step (4 MiB by default).
	HotzoneBytes int64
	Progress     func(Progress)
}

const defaultHotzone = 4 << 20

// Reencrypt gives the volume on path a new volume key and rewrites all its
// data with it, in place, or resumes an interrupted reencryption
// (volcrypt's or cryptsetup's) when passphrase opens it. Each step is
// protected by checksums of the hotzone in the reencrypt key slot's area
// (cryptsetup's "checksum" resilience), so an interruption at any point
// loses nothing.
func Reencrypt(ctx context.Context, path string, passphrase []byte, o ReencryptOptions) (*Volume, error) {
	f, l, err := openLocked(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	defer l.Unlock()
	h, err := header.Read(f)
	if err != nil {
		return nil, fmt.Errorf("read header of %s: %w", path, err)
	}
	if err := checkWritable(h); err != nil {
		return nil, err
	}
	var j *rekeyJob
	if _, k := h.Meta.ReencryptKeyslot(); k != nil {
		j, err = resumeRekeyJob(f, h, passphrase)
	} else {
		j, err = startRekeyJob(ctx, f, h, passphrase, o)
	}
	if err != nil {
		return nil, err
	}
	defer j.close()
	j.progress = o.Progress
	if err := j.run(ctx); err != nil {
		return nil, err
	}
	l.Unlock()
	f.Close()
	return Load(path, LoadOptions{})
}

// rekeyJob rewrites the data segment in place, forward, one hotzone at a
// time: decrypt with the old key, store checksums of the plain blocks,
// record the hotzone, encrypt with the new key, record the progress.
type rekeyJob struct {
	f                 *os.File
	h                 *header.Header
	oldKey, newKey    *secret.Buffer
	oldC, newC        *crypt.Cipher
	oldSeg, newSeg    header.Segment // backup-previous and backup-final
	oldDigest, digest int
	offset, size      int64 // data offset and logical size
	hotzone           int64
	block             int64 // checksum block size
	area              header.Area
	next              int64
	recover           bool // the hotzone at next needs checksum recovery
	progress          func(Progress)
}

func (j *rekeyJob) close() {
	for _, c := range []*crypt.Cipher{j.oldC, j.newC} {
		if c != nil {
			c.Wipe()
		}
	}
	for _, k := range []*secret.Buffer{j.oldKey, j.newKey} {
		if k != nil {
			k.Wipe()
		}
	}
}

func startRekeyJob(ctx context.Context, f *os.File, h *header.Header, passphrase []byte, o ReencryptOptions) (*rekeyJob, error) {
	seg, err := h.DataSegment()
	if err != nil {
		return nil, err
	}
	if len(h.Meta.Segments) != 1 || seg.Type != header.SegmentCrypt || !seg.Size.Dynamic || seg.IVTweak == nil || *seg.IVTweak != 0 {
		return nil, fmt.Errorf("%w: volcrypt reencrypts a volume with one dynamic crypt segment only", ErrNotInReencryption)
	}
	oldKey, slot, err := h.Unlock(f, passphrase, header.UnlockOptions{Keyslot: -1, Segment: 0, Limits: kdf.DefaultLimits()})
	if err != nil {
		return nil, err
	}
	j := &rekeyJob{f: f, h: h, oldKey: oldKey, oldSeg: *seg, offset: int64(seg.Offset), hotzone: o.HotzoneBytes}
	j.oldDigest, _ = h.Meta.SegmentDigest(0)
	fail := func(err error) (*rekeyJob, error) { j.close(); return nil, err }
	keep := map[int][]byte{slot: passphrase}
	for id, pass := range o.Keep {
		k, err := h.OpenKeyslot(f, id, pass, kdf.DefaultLimits())
		if err != nil {
			return fail(fmt.Errorf("key slot %d to keep: %w", id, err))
		}
		k.Wipe()
		keep[id] = pass
	}

	j.newSeg = *seg
	j.newSeg.Flags = nil
	if o.Cipher != "" {
		j.newSeg.Encryption = o.Cipher
	}
	if o.SectorSize != 0 {
		j.newSeg.SectorSize = o.SectorSize
	}
	keyLen := oldKey.Len()
	if o.KeySizeBits != 0 {
		keyLen = o.KeySizeBits / 8
	}
	j.newKey = secret.New(keyLen)
	if _, err := io.ReadFull(rand.Reader, j.newKey.Bytes()); err != nil {
		return fail(fmt.Errorf("volume key: %w", err))
	}
	if err := j.ciphers(); err != nil {
		return fail(err)
	}
	if err := j.checkFSBlock(); err != nil {
		return fail(err)
	}
	dev, err := deviceSize(f)
	if err != nil {
		return fail(err)
	}
	j.block = int64(max(j.oldSeg.SectorSize, j.newSeg.SectorSize))
	j.size = (dev - j.offset) / j.block * j.block
	if j.size <= 0 {
		return fail(fmt.Errorf("%s has no data to reencrypt: %w", f.Name(), ErrDeviceNotFound))
	}
	if j.hotzone <= 0 {
		j.hotzone = defaultHotzone
	}
	j.hotzone = max(j.hotzone/j.block*j.block, j.block)

	// The new key's digest and a twin of every kept slot, under the same
	// passphrase and KDF, bound to it.
	od := h.Meta.Digests[j.oldDigest]
	iter, err := kdf.DigestIterations(ctx, od.Hash, keyLen)
	if err != nil {
		return fail(err)
	}
	if j.digest, err = h.Meta.NewDigest(j.newKey.Bytes(), od.Hash, iter); err != nil {
		return fail(err)
	}
	for _, id := range slices.Sorted(maps.Keys(keep)) {
		old := h.Meta.Keyslots[id]
		twin, err := h.AddKeyslot(f, -1, keep[id], j.newKey.Bytes(), header.KeyslotParams{KDF: old.KDF.Params(), AFHash: old.AF.Hash, Priority: old.Priority})
		if err != nil {
			return fail(fmt.Errorf("re-wrap key slot %d: %w", id, err))
		}
		if err := h.CopyTokenKeyslot(id, twin); err != nil {
			return fail(err)
		}
	}
	hashes := (j.hotzone / j.block) * sha256.Size
	rid, err := h.AddReencryptKeyslot(header.ReencryptRekey, header.DirectionForward, "checksum", (hashes+4095)/4096*4096, 0)
	if err != nil {
		return fail(err)
	}
	k := h.Meta.Keyslots[rid]
	k.Area.Hash = "sha256"
	k.Area.SectorSize = int(j.block)
	j.area = k.Area
	j.setSegments(0, false)
	if err := h.SetReencryptDigest(oldKey.Bytes(), j.newKey.Bytes(), od.Hash, iter); err != nil {
		return fail(err)
	}
	if err := h.Write(f); err != nil {
		return fail(err)
	}
	return j, nil
}

func (j *rekeyJob) ciphers() error {
	var err error
	if j.oldC, err = crypt.New(j.oldSeg.Encryption, j.oldKey.Bytes(), j.oldSeg.SectorSize); err != nil {
		return err
	}
	if j.newC, err = crypt.New(j.newSeg.Encryption, j.newKey.Bytes(), j.newSeg.SectorSize); err != nil {
		return fmt.Errorf("%w: cipher %s with a %d-bit key: %v", kdf.ErrInvalidParams, j.newSeg.Encryption, j.newKey.Len()*8, err)
	}
	return nil
}

func resumeRekeyJob(f *os.File, h *header.Header, passphrase []byte) (*rekeyJob, error) {
	rid, k := h.Meta.ReencryptKeyslot()
	if k.Mode != header.ReencryptRekey || k.Direction != header.DirectionForward || k.Area.Type != "checksum" || k.Area.SectorSize <= 0 {
		return nil, fmt.Errorf("%w: %s holds a %s (%s, %s); volcrypt resumes forward reencryption with checksums only",
			ErrNotInReencryption, f.Name(), k.Mode, k.Direction, k.Area.Type)
	}
	if k.Area.Hash != "sha256" {
		return nil, fmt.Errorf("%w: checksum hash %s", ErrNotInReencryption, k.Area.Hash)
	}
	_ = rid
	pid, prev := h.Meta.SegmentByFlag(header.FlagBackupPrevious)
	fid, final := h.Meta.SegmentByFlag(header.FlagBackupFinal)
	if prev == nil || final == nil || prev.Type != header.SegmentCrypt || final.Type != header.SegmentCrypt {
		return nil, fmt.Errorf("%w: incomplete reencryption segments", ErrNotInReencryption)
	}
	j := &rekeyJob{f: f, h: h, oldSeg: *prev, newSeg: *final, offset: int64(final.Offset), area: k.Area, block: int64(k.Area.SectorSize)}
	j.oldSeg.Flags, j.newSeg.Flags = nil, nil
	fail := func(err error) (*rekeyJob, error) { j.close(); return nil, err }
	var err error
	if j.oldKey, _, err = h.Unlock(f, passphrase, header.UnlockOptions{Keyslot: -1, Segment: pid, Limits: kdf.DefaultLimits()}); err != nil {
		return fail(fmt.Errorf("old key: %w", err))
	}
	if j.newKey, _, err = h.Unlock(f, passphrase, header.UnlockOptions{Keyslot: -1, Segment: fid, Limits: kdf.DefaultLimits()}); err != nil {
		return fail(fmt.Errorf("new key: %w", err))
	}
	j.oldDigest, _ = h.Meta.SegmentDigest(pid)
	j.digest, _ = h.Meta.SegmentDigest(fid)
	if err := h.VerifyReencryptDigest(j.oldKey.Bytes(), j.newKey.Bytes()); err != nil {
		return fail(err)
	}
	if err := j.ciphers(); err != nil {
		return fail(err)
	}
	dev, err := deviceSize(f)
	if err != nil {
		return fail(err)
	}
	j.size = (dev - j.offset) / j.block * j.block
	j.hotzone = (int64(k.Area.Size) / sha256.Size) * j.block
	j.hotzone = min(j.hotzone, defaultHotzone)
	// Progress: the hotzone in progress, else the size of the new
	// segment at the start.
	_, hot := h.Meta.SegmentByFlag(header.FlagInReencryption)
	s0 := h.Meta.Segments[0]
	switch {
	case hot != nil && hot.IVTweak != nil && !hot.Size.Dynamic:
		j.next = int64(*hot.IVTweak) * 512
		if int64(hot.Size.Bytes)/j.block*sha256.Size > int64(k.Area.Size) {
			return fail(fmt.Errorf("%w: hotzone larger than its checksums", ErrNotInReencryption))
		}
		j.hotzone = int64(hot.Size.Bytes)
		j.recover = true
	case s0 != nil && h.Meta.Digests[j.digest].Segments.Contains(0):
		if s0.Size.Dynamic {
			j.next = j.size
		} else {
			j.next = int64(s0.Size.Bytes)
		}
	default:
		j.next = 0
	}
	return j, nil
}

// setSegments lays out the segments for progress p (bytes rewritten) and,
// when hot, the hotzone [p, p+hotzone) being rewritten.
func (j *rekeyJob) setSegments(p int64, hot bool) {
	m := j.h.Meta
	m.Segments = map[int]*header.Segment{}
	add := func(s header.Segment, logical, size int64, flags ...string) int {
		tweak := header.U64(logical / 512)
		s.Offset = header.U64(j.offset + logical)
		s.IVTweak = &tweak
		s.Flags = flags
		s.Size = header.SegmentSize{Dynamic: size < 0}
		if size >= 0 {
			s.Size.Bytes = uint64(size)
		}
		id := len(m.Segments)
		m.Segments[id] = &s
		return id
	}
	var oldIDs, newIDs []int
	switch {
	case p >= j.size:
		newIDs = append(newIDs, add(j.newSeg, 0, -1))
	default:
		if p > 0 {
			newIDs = append(newIDs, add(j.newSeg, 0, p))
		}
		rest := p
		if hot {
			end := min(p+j.hotzone, j.size)
			newIDs = append(newIDs, add(j.newSeg, p, end-p, header.FlagInReencryption))
			rest = end
		}
		if rest < j.size {
			oldIDs = append(oldIDs, add(j.oldSeg, rest, -1))
		}
	}
	oldIDs = append(oldIDs, add(j.oldSeg, 0, -1, header.FlagBackupPrevious))
	newIDs = append(newIDs, add(j.newSeg, 0, -1, header.FlagBackupFinal))
	m.Digests[j.oldDigest].Segments = oldIDs
	m.Digests[j.digest].Segments = newIDs
}

// run rewrites the remaining hotzones and finishes.
func (j *rekeyJob) run(ctx context.Context) error {
	buf := make([]byte, j.hotzone)
	defer secret.Wipe(buf)
	sums := make([]byte, j.area.Size)
	for p := j.next; p < j.size; {
		if err := ctx.Err(); err != nil {
			return err
		}
		end := min(p+j.hotzone, j.size)
		if int64(len(buf)) < end-p {
			buf = make([]byte, end-p)
		}
		b := buf[:end-p]
		if _, err := j.f.ReadAt(b, j.offset+p); err != nil {
			return fmt.Errorf("read data at %d: %w", j.offset+p, err)
		}
		if j.recover {
			if err := j.recoverHotzone(b, p); err != nil {
				return err
			}
			j.recover = false
		} else {
			// Checksums of the old blocks as they are on disk first, then
			// the hotzone in the metadata: after a crash from here on, a
			// block whose checksum still matches is old, any other new.
			n := (end - p) / j.block
			for i := range n {
				s := sha256.Sum256(b[i*j.block : (i+1)*j.block])
				copy(sums[i*sha256.Size:], s[:])
			}
			if err := writeSync(j.f, sums[:n*sha256.Size], int64(j.area.Offset)); err != nil {
				return fmt.Errorf("write hotzone checksums: %w", err)
			}
			j.setSegments(p, true)
			if err := j.h.Write(j.f); err != nil {
				return err
			}
			if err := j.oldC.Decrypt(b, b, uint64(p/512)); err != nil {
				return err
			}
		}
		if err := j.newC.Encrypt(b, b, uint64(p/512)); err != nil {
			return err
		}
		if err := writeSync(j.f, b, j.offset+p); err != nil {
			return fmt.Errorf("write data at %d: %w", j.offset+p, err)
		}
		p = end
		j.setSegments(p, false)
		if err := j.h.Write(j.f); err != nil {
			return err
		}
		if j.progress != nil {
			j.progress(Progress{DoneBytes: p, TotalBytes: j.size})
		}
	}
	return j.finish()
}

// recoverHotzone turns the raw hotzone b, each block either still old or
// already new, into plaintext, as cryptsetup's checksum recovery does: a
// block whose checksum matches the stored one is old.
func (j *rekeyJob) recoverHotzone(b []byte, p int64) error {
	n := int64(len(b)) / j.block
	sums := make([]byte, n*sha256.Size)
	if _, err := j.f.ReadAt(sums, int64(j.area.Offset)); err != nil {
		return fmt.Errorf("read hotzone checksums: %w", err)
	}
	for i := range n {
		raw := b[i*j.block : (i+1)*j.block]
		iv := uint64((p + i*j.block) / 512)
		s := sha256.Sum256(raw)
		c := j.newC
		if subtle.ConstantTimeCompare(s[:], sums[i*sha256.Size:(i+1)*sha256.Size]) == 1 {
			c = j.oldC
		}
		if err := c.Decrypt(raw, raw, iv); err != nil {
			return err
		}
	}
	return nil
}

// finish removes the old key's slots and digest and the reencryption
// metadata (tokens already name the new slots too), then wipes the old key
// material and the checksums.
func (j *rekeyJob) finish() error {
	h := j.h
	j.setSegments(j.size, false)
	var areas []header.Area
	if _, k := h.Meta.ReencryptKeyslot(); k != nil {
		areas = append(areas, k.Area)
	}
	for _, id := range slices.Clone(h.Meta.Digests[j.oldDigest].Keyslots) {
		a, err := h.RemoveKeyslot(id)
		if err != nil {
			return err
		}
		areas = append(areas, a)
	}
	delete(h.Meta.Digests, j.oldDigest)
	h.ClearReencrypt()
	h.Meta.Digests[j.digest].Segments = header.IDList{0}
	if err := h.Write(j.f); err != nil {
		return err
	}
	for _, a := range areas {
		if err := header.WipeArea(j.f, a); err != nil {
			return err
		}
	}
	return j.f.Sync()
}

// checkFSBlock refuses a sector size larger than the block size of an
// ext2/3/4 file system inside the volume: the kernel could not mount it
// on the new mapping.
func (j *rekeyJob) checkFSBlock() error {
	if j.newSeg.SectorSize <= j.oldSeg.SectorSize {
		return nil
	}
	head := make([]byte, 4096)
	defer secret.Wipe(head)
	if _, err := j.f.ReadAt(head, int64(j.oldSeg.Offset)); err != nil {
		return fmt.Errorf("read the start of the data: %w", err)
	}
	if err := j.oldC.Decrypt(head, head, 0); err != nil {
		return err
	}
	if binary.LittleEndian.Uint16(head[1024+56:]) != 0xef53 {
		return nil
	}
	if bs := 1024 << binary.LittleEndian.Uint32(head[1024+24:]); bs < j.newSeg.SectorSize {
		return fmt.Errorf("%w: the ext2/3/4 file system inside uses %d-byte blocks, smaller than the %d-byte sector size asked for: it could not be mounted", kdf.ErrInvalidParams, bs, j.newSeg.SectorSize)
	}
	return nil
}
