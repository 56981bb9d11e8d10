package volume

import (
	"cmp"
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
	// HeaderFile is the volume's detached header, if it has one.
	HeaderFile string
	Progress   func(Progress)
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
	hf, err := openHeaderFile(f, o.HeaderFile)
	if err != nil {
		return nil, err
	}
	if hf != f {
		defer hf.Close()
	}
	h, err := header.Read(hf)
	if err != nil {
		return nil, fmt.Errorf("read header of %s: %w", hf.Name(), err)
	}
	if err := checkWritable(h); err != nil {
		return nil, err
	}
	if hf != f {
		if _, err := header.Read(f); err == nil {
			return nil, fmt.Errorf("%w: %s holds a LUKS header of its own: %s looks like a copy of it (reencrypting would leave the device's header stale); drop --header", ErrInvalidParams, path, hf.Name())
		}
	}
	var j *rekeyJob
	if _, k := h.Meta.ReencryptKeyslot(); k != nil {
		if k.Mode != header.ReencryptRekey {
			return nil, fmt.Errorf("%w: %s is in the middle of a %s; finish that first", ErrNotInReencryption, path, k.Mode)
		}
		j, err = resumeRekeyJob(f, hf, h, passphrase)
	} else {
		j, err = startRekeyJob(ctx, f, hf, h, passphrase, o)
	}
	if err != nil {
		return nil, err
	}
	j.progress = o.Progress
	return runToEnd(ctx, j, f, l, path, LoadOptions{HeaderFile: o.HeaderFile})
}

// openHeaderFile opens a detached header for writing, or returns f when
// there is none.
func openHeaderFile(f *os.File, path string) (*os.File, error) {
	if path == "" {
		return f, nil
	}
	return openFile(path, false)
}

