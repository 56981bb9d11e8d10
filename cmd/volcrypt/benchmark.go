package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/volcrypt/volcrypt/crypt"
	"github.com/volcrypt/volcrypt/internal/dm"
	"github.com/volcrypt/volcrypt/internal/loop"
	"github.com/volcrypt/volcrypt/internal/progress"
	"github.com/volcrypt/volcrypt/internal/secret"
	"github.com/volcrypt/volcrypt/kdf"
)

// benchmarkReport is what volcrypt benchmark --json prints.
type benchmarkReport struct {
	Ciphers []benchCipher `json:"ciphers"`
	KDFs    []benchKDF    `json:"kdfs"`
	// Skipped says what could not be measured here, and why.
	Skipped []string `json:"skipped,omitempty"`
}

// benchCipher is one cipher measurement. Engine is "userspace" (crypt's
// engine; Kernel names its implementation) or "dm-crypt" (the kernel,
// through a real mapping).
type benchCipher struct {
	Cipher     string  `json:"cipher"`
	KeyBits    int     `json:"key_bits"`
	SectorSize int     `json:"sector_size"`
	EncryptMiB float64 `json:"encrypt_mib_s"`
	DecryptMiB float64 `json:"decrypt_mib_s"`
	Engine     string  `json:"engine"`
	Kernel     string  `json:"kernel,omitempty"`
}

// benchKDF is one KDF measurement: PBKDF2's rate, or Argon2's calibrated
// parameters and the wall time one derivation with them took.
type benchKDF struct {
	PBKDF          string  `json:"pbkdf"`
	Hash           string  `json:"hash,omitempty"`
	IterationsPerS uint64  `json:"iterations_per_s,omitempty"`
	Time           uint32  `json:"time,omitempty"`
	MemoryKiB      uint32  `json:"memory_kib,omitempty"`
	Threads        uint32  `json:"threads,omitempty"`
	Ms             float64 `json:"ms,omitempty"`
}

// benchOptions are volcrypt benchmark's flags.
type benchOptions struct {
	iterTime     uint32        // Argon2 calibration target, ms (0: cryptsetup's 2000)
	duration     time.Duration // per cipher measurement (hidden; tests shorten it)
	dmSize       int64         // bytes written and read through the dm-crypt mapping (hidden)
	only         string        // "", benchOnlyKDF or benchOnlyCipher (hidden; scripts/bench)
	progressJSON bool
}

// Values of the hidden --only flag, which scripts/bench uses to repeat one
// half of the benchmark.
const (
	benchOnlyKDF    = "kdf"
	benchOnlyCipher = "cipher"
)

const (
	benchPBKDF2Ms   = 1000    // cryptsetup benchmark's PBKDF2 target
	benchKeyLen     = 32      // cryptsetup benchmark's "for 256-bit key"
	benchBufferSize = 1 << 20 // one call: large enough that crypt spreads it over the CPUs
)

// benchmarkCommands returns the commands for volcrypt benchmark (issue 6).
func (a *app) benchmarkCommands() []*cobra.Command {
	var o benchOptions
	cmd := &cobra.Command{
		Use:   "benchmark",
		Short: "Measure key derivation and cipher speed on this machine",
		Long: `benchmark measures what cryptsetup benchmark does, without the kernel crypto API: PBKDF2
iterations per second for sha1, sha256 and sha512, the Argon2i and Argon2id parameters calibration
chooses (and how long one derivation with them takes), and volcrypt's userspace aes-xts-plain64 engine
with 256- and 512-bit keys at 512- and 4096-byte sectors. Where device-mapper is available (as root),
it also measures dm-crypt through a real mapping over a loop device.`,
		Example: `  volcrypt benchmark
  volcrypt benchmark --json --iter-time 500`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if o.duration <= 0 || o.dmSize < benchBufferSize {
				return usageError{fmt.Errorf("benchmark: duration must be positive and dm size at least %d bytes", benchBufferSize)}
			}
			if o.only != "" && o.only != benchOnlyKDF && o.only != benchOnlyCipher {
				return usageError{fmt.Errorf("benchmark: --only %q: want %q or %q", o.only, benchOnlyKDF, benchOnlyCipher)}
			}
			r, err := runBenchmark(cmd.Context(), o, progress.New(a.stderr, o.progressJSON))
			if err != nil {
				return err
			}
			if a.json {
				return a.printJSON(r)
			}
			return printBenchmark(a, r, o)
		},
	}
	a.addJSONFlag(cmd)
	fs := cmd.Flags()
	fs.Uint32VarP(&o.iterTime, "iter-time", "i", 0, "Argon2 calibration target in milliseconds (default 2000)")
	fs.DurationVar(&o.duration, "duration", time.Second, "how long each cipher measurement runs")
	fs.Int64Var(&o.dmSize, "dm-size", 64<<20, "bytes written and read through the dm-crypt mapping")
	fs.StringVar(&o.only, "only", "", `measure only the KDFs ("kdf") or only the ciphers ("cipher")`)
	progress.AddFlag(fs, &o.progressJSON)
	_ = fs.MarkHidden("duration")
	_ = fs.MarkHidden("dm-size")
	_ = fs.MarkHidden("only")
	return []*cobra.Command{cmd}
}

