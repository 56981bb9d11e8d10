package volume

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/volcrypt/volcrypt/header"
	"github.com/volcrypt/volcrypt/internal/secret"
	"github.com/volcrypt/volcrypt/kdf"
)

// In-place encryption and decryption with a detached header, as cryptsetup
// reencrypt --encrypt/--decrypt --header FILE do them: the data does not
// move; the header file holds the key slots and the reencryption metadata
// with checksum resilience, and each hotzone is rewritten where it is
// (rekeyJob with a plain side).

// encryptDetached encrypts the data on path in place behind the header
// file o.HeaderFile (created when missing), or resumes the encryption it
// records.
func encryptDetached(ctx context.Context, path string, passphrase []byte, o EncryptOptions) (*Volume, error) {
	if o.ReduceDeviceSizeBytes != 0 {
		return nil, fmt.Errorf("%w: with a detached header the data does not move: drop --reduce-device-size", ErrInvalidParams)
	}
	f, l, err := openLocked(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	defer l.Unlock()
	_, statErr := os.Stat(o.HeaderFile)
	hf, err := os.OpenFile(o.HeaderFile, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("header file: %w", err)
	}
	defer hf.Close()
	created := errors.Is(statErr, os.ErrNotExist)

	var j *rekeyJob
	h, err := header.Read(hf)
	switch {
	case err == nil:
		_, k := h.Meta.ReencryptKeyslot()
		if k == nil || k.Mode != header.ReencryptEncrypt {
			return nil, fmt.Errorf("header file %s already holds a LUKS header with no encryption to resume: %w", o.HeaderFile, ErrNotInReencryption)
		}
		if err := checkWritable(h); err != nil {
			return nil, err
		}
		j, err = resumeRekeyJob(f, hf, h, passphrase)
	case errors.Is(err, header.ErrNotLUKS):
		if j, err = startDetachedEncrypt(ctx, f, hf, passphrase, o); err != nil && created {
			// Nothing happened: leave no header file behind.
			os.Remove(o.HeaderFile)
		}
	default:
		return nil, fmt.Errorf("read header file %s: %w", o.HeaderFile, err)
	}
	if err != nil {
		return nil, err
	}
	// The header file's name must be durable before any data is rewritten:
	// without it the data is lost. On a resume too: the run that created
	// the file may have been cut before it synced the directory.
	if err := syncDir(filepath.Dir(o.HeaderFile)); err != nil {
		j.close()
		return nil, fmt.Errorf("header file %s: sync its directory: %w", o.HeaderFile, err)
	}
	j.progress = o.Progress
	return runToEnd(ctx, j, f, l, path, LoadOptions{HeaderFile: o.HeaderFile, Logger: o.Logger})
}

// startDetachedEncrypt writes a new header with the encryption's metadata
// to hf. Until it is complete on disk no data has been touched, so an
// interruption before then just starts over.
func startDetachedEncrypt(ctx context.Context, f, hf *os.File, passphrase []byte, o EncryptOptions) (*rekeyJob, error) {
	for _, d := range []*os.File{f, hf} {
		sig, err := Probe(d)
		if err != nil {
			return nil, fmt.Errorf("probe %s: %w", d.Name(), err)
		}
		if d == hf && sig == "" {
			// Only an empty or all-zero file may become the header:
			// anything else may be someone's data.
			if zero, err := allZeros(hf); err != nil {
				return nil, fmt.Errorf("read header file %s: %w", hf.Name(), err)
			} else if !zero {
				sig = "data"
			}
		}
		switch {
		case d == hf && sig != "":
			return nil, fmt.Errorf("%w: header file %s is not empty (it holds %s); name a new file", ErrInvalidParams, d.Name(), sig)
		case sig == "LUKS" || sig == "LUKS2 secondary header":
			return nil, fmt.Errorf("%s is a LUKS volume already: %w", d.Name(), ErrNotInReencryption)
		}
	}
	sector := o.SectorSize
	if sector == 0 {
		// 512-byte sectors keep every file system block size working.
		sector = 512
	}
	dev, err := deviceSize(f)
	if err != nil {
		return nil, err
	}
	if dev == 0 || dev%int64(sector) != 0 {
		return nil, fmt.Errorf("%w: %s is %d bytes, not a multiple of the %d-byte sector", ErrInvalidParams, f.Name(), dev, sector)
	}
	o = o.withDefaults()
	j := &rekeyJob{f: f, hf: hf, oldDigest: -1,
		oldSeg: header.Segment{Type: header.SegmentLinear, Size: header.SegmentSize{Dynamic: true}}}
	fail := func(err error) (*rekeyJob, error) { j.close(); return nil, err }
	j.newKey = secret.New(o.KeySizeBits / 8)
	if _, err := io.ReadFull(rand.Reader, j.newKey.Bytes()); err != nil {
		return fail(fmt.Errorf("volume key: %w", err))
	}
	iter, err := digestIterations(ctx, o.KDF, o.Hash, j.newKey.Len())
	if err != nil {
		return fail(err)
	}
	h, err := header.New(j.newKey.Bytes(), header.NewOptions{
		UUID: o.UUID, Label: o.Label, Subsystem: o.Subsystem,
		MetadataSizeBytes: o.MetadataSizeBytes, KeyslotsSizeBytes: o.KeyslotsSizeBytes,
		Detached: true, Encryption: o.Cipher, SectorSize: sector, DigestHash: o.Hash, DigestIterations: iter,
	})
	if err != nil {
		return fail(err)
	}
	j.h = h
	seg, err := h.DataSegment()
	if err != nil {
		return fail(err)
	}
	j.newSeg = *seg
	j.digest, _ = h.Meta.SegmentDigest(0)
	if err := j.ciphers(); err != nil {
		return fail(err)
	}
	p, err := o.KDF.Resolve(ctx, j.newKey.Len())
	if err != nil {
		return fail(err)
	}
	if err := zeroRange(hf, 0, h.KeyslotsEnd()); err != nil {
		return fail(fmt.Errorf("header file: %w", err))
	}
	if _, err := h.AddKeyslot(hf, o.Keyslot, passphrase, j.newKey.Bytes(), header.KeyslotParams{KDF: p, AFHash: o.Hash}); err != nil {
		return fail(err)
	}
	if err := j.begin(header.ReencryptEncrypt, o.Hash, iter, 0); err != nil {
		return fail(fmt.Errorf("header file: %w", err))
	}
	return j, nil
}

// allZeros reports whether every byte of f is zero (true for an empty
// file).
func allZeros(f io.ReaderAt) (bool, error) {
	b := make([]byte, 1<<20)
	for off := int64(0); ; {
		n, err := f.ReadAt(b, off)
		for _, c := range b[:n] {
			if c != 0 {
				return false, nil
			}
		}
		off += int64(n)
		if errors.Is(err, io.EOF) {
			return true, nil
		}
		if err != nil {
			return false, err
		}
	}
}

// isDetached reports whether h, read from a header file, is a volume's
// detached header rather than the header of a decryption with a data shift
// in progress (which volcrypt keeps in a file while the data moves).
func isDetached(h *header.Header) bool {
	_, k := h.Meta.ReencryptKeyslot()
	return k == nil || k.Area.Type == "checksum" || k.Area.Type == "journal" || k.Area.Type == "none"
}

// IsDetachedHeader reports whether the file at path holds a volume's
// detached header (false: it does not exist, holds no LUKS header, or
// holds the header of a decryption with a data shift in progress).
func IsDetachedHeader(path string) (bool, error) {
	f, h, err := openHeaderIfAny(path, true)
	if f == nil {
		return false, err
	}
	f.Close()
	return isDetached(h), nil
}

// openHeaderIfAny opens the header file at path and reads its header; it
// returns no file and no error when path does not exist or holds no LUKS
// header.
func openHeaderIfAny(path string, readOnly bool) (*os.File, *header.Header, error) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil, nil, nil
	}
	f, err := openFile(path, readOnly)
	if err != nil {
		return nil, nil, fmt.Errorf("header file: %w", err)
	}
	h, err := header.Read(f)
	if err != nil {
		f.Close()
		if errors.Is(err, header.ErrNotLUKS) {
			return nil, nil, nil
		}
		return nil, nil, fmt.Errorf("read header file %s: %w", path, err)
	}
	return f, h, nil
}