// rekeyJob rewrites the data segment in place, forward, one hotzone at a
// time, with cryptsetup's "checksum" resilience: store checksums of the
// blocks as they are on disk, record the hotzone, decrypt with the old key,
// encrypt with the new key, record the progress. Either side may be plain
// (a linear segment, no key, no digest): then it is an encryption (old
// side plain) or a decryption (new side plain) without a data shift, as
// cryptsetup does them with a detached header.
type rekeyJob struct {
	f, hf             *os.File // the data device and the header (f unless detached)
	h                 *header.Header
	oldKey, newKey    *secret.Buffer // nil for a plain side
	oldC, newC        *crypt.Cipher  // nil for a plain side
	oldSeg, newSeg    header.Segment // backup-previous and backup-final
	oldDigest, digest int            // -1 for a plain side
	offset, size      int64          // data offset and logical size
	hotzone           int64
	block             int64 // checksum block size
	area              header.Area
	// next is where the remaining work starts: the start of the first
	// hotzone, or its end when backward.
	next      int64
	backward  bool  // from the end of the data towards its start (cryptsetup's decryption)
	recover   bool  // the hotzone at recoverAt needs checksum recovery
	recoverAt int64 // logical start of that hotzone
	progress  func(Progress)
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

// singleCryptSegment returns the data segment of a volume that is not in
// the middle of anything: one dynamic crypt segment.
func singleCryptSegment(h *header.Header, what string) (*header.Segment, error) {
	seg, err := h.DataSegment()
	if err != nil {
		return nil, err
	}
	if len(h.Meta.Segments) != 1 || seg.Type != header.SegmentCrypt || !seg.Size.Dynamic || seg.IVTweak == nil || *seg.IVTweak != 0 {
		return nil, fmt.Errorf("%w: volcrypt %s a volume with one dynamic crypt segment only", ErrNotInReencryption, what)
	}
	return seg, nil
}

func startRekeyJob(ctx context.Context, f, hf *os.File, h *header.Header, passphrase []byte, o ReencryptOptions) (*rekeyJob, error) {
	seg, err := singleCryptSegment(h, "reencrypts")
	if err != nil {
		return nil, err
	}
	oldKey, slot, err := h.Unlock(hf, passphrase, header.UnlockOptions{Keyslot: -1, Segment: 0, Limits: kdf.DefaultLimits()})
	if err != nil {
		return nil, err
	}
	j := &rekeyJob{f: f, hf: hf, h: h, oldKey: oldKey, oldSeg: *seg, offset: int64(seg.Offset), hotzone: o.HotzoneBytes}
	j.oldDigest, _ = h.Meta.SegmentDigest(0)
	fail := func(err error) (*rekeyJob, error) { j.close(); return nil, err }
	keep := map[int][]byte{slot: passphrase}
	for id, pass := range o.Keep {
		k, err := h.OpenKeyslot(hf, id, pass, kdf.DefaultLimits())
		if err != nil {
			return fail(fmt.Errorf("key slot %d to keep: %w", id, err))
		}
		k.Wipe()
		keep[id] = pass
	}
	// Key material a crash left behind (a finish killed after its header
	// write, before its wipe) goes before anything else.
	if len(h.Damaged) == 0 {
		if err := zeroFreeKeyslotArea(h, hf); err != nil {
			return fail(err)
		}
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
		twin, err := h.AddKeyslot(hf, -1, keep[id], j.newKey.Bytes(), header.KeyslotParams{KDF: old.KDF.Params(), AFHash: old.AF.Hash, Priority: old.Priority})
		if err != nil {
			return fail(fmt.Errorf("re-wrap key slot %d: %w", id, err))
		}
		if err := h.CopyTokenKeyslot(id, twin); err != nil {
			return fail(err)
		}
	}
	if err := j.begin(header.ReencryptRekey, od.Hash, iter, o.HotzoneBytes); err != nil {
		return fail(err)
	}
	return j, nil
}

// begin sizes the job from the data device, adds the reencrypt key slot
// with room for one hotzone's checksums, and writes the header with the
// reencryption metadata and no hotzone yet. The volume keys and segments
// of both sides are set.
func (j *rekeyJob) begin(mode, hash string, iter uint32, hotzone int64) error {
	if err := j.setSize(); err != nil {
		return err
	}
	// The checksum block: 4096 bytes as cryptsetup's on a file system, or
	// the sector size when the data is not a multiple of 4096.
	j.block = j.sector()
	if j.size%4096 == 0 {
		j.block = max(j.block, 4096)
	}
	if hotzone <= 0 {
		hotzone = defaultHotzone
	}
	j.hotzone = max(hotzone/j.block*j.block, j.block)
	hashes := (j.hotzone / j.block) * sha256.Size
	rid, err := j.h.AddReencryptKeyslot(mode, header.DirectionForward, "checksum", (hashes+4095)/4096*4096, 0)
	if err != nil {
		return err
	}
	k := j.h.Meta.Keyslots[rid]
	k.Area.Hash = "sha256"
	k.Area.SectorSize = int(j.block)
	j.area = k.Area
	j.setSegments(0, false)
	if err := j.h.SetReencryptDigest(keyBytes(j.oldKey), keyBytes(j.newKey), hash, iter); err != nil {
		return err
	}
	return writeHeader(j.h, j.hf)
}

// sector is the largest encryption sector size of the two sides.
func (j *rekeyJob) sector() int64 {
	return int64(max(j.oldSeg.SectorSize, j.newSeg.SectorSize, 512))
}

// setSize sets the logical size of the data: what follows the data offset
// on the device, in whole encryption sectors.
func (j *rekeyJob) setSize() error {
	dev, err := deviceSize(j.f)
	if err != nil {
		return err
	}
	j.size = (dev - j.offset) / j.sector() * j.sector()
	if j.size <= 0 {
		return fmt.Errorf("%s has no data to rewrite: %w", j.f.Name(), ErrDeviceNotFound)
	}
	return nil
}

func keyBytes(b *secret.Buffer) []byte {
	if b == nil {
		return nil
	}
	return b.Bytes()
}

func (j *rekeyJob) ciphers() error {
	var err error
	if j.oldKey != nil {
		if j.oldC, err = crypt.New(j.oldSeg.Encryption, j.oldKey.Bytes(), j.oldSeg.SectorSize); err != nil {
			return err
		}
	}
	if j.newKey != nil {
		if j.newC, err = crypt.New(j.newSeg.Encryption, j.newKey.Bytes(), j.newSeg.SectorSize); err != nil {
			return fmt.Errorf("%w: cipher %s with a %d-bit key: %v", ErrInvalidParams, j.newSeg.Encryption, j.newKey.Len()*8, err)
		}
	}
	return nil
}

// resumeRekeyJob picks up a forward reencryption, encryption or
// decryption with checksum resilience (volcrypt's or cryptsetup's) from
// the header h read from hf.
func resumeRekeyJob(f, hf *os.File, h *header.Header, passphrase []byte) (*rekeyJob, error) {
	_, k := h.Meta.ReencryptKeyslot()
	if (k.Direction != header.DirectionForward && k.Direction != header.DirectionBackward) || k.Area.Type != "checksum" || k.Area.SectorSize < 512 {
		return nil, fmt.Errorf("%w: %s holds a %s (%s, %s); volcrypt resumes this one only with a data shift or with checksums; finish it with cryptsetup reencrypt --resume-only",
			ErrNotInReencryption, hf.Name(), k.Mode, k.Direction, k.Area.Type)
	}
	if k.Area.Hash != "sha256" {
		return nil, fmt.Errorf("%w: checksum hash %s", ErrNotInReencryption, k.Area.Hash)
	}
	pid, prev := h.Meta.SegmentByFlag(header.FlagBackupPrevious)
	fid, final := h.Meta.SegmentByFlag(header.FlagBackupFinal)
	want := map[string][2]string{
		header.ReencryptRekey:   {header.SegmentCrypt, header.SegmentCrypt},
		header.ReencryptEncrypt: {header.SegmentLinear, header.SegmentCrypt},
		header.ReencryptDecrypt: {header.SegmentCrypt, header.SegmentLinear},
	}[k.Mode]
	if prev == nil || final == nil || prev.Type != want[0] || final.Type != want[1] || prev.Offset != final.Offset {
		return nil, fmt.Errorf("%w: incomplete reencryption segments", ErrNotInReencryption)
	}
	j := &rekeyJob{f: f, hf: hf, h: h, oldSeg: *prev, newSeg: *final, offset: int64(final.Offset), area: k.Area, block: int64(k.Area.SectorSize),
		oldDigest: -1, digest: -1}
	j.oldSeg.Flags, j.newSeg.Flags = nil, nil
	fail := func(err error) (*rekeyJob, error) { j.close(); return nil, err }
	var err error
	if prev.Type == header.SegmentCrypt {
		if j.oldKey, _, err = h.Unlock(hf, passphrase, header.UnlockOptions{Keyslot: -1, Segment: pid, Limits: kdf.DefaultLimits()}); err != nil {
			return fail(fmt.Errorf("old key: %w", err))
		}
		j.oldDigest, _ = h.Meta.SegmentDigest(pid)
	}
	if final.Type == header.SegmentCrypt {
		if j.newKey, _, err = h.Unlock(hf, passphrase, header.UnlockOptions{Keyslot: -1, Segment: fid, Limits: kdf.DefaultLimits()}); err != nil {
			return fail(fmt.Errorf("new key: %w", err))
		}
		j.digest, _ = h.Meta.SegmentDigest(fid)
	}
	if err := h.VerifyReencryptDigest(keyBytes(j.oldKey), keyBytes(j.newKey)); err != nil {
		return fail(err)
	}
	if err := j.ciphers(); err != nil {
		return fail(err)
	}
	if err := j.setSize(); err != nil {
		return fail(err)
	}
	j.hotzone = (int64(k.Area.Size) / sha256.Size) * j.block
	j.hotzone = min(j.hotzone, defaultHotzone)
	// Progress: the hotzone in progress, else the boundary between the
	// old and the new data.
	j.backward = k.Direction == header.DirectionBackward
	_, hot := h.Meta.SegmentByFlag(header.FlagInReencryption)
	s0 := h.Meta.Segments[0]
	switch {
	case hot != nil && !hot.Size.Dynamic:
		start := int64(hot.Offset) - j.offset
		end := start + int64(hot.Size.Bytes)
		if (int64(hot.Size.Bytes)+j.block-1)/j.block*sha256.Size > int64(k.Area.Size) || start < 0 || end > j.size || end <= start {
			return fail(fmt.Errorf("%w: hotzone outside the data or larger than its checksums", ErrNotInReencryption))
		}
		j.hotzone = end - start
		j.recover, j.recoverAt = true, start
		j.next = start
		if j.backward {
			j.next = end
		}
	case s0 == nil:
		return fail(fmt.Errorf("%w: no data segment", ErrNotInReencryption))
	case j.isNew(0) == !j.backward:
		// Forward, new data from the start: it ends where the old begins.
		// Backward, old data from the start: it ends where the new begins.
		j.next = int64(s0.Size.Bytes)
		if s0.Size.Dynamic {
			j.next = j.size
		}
	case j.backward:
		j.next = 0 // all new
	default:
		j.next = 0 // forward, nothing done yet
	}
	return j, nil
}

// isNew reports whether segment id belongs to the new layout.
func (j *rekeyJob) isNew(id int) bool {
	if j.digest < 0 {
		return j.h.Meta.Segments[id].Type == header.SegmentLinear
	}
	return j.h.Meta.Digests[j.digest].Segments.Contains(id)
}

// setSegments lays out the segments for progress p (bytes rewritten) and,
// when hot, the hotzone [p, p+hotzone) being rewritten.
func (j *rekeyJob) setSegments(p int64, hot bool) {
	if p >= j.size {
		j.layout(piece{0, j.size, true, false})
		return
	}
	end := p
	if hot {
		end = min(p+j.hotzone, j.size)
	}
	j.layout(piece{0, p, true, false}, piece{p, end, true, true}, piece{end, j.size, false, false})
}

// setSegmentsBackward lays out the segments of a backward run: the data
// from q on is new and, when hotFrom ≥ 0, [hotFrom, q) is the hotzone.
func (j *rekeyJob) setSegmentsBackward(q, hotFrom int64) {
	if hotFrom < 0 {
		hotFrom = q
	}
	j.layout(piece{0, hotFrom, false, false}, piece{hotFrom, q, true, true}, piece{q, j.size, true, false})
}

// piece is a stretch [from, to) of the data in the old or the new layout,
// or the hotzone.
type piece struct {
	from, to int64
	new, hot bool
}

// layout writes the segments for pieces (in order, empty ones skipped)
// into the header's metadata, then the backups of the old and new
// layouts, as cryptsetup does: a hotzone has a fixed size, a last piece
// otherwise is dynamic.
func (j *rekeyJob) layout(pieces ...piece) {
	m := j.h.Meta
	next := newSegments(m)
	add := func(s header.Segment, logical, size int64, flags ...string) int {
		s.Offset = header.U64(j.offset + logical)
		if s.Type == header.SegmentCrypt {
			tweak := header.U64(logical / 512)
			s.IVTweak = &tweak
		}
		s.Flags = flags
		s.Size = header.SizeOf(size)
		return next(&s)
	}
	pieces = slices.DeleteFunc(pieces, func(p piece) bool { return p.to <= p.from })
	var oldIDs, newIDs []int
	for i, p := range pieces {
		size := p.to - p.from
		var flags []string
		if p.hot {
			flags = []string{header.FlagInReencryption}
		} else if i == len(pieces)-1 {
			size = -1
		}
		if p.new {
			newIDs = append(newIDs, add(j.newSeg, p.from, size, flags...))
		} else {
			oldIDs = append(oldIDs, add(j.oldSeg, p.from, size, flags...))
		}
	}
	oldIDs = append(oldIDs, add(j.oldSeg, 0, -1, header.FlagBackupPrevious))
	newIDs = append(newIDs, add(j.newSeg, 0, -1, header.FlagBackupFinal))
	if j.oldDigest >= 0 {
		m.Digests[j.oldDigest].Segments = oldIDs
	}
	if j.digest >= 0 {
		m.Digests[j.digest].Segments = newIDs
	}
}

// run rewrites the remaining hotzones and finishes. Reading and
// transforming the next hotzone overlaps writing the current one.
func (j *rekeyJob) run(ctx context.Context) error {
	var zones [][2]int64
	if j.backward {
		// next is the end of the first hotzone; the old data before it.
		for q, hz := j.next, j.hotzone; q > 0; q, hz = max(q-hz, 0), j.hotzone {
			zones = append(zones, [2]int64{max(q-hz, 0), q})
		}
	} else {
		for p := j.next; p < j.size; p = min(p+j.hotzone, j.size) {
			zones = append(zones, [2]int64{p, min(p+j.hotzone, j.size)})
		}
	}
	nsums := (j.hotzone + j.block - 1) / j.block * sha256.Size
	err := pipeline(ctx, zones, j.hotzone, nsums, j.prepare, j.commit)
	if err != nil {
		return err
	}
	return j.finish()
}

// prepare reads hotzone c and turns it into the new data, keeping the
// checksums of the blocks as they were on disk.
func (j *rekeyJob) prepare(c *chunk) error {
	if _, err := j.f.ReadAt(c.b, j.offset+c.start); err != nil {
		return fmt.Errorf("read data at %d: %w", j.offset+c.start, err)
	}
	if j.recover && c.start == j.recoverAt {
		if err := j.recoverHotzone(c.b, c.start); err != nil {
			return err
		}
		c.recovered = true
	} else {
		n := j.blocks(len(c.b))
		c.sums = c.sums[:n*sha256.Size]
		for i := range n {
			s := sha256.Sum256(j.blockOf(c.b, i))
			copy(c.sums[i*sha256.Size:], s[:])
		}
		if j.oldC != nil {
			if err := j.oldC.Decrypt(c.b, c.b, uint64(c.start/512)); err != nil {
				return err
			}
		}
	}
	if j.newC != nil {
		return j.newC.Encrypt(c.b, c.b, uint64(c.start/512))
	}
	return nil
}

// commit makes the checksums of hotzone c and the hotzone itself durable
// in the header, then overwrites the hotzone and records the progress:
// after a crash from the first step on, a block whose checksum still
// matches is old, any other new.
func (j *rekeyJob) commit(c *chunk) error {
	if !c.recovered {
		if err := writeSync(j.hf, c.sums, int64(j.area.Offset)); err != nil {
			return fmt.Errorf("write hotzone checksums: %w", err)
		}
		commitStage(stageChecksums)
		if j.backward {
			j.setSegmentsBackward(c.end, c.start)
		} else {
			j.setSegments(c.start, true)
		}
		if err := writeHeader(j.h, j.hf); err != nil {
			return err
		}
		commitStage(stageHotzone)
	}
	if err := writeSync(j.f, c.b, j.offset+c.start); err != nil {
		return fmt.Errorf("write data at %d: %w", j.offset+c.start, err)
	}
	commitStage(stageData)
	done := c.end
	if j.backward {
		j.setSegmentsBackward(c.start, -1)
		done = j.size - c.start
	} else {
		j.setSegments(c.end, false)
	}
	if err := writeHeader(j.h, j.hf); err != nil {
		return err
	}
	commitStage(stageProgress)
	if j.progress != nil {
		j.progress(Progress{DoneBytes: done, TotalBytes: j.size})
	}
	return nil
}

// blocks is the number of checksum blocks of an n-byte hotzone (the last
// one may be short).
func (j *rekeyJob) blocks(n int) int64 { return (int64(n) + j.block - 1) / j.block }

func (j *rekeyJob) blockOf(b []byte, i int64) []byte {
	return b[i*j.block : min((i+1)*j.block, int64(len(b)))]
}

// recoverHotzone turns the raw hotzone b, each block either still old or
// already new, into the plain data, as cryptsetup's checksum recovery
// does: a block whose checksum matches the stored one is old.
func (j *rekeyJob) recoverHotzone(b []byte, p int64) error {
	n := j.blocks(len(b))
	sums := make([]byte, n*sha256.Size)
	if _, err := j.hf.ReadAt(sums, int64(j.area.Offset)); err != nil {
		return fmt.Errorf("read hotzone checksums: %w", err)
	}
	for i := range n {
		raw := j.blockOf(b, i)
		iv := uint64((p + i*j.block) / 512)
		s := sha256.Sum256(raw)
		c := j.newC
		if subtle.ConstantTimeCompare(s[:], sums[i*sha256.Size:(i+1)*sha256.Size]) == 1 {
			c = j.oldC
		}
		if c == nil {
			continue // plain already
		}
		if err := c.Decrypt(raw, raw, iv); err != nil {
			return err
		}
	}
	return nil
}

// finish removes the old key's slots and digest and the reencryption
// metadata (tokens already name the new slots too), then wipes the old key
// material and the checksums. After a decryption no key is left: the
// header keeps one plain segment, no key slot and no token, as
// cryptsetup leaves a detached header.
func (j *rekeyJob) finish() error {
	commitStage(stageFinish)
	h := j.h
	j.setSegments(j.size, false)
	var areas []header.Area
	if _, k := h.Meta.ReencryptKeyslot(); k != nil {
		areas = append(areas, k.Area)
	}
	if j.oldDigest >= 0 {
		for _, id := range slices.Clone(h.Meta.Digests[j.oldDigest].Keyslots) {
			a, err := h.RemoveKeyslot(id)
			if err != nil {
				return err
			}
			areas = append(areas, a)
		}
		delete(h.Meta.Digests, j.oldDigest)
	}
	h.ClearReencrypt()
	if j.digest >= 0 {
		h.Meta.Digests[j.digest].Segments = header.IDList{0}
	} else {
		for _, t := range h.Tokens() {
			if err := h.RemoveToken(t.ID); err != nil {
				return err
			}
		}
	}
	if err := writeHeader(h, j.hf); err != nil {
		return err
	}
	commitStage(stageFinishHeader)
	if j.digest < 0 {
		// Decrypted: no key slot is left, the whole key-slot area goes.
		return zeroRange(j.hf, 2*h.Size, h.KeyslotsEnd())
	}
	for _, a := range areas {
		if err := header.WipeArea(dataSyncFile{j.hf}, a); err != nil {
			return err
		}
	}
	return datasync(j.hf)
}

// zeroFreeKeyslotArea zeroes the parts of h's key-slot area that no key
// slot of h uses (old key material a crash left behind). h must be what
// both header copies on f say, so that no copy names what it zeroes.
func zeroFreeKeyslotArea(h *header.Header, f *os.File) error {
	type span struct{ from, to int64 }
	var used []span
	for _, k := range h.Meta.Keyslots {
		used = append(used, span{int64(k.Area.Offset), int64(k.Area.Offset) + int64(k.Area.Size)})
	}
	slices.SortFunc(used, func(a, b span) int { return cmp.Compare(a.from, b.from) })
	end := h.KeyslotsEnd()
	at := 2 * h.Size
	for _, u := range append(used, span{end, end}) {
		if from := min(u.from, end); from > at {
			if err := zeroRange(f, at, from); err != nil {
				return fmt.Errorf("wipe the free key-slot area: %w", err)
			}
		}
		at = max(at, u.to)
	}
	return nil
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
		return fmt.Errorf("%w: the ext2/3/4 file system inside uses %d-byte blocks, smaller than the %d-byte sector size asked for: it could not be mounted", ErrInvalidParams, bs, j.newSeg.SectorSize)
	}
	return nil
}