// benchTask is the progress task of every measurement; its item names the
// measurement ("pbkdf2-sha256", "argon2id", "aes-xts-plain64 512b 4096",
// "dm-crypt aes-xts-plain64 512b 4096"). Totals are unknown (-1); cipher
// measurements count bytes, Argon2 calibration its derivations.
const benchTask = "benchmark"

// measure runs f as one progress task named item.
func measure[T any](pr *progress.Reporter, item string, f func(t *progress.Task) (T, error)) (T, error) {
	t := pr.Start(benchTask, item, -1)
	v, err := f(t)
	t.Done(err)
	return v, err
}

func runBenchmark(ctx context.Context, o benchOptions, pr *progress.Reporter) (*benchmarkReport, error) {
	r := &benchmarkReport{Ciphers: []benchCipher{}, KDFs: []benchKDF{}}
	if o.only != benchOnlyCipher {
		if err := benchKDFs(ctx, r, o, pr); err != nil {
			return nil, err
		}
	}
	if o.only == benchOnlyKDF {
		return r, nil
	}
	for _, keyBits := range []int{256, 512} {
		for _, ss := range []int{512, 4096} {
			c, err := measure(pr, fmt.Sprintf("aes-xts-plain64 %db %d", keyBits, ss), func(t *progress.Task) (benchCipher, error) {
				return benchUserspace(keyBits, ss, o.duration, t)
			})
			if err != nil {
				return nil, fmt.Errorf("benchmark: %w", err)
			}
			r.Ciphers = append(r.Ciphers, c)
		}
	}
	if err := dmBenchAvailable(); err != nil {
		r.Skipped = append(r.Skipped, "dm-crypt: "+err.Error())
		return r, nil
	}
	for _, keyBits := range []int{256, 512} {
		for _, ss := range []int{512, 4096} {
			c, err := measure(pr, fmt.Sprintf("dm-crypt aes-xts-plain64 %db %d", keyBits, ss), func(t *progress.Task) (benchCipher, error) {
				return benchDMCrypt(keyBits, ss, o.dmSize, t)
			})
			if err != nil {
				return nil, fmt.Errorf("benchmark: dm-crypt: %w", err)
			}
			r.Ciphers = append(r.Ciphers, c)
		}
	}
	return r, nil
}

// benchKDFs measures PBKDF2 for three hashes and both Argon2 variants into r.
func benchKDFs(ctx context.Context, r *benchmarkReport, o benchOptions, pr *progress.Reporter) error {
	pbkdf2Ms := uint32(benchPBKDF2Ms)
	if o.iterTime != 0 {
		pbkdf2Ms = min(pbkdf2Ms, o.iterTime)
	}
	for _, h := range []string{"sha1", "sha256", "sha512"} {
		p, err := measure(pr, "pbkdf2-"+h, func(*progress.Task) (kdf.Params, error) {
			return kdf.Calibrate(ctx, kdf.CalibrateOptions{Algorithm: kdf.PBKDF2, Hash: h, TargetMs: pbkdf2Ms, KeyLen: benchKeyLen})
		})
		if err != nil {
			return fmt.Errorf("benchmark: %w", err)
		}
		r.KDFs = append(r.KDFs, benchKDF{PBKDF: kdf.PBKDF2, Hash: h, IterationsPerS: uint64(p.Time) * 1000 / uint64(pbkdf2Ms)})
	}
	for _, alg := range []string{kdf.Argon2i, kdf.Argon2id} {
		k, err := measure(pr, alg, func(t *progress.Task) (benchKDF, error) {
			return benchArgon2(ctx, alg, o.iterTime, t)
		})
		if err != nil {
			return fmt.Errorf("benchmark: %w", err)
		}
		r.KDFs = append(r.KDFs, k)
	}
	return nil
}

