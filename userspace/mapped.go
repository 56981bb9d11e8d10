package userspace

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"

	"github.com/volcrypt/volcrypt/crypt"
)

// ErrNotMappable means a Ciphertext's range cannot be mapped (a negative
// offset or size, or a range past what the platform can map).
var ErrNotMappable = errors.New("ciphertext range cannot be mapped")

// mappedChunk is how much one decryption call of a mapped read covers;
// each runs on the goroutine that guards it against faults
// (crypt.Cipher.DecryptSerial, see Ciphertext).
const mappedChunk = 128 << 10

// Ciphertext is a data segment's ciphertext mapped read-only from the
// device (MAP_SHARED, so it is the device's page cache and sees every
// write). Serve decrypts reads of whole sectors straight from it into the
// reply, instead of reading the ciphertext into the reply buffer first and
// decrypting it there (what Device.ReadAt does): that copy is a third of a
// read's CPU time, and the reply's copy into the reader's buffer, which
// FUSE adds, costs about as much again.
//
// A page of the mapping the kernel cannot read (a disk's I/O error, a
// truncated image) faults; the decryption runs on goroutines that turn the
// fault into an error (debug.SetPanicOnFault), so the read fails with EIO
// and the server keeps running.
//
// Mapped pages count in the server's resident size, which the OOM killer
// goes by, and killing the server fails all later I/O of whatever sits on
// the file: after every mappedBudget bytes decrypted, the whole mapping is
// unmapped from the process (MADV_DONTNEED; the pages stay in the page
// cache, and the next reads map them again with minor faults). Doing so
// after every read instead costs a third of the read speed (the TLB
// flushes and faults), see BenchmarkSequential.
type Ciphertext struct {
	c       *crypt.Cipher
	mapping []byte // as mapped, from a page boundary
	data    []byte // the segment within it
	ivTweak uint64
	sector  int64
	keep    bool // leave decrypted pages mapped (benchmarks only)
	// decrypted counts bytes decrypted since the mapping was last dropped.
	decrypted atomic.Int64
}

// mappedBudget is how much a server decrypts from the mapping between two
// drops of it from its resident size: what the mapping adds to it at most
// (with the reads under way).
const mappedBudget = 64 << 20

// MapCiphertext maps the size bytes at offset in f, a data segment that c
// encrypts with the given IV tweak in 512-byte sectors (a LUKS2 segment's
// iv_tweak). f may be closed afterwards; Close unmaps. size 0 maps nothing.
func MapCiphertext(f *os.File, offset, size int64, c *crypt.Cipher, ivTweak uint64) (*Ciphertext, error) {
	ct := &Ciphertext{c: c, ivTweak: ivTweak, sector: int64(c.SectorSize())}
	if offset < 0 || size < 0 || size > int64(^uint(0)>>1)-int64(os.Getpagesize()) {
		return nil, fmt.Errorf("map %s: %w", f.Name(), ErrNotMappable)
	}
	if size == 0 {
		return ct, nil
	}
	skip := offset % int64(os.Getpagesize())
	m, err := unix.Mmap(int(f.Fd()), offset-skip, int(skip+size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, fmt.Errorf("map %s: %w", f.Name(), err)
	}
	ct.mapping, ct.data = m, m[skip:skip+size]
	return ct, nil
}

// Close unmaps the ciphertext. Only after the mount using it has stopped.
func (ct *Ciphertext) Close() error {
	if ct.mapping == nil {
		return nil
	}
	err := unix.Munmap(ct.mapping)
	ct.mapping, ct.data = nil, nil
	if err != nil {
		return fmt.Errorf("unmap ciphertext: %w", err)
	}
	return nil
}

// covers reports whether a read of n bytes at off is whole sectors inside
// the mapping.
func (ct *Ciphertext) covers(off int64, n int) bool {
	return off >= 0 && off%ct.sector == 0 && int64(n)%ct.sector == 0 && off+int64(n) <= int64(len(ct.data))
}

// account counts n bytes decrypted and, every mappedBudget bytes, drops
// the whole mapping from this process's resident pages (not from the page
// cache); reads under way fault the pages they still need back in.
func (ct *Ciphertext) account(n int) {
	if ct.keep || ct.decrypted.Add(int64(n)) < mappedBudget {
		return
	}
	ct.decrypted.Store(0)
	_ = unix.Madvise(ct.mapping, unix.MADV_DONTNEED)
}

// decrypt fills dst with the plaintext at off (covers(off, len(dst))),
// spread over the CPUs in mappedChunk calls.
func (ct *Ciphertext) decrypt(dst []byte, off int64) error {
	chunks := (len(dst) + mappedChunk - 1) / mappedChunk
	workers := min(runtime.GOMAXPROCS(0), chunks)
	var next atomic.Int64
	errs := make([]error, workers)
	work := func(w int) {
		defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
		defer func() {
			if r := recover(); r != nil {
				errs[w] = fmt.Errorf("read ciphertext at %d: %v", off, r)
			}
		}()
		for {
			i := int(next.Add(1) - 1)
			if i >= chunks || errs[w] != nil {
				return
			}
			lo, hi := i*mappedChunk, min((i+1)*mappedChunk, len(dst))
			at := off + int64(lo)
			if err := ct.c.DecryptSerial(dst[lo:hi], ct.data[at:at+int64(hi-lo)], uint64(at)/512+ct.ivTweak); err != nil {
				errs[w] = fmt.Errorf("read ciphertext at %d: %w", at, err)
			}
		}
	}
	var wg sync.WaitGroup
	for w := 1; w < workers; w++ {
		wg.Go(func() { work(w) })
	}
	work(0)
	wg.Wait()
	ct.account(len(dst))
	return errors.Join(errs...)
}