// decryptDetached decrypts in place the volume whose detached header is
// hfPath, or resumes the decryption recorded there. It reports false when
// hfPath holds no detached header of a volume (so that the caller can
// try a decryption with a data shift).
func decryptDetached(ctx context.Context, f *os.File, hfPath string, passphrase []byte, progress func(Progress)) (bool, error) {
	hf, h, err := openHeaderIfAny(hfPath, false)
	if hf == nil {
		return err != nil, err
	}
	defer hf.Close()
	if !isDetached(h) {
		return false, nil // a data shift
	}
	_, k := h.Meta.ReencryptKeyslot()
	if err := checkWritable(h); err != nil {
		return true, err
	}
	if _, err := header.Read(f); err == nil {
		return true, fmt.Errorf("%w: %s holds a LUKS header of its own: %s looks like a copy of it; to decrypt, name a header file that does not exist yet", ErrInvalidParams, f.Name(), hfPath)
	}
	var j *rekeyJob
	switch {
	case k != nil && k.Mode != header.ReencryptDecrypt:
		return true, fmt.Errorf("%w: %s is in the middle of a %s; finish that first", ErrNotInReencryption, hfPath, k.Mode)
	case k != nil:
		j, err = resumeRekeyJob(f, hf, h, passphrase)
	default:
		if seg, err := h.DataSegment(); err == nil && seg.Type == header.SegmentLinear && len(h.Meta.Keyslots) == 0 {
			// Decrypted already; wipe the key-slot area again in case the
			// run that finished was killed before it did.
			return true, zeroRange(hf, 2*h.Size, h.KeyslotsEnd())
		}
		j, err = startDetachedDecrypt(f, hf, h, passphrase)
	}
	if err != nil {
		return true, err
	}
	defer j.close()
	j.progress = progress
	return true, j.run(ctx)
}

// startDetachedDecrypt records the start of a decryption in the header
// file.
func startDetachedDecrypt(f, hf *os.File, h *header.Header, passphrase []byte) (*rekeyJob, error) {
	seg, err := singleCryptSegment(h, "decrypts")
	if err != nil {
		return nil, err
	}
	oldKey, _, err := h.Unlock(hf, passphrase, header.UnlockOptions{Keyslot: -1, Segment: 0, Limits: kdf.DefaultLimits()})
	if err != nil {
		return nil, err
	}
	j := &rekeyJob{f: f, hf: hf, h: h, oldKey: oldKey, oldSeg: *seg, digest: -1, offset: int64(seg.Offset),
		newSeg: header.Segment{Type: header.SegmentLinear, Offset: seg.Offset, Size: header.SegmentSize{Dynamic: true}}}
	j.oldDigest, _ = h.Meta.SegmentDigest(0)
	if err := j.ciphers(); err != nil {
		j.close()
		return nil, err
	}
	d := h.Meta.Digests[j.oldDigest]
	if err := j.begin(header.ReencryptDecrypt, d.Hash, d.Iterations, 0); err != nil {
		j.close()
		return nil, err
	}
	return j, nil
}