// benchArgon2 calibrates alg as a new key slot would be (to targetMs, or
// cryptsetup's default) and times one derivation with the result. t counts
// the derivations.
func benchArgon2(ctx context.Context, alg string, targetMs uint32, t *progress.Task) (benchKDF, error) {
	p, err := kdf.Calibrate(ctx, kdf.CalibrateOptions{Algorithm: alg, TargetMs: targetMs, KeyLen: benchKeyLen,
		Progress: func(kdf.Params, time.Duration) { t.Add(1) }})
	if err != nil {
		return benchKDF{}, err
	}
	start := time.Now()
	key, err := kdf.Derive(p, []byte("foo"), []byte("0123456789abcdef"), benchKeyLen)
	took := time.Since(start)
	if err != nil {
		return benchKDF{}, err
	}
	secret.Wipe(key)
	t.Add(1)
	return benchKDF{PBKDF: alg, Time: p.Time, MemoryKiB: p.MemoryKiB, Threads: p.Threads, Ms: msOf(took)}, nil
}

// benchUserspace runs crypt's aes-xts-plain64 engine on a 1 MiB buffer for
// about d in each direction; t counts the bytes.
func benchUserspace(keyBits, sectorSize int, d time.Duration, t *progress.Task) (benchCipher, error) {
	key := make([]byte, keyBits/8)
	defer secret.Wipe(key)
	if _, err := rand.Read(key); err != nil {
		return benchCipher{}, err
	}
	c, err := crypt.New("aes-xts-plain64", key, sectorSize)
	if err != nil {
		return benchCipher{}, err
	}
	defer c.Wipe()
	buf := make([]byte, benchBufferSize)
	res := benchCipher{Cipher: "aes-xts-plain64", KeyBits: keyBits, SectorSize: sectorSize, Engine: "userspace", Kernel: c.Kernel()}
	for _, dir := range []func([]byte, []byte, uint64) error{c.Encrypt, c.Decrypt} {
		var n int
		start := time.Now()
		for time.Since(start) < d || n == 0 {
			if err := dir(buf, buf, uint64(n)*benchBufferSize/512); err != nil {
				return benchCipher{}, err
			}
			n++
			t.Add(benchBufferSize)
		}
		rate := mibPerS(int64(n)*benchBufferSize, time.Since(start))
		if res.EncryptMiB == 0 {
			res.EncryptMiB = rate
		} else {
			res.DecryptMiB = rate
		}
	}
	return res, nil
}

// dmBenchAvailable reports why dm-crypt cannot be measured here, if it
// cannot.
func dmBenchAvailable() error {
	if os.Geteuid() != 0 {
		return errors.New("skipped: needs root")
	}
	if err := dm.Available(); err != nil {
		return fmt.Errorf("skipped: device-mapper unavailable: %w", err)
	}
	if err := loop.Available(); err != nil {
		return fmt.Errorf("skipped: loop devices unavailable: %w", err)
	}
	return nil
}

// benchDMCrypt maps a dm-crypt device with a random key over a loop device
// on a temporary file and times writing (encryption) and reading
// (decryption) size bytes through it with direct I/O, 1 MiB per request; t
// counts the bytes.
func benchDMCrypt(keyBits, sectorSize int, size int64, t *progress.Task) (res benchCipher, err error) {
	size = size / benchBufferSize * benchBufferSize
	f, err := os.CreateTemp("", "volcrypt-bench-*")
	if err != nil {
		return res, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		return res, err
	}
	ld, err := loop.Attach(f.Name(), false)
	if err != nil {
		return res, err
	}
	defer func() {
		if derr := ld.Detach(); err == nil && derr != nil {
			err = derr
		}
	}()
	key := make([]byte, keyBits/8)
	defer secret.Wipe(key)
	if _, err := rand.Read(key); err != nil {
		return res, err
	}
	name := fmt.Sprintf("volcrypt-bench-%d", os.Getpid())
	target := dm.CryptTarget{Cipher: "aes-xts-plain64", KeySize: len(key), Device: dm.DevNum(ld.Major(), ld.Minor()),
		SizeBytes: uint64(size), SectorSizeBytes: sectorSize}
	if _, err := dm.CreateCrypt(name, target, key, dm.CryptOptions{}); err != nil {
		return res, err
	}
	defer func() {
		if rerr := dm.Remove(name, dm.RemoveOptions{}); err == nil && rerr != nil {
			err = rerr
		}
	}()
	dev, err := os.OpenFile(dm.NodePath(name), os.O_RDWR|unix.O_DIRECT, 0)
	if err != nil {
		return res, err
	}
	defer dev.Close()
	// Direct I/O wants an aligned buffer: take whole pages.
	buf, err := unix.Mmap(-1, 0, benchBufferSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return res, fmt.Errorf("map buffer: %w", err)
	}
	defer func() { _ = unix.Munmap(buf) }()
	res = benchCipher{Cipher: "aes-xts-plain64", KeyBits: keyBits, SectorSize: sectorSize, Engine: "dm-crypt"}
	start := time.Now()
	for off := int64(0); off < size; off += benchBufferSize {
		if _, err := dev.WriteAt(buf, off); err != nil {
			return res, err
		}
		t.Add(benchBufferSize)
	}
	if err := dev.Sync(); err != nil {
		return res, err
	}
	res.EncryptMiB = mibPerS(size, time.Since(start))
	start = time.Now()
	for off := int64(0); off < size; off += benchBufferSize {
		if _, err := dev.ReadAt(buf, off); err != nil {
			return res, err
		}
		t.Add(benchBufferSize)
	}
	res.DecryptMiB = mibPerS(size, time.Since(start))
	return res, nil
}

func msOf(d time.Duration) float64 {
	return math.Round(float64(d)/float64(time.Millisecond)*100) / 100
}

func mibPerS(bytes int64, d time.Duration) float64 {
	if d <= 0 {
		d = time.Nanosecond
	}
	return math.Round(float64(bytes)/(1<<20)/d.Seconds()*10) / 10
}

// printBenchmark prints r as cryptsetup benchmark lays its results out.
func printBenchmark(a *app, r *benchmarkReport, o benchOptions) error {
	target := o.iterTime
	if target == 0 {
		target = kdf.DefaultTargetMs
	}
	w := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(w, "# Tests are approximate using memory only (no storage IO).")
	for _, k := range r.KDFs {
		if k.PBKDF == kdf.PBKDF2 {
			fmt.Fprintf(w, "PBKDF2-%s\t%d iterations per second for %d-bit key\n", k.Hash, k.IterationsPerS, benchKeyLen*8)
			continue
		}
		fmt.Fprintf(w, "%s\t%d iterations, %d memory, %d parallel threads (CPUs) for %d-bit key (requested %d ms time, took %.0f ms)\n",
			k.PBKDF, k.Time, k.MemoryKiB, k.Threads, benchKeyLen*8, target, k.Ms)
	}
	fmt.Fprintln(w, "#\tAlgorithm\tKey\tSector\tEncryption\tDecryption\tEngine")
	for _, c := range r.Ciphers {
		engine := c.Engine
		if c.Kernel != "" {
			engine += " (" + c.Kernel + ")"
		}
		fmt.Fprintf(w, "\t%s\t%db\t%d\t%.1f MiB/s\t%.1f MiB/s\t%s\n", c.Cipher, c.KeyBits, c.SectorSize, c.EncryptMiB, c.DecryptMiB, engine)
	}
	for _, s := range r.Skipped {
		fmt.Fprintf(w, "# %s\n", s)
	}
	return w.Flush()
}
