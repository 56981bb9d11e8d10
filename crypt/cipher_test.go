package crypt

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	mrand "math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
	"golang.org/x/crypto/xts"
)

var sectorSizes = []int{512, 1024, 2048, 4096}

func randBytes(t testing.TB, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return b
}

// testIVs covers small, 32-bit-boundary and very large sector numbers, and
// the wrap of IV arithmetic at 2^64.
var testIVs = []uint64{0, 1, 7, 8, 4095, 1 << 20, 1<<32 - 1, 1 << 32, 1<<32 + 5, 1 << 40, 1<<63 + 3, ^uint64(0) - 16, ^uint64(0)}

// TestXTSMatchesXCrypto checks every sector size, key size and many IVs, in
// both directions, in place and into a separate buffer, against
// golang.org/x/crypto/xts, whose sector number is plain64's IV.
func TestXTSMatchesXCrypto(t *testing.T) {
	for _, keySize := range []int{32, 48, 64} {
		for _, ss := range sectorSizes {
			t.Run(fmt.Sprintf("key%d/sector%d", keySize*8, ss), func(t *testing.T) {
				key := randBytes(t, keySize)
				ref, err := xts.NewCipher(aes.NewCipher, key)
				require.NoError(t, err)
				c, err := New("aes-xts-plain64", key, ss)
				require.NoError(t, err)

				for _, iv := range testIVs {
					// Several sectors per call, including more than one batch.
					for _, sectors := range []int{1, 3, batchBytes/ss + 1} {
						plain := randBytes(t, sectors*ss)
						want := make([]byte, len(plain))
						for i := 0; i < sectors; i++ {
							ref.Encrypt(want[i*ss:(i+1)*ss], plain[i*ss:(i+1)*ss], iv+uint64(i*ss/512))
						}

						got := make([]byte, len(plain))
						require.NoError(t, c.Encrypt(got, plain, iv))
						require.Equal(t, want, got, "encrypt iv %d sectors %d", iv, sectors)

						inPlace := append([]byte(nil), plain...)
						require.NoError(t, c.Encrypt(inPlace, inPlace, iv))
						require.Equal(t, want, inPlace, "encrypt in place iv %d", iv)

						back := make([]byte, len(plain))
						require.NoError(t, c.Decrypt(back, want, iv))
						require.Equal(t, plain, back, "decrypt iv %d", iv)

						require.NoError(t, c.Decrypt(inPlace, inPlace, iv))
						require.Equal(t, plain, inPlace, "decrypt in place iv %d", iv)
					}
				}
			})
		}
	}
}

// refIV builds a 16-byte IV the way dm-crypt's generators are documented,
// independently of the package's code.
func refIV(t *testing.T, gen string, key []byte, sector uint64) []byte {
	iv := make([]byte, 16)
	switch gen {
	case "plain64":
		binary.LittleEndian.PutUint64(iv, sector)
	case "plain":
		binary.LittleEndian.PutUint32(iv, uint32(sector))
	case "plain64be":
		binary.BigEndian.PutUint64(iv[8:], sector)
	case "null":
	case "essiv:sha256":
		h := sha256.Sum256(key)
		b, err := aes.NewCipher(h[:])
		require.NoError(t, err)
		binary.LittleEndian.PutUint64(iv, sector)
		b.Encrypt(iv, iv)
	default:
		t.Fatalf("no reference IV for %s", gen)
	}
	return iv
}

// refXTSSector encrypts one XTS data unit with an arbitrary 16-byte IV, from
// the IEEE 1619 definition: T = E_k2(IV), C_j = E_k1(P_j ^ T·α^j) ^ T·α^j.
func refXTSSector(t *testing.T, key, iv, plain []byte) []byte {
	k1, err := aes.NewCipher(key[:len(key)/2])
	require.NoError(t, err)
	k2, err := aes.NewCipher(key[len(key)/2:])
	require.NoError(t, err)
	var tw [16]byte
	k2.Encrypt(tw[:], iv)
	out := make([]byte, len(plain))
	for j := 0; j < len(plain); j += 16 {
		var x [16]byte
		for i := range x {
			x[i] = plain[j+i] ^ tw[i]
		}
		k1.Encrypt(x[:], x[:])
		for i := range x {
			out[j+i] = x[i] ^ tw[i]
		}
		// Multiply by α byte-wise, the textbook way.
		carry := byte(0)
		for i := range tw {
			next := tw[i] >> 7
			tw[i] = tw[i]<<1 | carry
			carry = next
		}
		if carry != 0 {
			tw[0] ^= 0x87
		}
	}
	return out
}

func refCBCSector(t *testing.T, key, iv, plain []byte) []byte {
	b, err := aes.NewCipher(key)
	require.NoError(t, err)
	out := make([]byte, len(plain))
	cipher.NewCBCEncrypter(b, iv).CryptBlocks(out, plain)
	return out
}

// TestModesMatchReference runs every supported spec against reference
// implementations built from the standard library and the IV definitions.
func TestModesMatchReference(t *testing.T) {
	tests := []struct {
		spec    string
		keySize int
		ivGen   string
	}{
		{"aes-xts-plain64", 64, "plain64"},
		{"aes-xts-plain", 32, "plain"},
		{"aes-xts-plain64be", 64, "plain64be"},
		{"aes-xts-null", 32, "null"},
		{"aes-xts-essiv:sha256", 64, "essiv:sha256"},
		{"aes-cbc-essiv:sha256", 32, "essiv:sha256"},
		{"aes-cbc-essiv:sha256", 16, "essiv:sha256"},
		{"aes-cbc-plain64", 32, "plain64"},
		{"aes-cbc-plain64", 24, "plain64"},
		{"aes-cbc-plain", 16, "plain"},
		{"aes-cbc-plain64be", 32, "plain64be"},
		{"aes-cbc-null", 32, "null"},
		{"aes-ecb", 32, ""},
		{"cipher_null-ecb", 0, ""},
	}
	for _, tt := range tests {
		for _, ss := range sectorSizes {
			t.Run(fmt.Sprintf("%s/key%d/sector%d", tt.spec, tt.keySize*8, ss), func(t *testing.T) {
				key := randBytes(t, tt.keySize)
				c, err := New(tt.spec, key, ss)
				require.NoError(t, err)
				for _, iv := range testIVs {
					const sectors = 3
					plain := randBytes(t, sectors*ss)
					want := make([]byte, 0, len(plain))
					for i := 0; i < sectors; i++ {
						p := plain[i*ss : (i+1)*ss]
						sector := iv + uint64(i*ss/512)
						switch {
						case tt.spec == "cipher_null-ecb":
							want = append(want, p...)
						case tt.spec == "aes-ecb":
							b, err := aes.NewCipher(key)
							require.NoError(t, err)
							out := make([]byte, ss)
							for j := 0; j < ss; j += 16 {
								b.Encrypt(out[j:], p[j:])
							}
							want = append(want, out...)
						case tt.spec[4:7] == "xts":
							want = append(want, refXTSSector(t, key, refIV(t, tt.ivGen, key, sector), p)...)
						default:
							want = append(want, refCBCSector(t, key, refIV(t, tt.ivGen, key, sector), p)...)
						}
					}
					got := make([]byte, len(plain))
					require.NoError(t, c.Encrypt(got, plain, iv))
					require.Equal(t, want, got, "encrypt iv %d", iv)
					require.NoError(t, c.Decrypt(got, got, iv))
					require.Equal(t, plain, got, "decrypt in place iv %d", iv)
					back := make([]byte, len(plain))
					require.NoError(t, c.Decrypt(back, want, iv))
					require.Equal(t, plain, back, "decrypt iv %d", iv)
				}
			})
		}
	}
}

// TestXTSKnownAnswer pins the engine to an IEEE 1619 test vector (vector 4,
// AES-128-XTS, data unit sequence number 0, 512 bytes), so that it does not
// only agree with another Go implementation.
func TestXTSKnownAnswer(t *testing.T) {
	key, _ := hex.DecodeString("27182818284590452353602874713526" + "31415926535897932384626433832795")
	plain := make([]byte, 512)
	for i := range plain {
		plain[i] = byte(i)
	}
	wantPrefix, _ := hex.DecodeString("27a7479befa1d476489f308cd4cfa6e2a96e4bbe3208ff25287dd3819616e89c")
	wantSuffix, _ := hex.DecodeString("eb4a427d1923ce3ff262735779a418f20a282df920147beabe421ee5319d0568")
	c, err := New("aes-xts-plain64", key, 512)
	require.NoError(t, err)
	got := make([]byte, 512)
	require.NoError(t, c.Encrypt(got, plain, 0))
	require.Equal(t, wantPrefix, got[:32])
	require.Equal(t, wantSuffix, got[512-32:])
}

// TestLargeSectorIsOneUnit shows that a 4096-byte sector is one XTS data unit
// under the 512-byte IV of its start, not eight 512-byte units.
func TestLargeSectorIsOneUnit(t *testing.T) {
	key := randBytes(t, 64)
	ref, err := xts.NewCipher(aes.NewCipher, key)
	require.NoError(t, err)
	c, err := New("aes-xts-plain64", key, 4096)
	require.NoError(t, err)
	plain := randBytes(t, 8192)
	got := make([]byte, len(plain))
	require.NoError(t, c.Encrypt(got, plain, 16))

	want := make([]byte, 4096)
	ref.Encrypt(want, plain[4096:], 24) // second sector: IV 16 + 4096/512
	require.Equal(t, want, got[4096:])

	split := make([]byte, 512)
	ref.Encrypt(split, plain[4096+512:4096+1024], 25)
	require.NotEqual(t, split, got[4096+512:4096+1024], "a 4096-byte sector must not be split into 512-byte units")
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name    string
		spec    string
		keySize int
		sector  int
		want    error
	}{
		{"unknown cipher", "serpent-xts-plain64", 64, 512, ErrUnsupported},
		{"unknown mode", "aes-gcm-random", 32, 512, ErrUnsupported},
		{"unknown iv", "aes-xts-benbi", 64, 512, ErrUnsupported},
		{"lmk", "aes-cbc-lmk", 32, 512, ErrUnsupported},
		{"essiv without hash", "aes-cbc-essiv", 32, 512, ErrUnsupported},
		{"essiv sha1", "aes-cbc-essiv:sha1", 32, 512, ErrUnsupported},
		{"hash on plain64", "aes-xts-plain64:sha256", 64, 512, ErrUnsupported},
		{"cbc without iv", "aes-cbc", 32, 512, ErrUnsupported},
		{"ecb with iv", "aes-ecb-plain64", 32, 512, ErrUnsupported},
		{"capi", "capi:xts(aes)-plain64", 64, 512, ErrUnsupported},
		{"bare cipher", "aes", 32, 512, ErrUnsupported},
		{"empty", "", 32, 512, ErrUnsupported},
		{"keycount", "aes:64-cbc-lmk", 32, 512, ErrUnsupported},
		{"xts short key", "aes-xts-plain64", 16, 512, ErrKeySize},
		{"xts odd key", "aes-xts-plain64", 33, 512, ErrKeySize},
		{"cbc long key", "aes-cbc-essiv:sha256", 64, 512, ErrKeySize},
		{"no key", "aes-ecb", 0, 512, ErrKeySize},
		{"sector 256", "aes-xts-plain64", 64, 256, ErrSectorSize},
		{"sector 8192", "aes-xts-plain64", 64, 8192, ErrSectorSize},
		{"sector 1536", "aes-xts-plain64", 64, 1536, ErrSectorSize},
		{"sector 0", "aes-xts-plain64", 64, 0, ErrSectorSize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := New(tt.spec, make([]byte, tt.keySize), tt.sector)
			require.ErrorIs(t, err, tt.want)
			require.Nil(t, c)
			if tt.want == ErrUnsupported {
				var ue *UnsupportedError
				require.ErrorAs(t, err, &ue)
				require.Equal(t, tt.spec, ue.Spec)
				require.Contains(t, err.Error(), fmt.Sprintf("%q", tt.spec))
			}
		})
	}
}

func TestParseSpec(t *testing.T) {
	tests := []struct {
		spec string
		want Spec
	}{
		{"aes-xts-plain64", Spec{Cipher: "aes", Mode: "xts", IV: "plain64"}},
		{"aes-cbc-essiv:sha256", Spec{Cipher: "aes", Mode: "cbc", IV: "essiv", IVHash: "sha256"}},
		{"aes-xts-plain", Spec{Cipher: "aes", Mode: "xts", IV: "plain"}},
		{"aes-ecb", Spec{Cipher: "aes", Mode: "ecb"}},
		{"cipher_null-ecb", Spec{Cipher: "cipher_null", Mode: "ecb"}},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			got, err := ParseSpec(tt.spec)
			require.NoError(t, err)
			require.Equal(t, tt.want, got)
			require.Equal(t, tt.spec, got.String())
		})
	}
}

func TestKeySizes(t *testing.T) {
	xtsSpec, err := ParseSpec("aes-xts-plain64")
	require.NoError(t, err)
	require.Equal(t, []int{32, 48, 64}, xtsSpec.KeySizes())
	require.True(t, xtsSpec.ValidKeySize(64))
	require.False(t, xtsSpec.ValidKeySize(16))
	cbcSpec, err := ParseSpec("aes-cbc-essiv:sha256")
	require.NoError(t, err)
	require.Equal(t, []int{16, 24, 32}, cbcSpec.KeySizes())
	nullSpec, err := ParseSpec("cipher_null-ecb")
	require.NoError(t, err)
	require.True(t, nullSpec.ValidKeySize(0))
}

func TestBufferErrors(t *testing.T) {
	c, err := New("aes-xts-plain64", make([]byte, 64), 512)
	require.NoError(t, err)
	buf := make([]byte, 2048)
	tests := []struct {
		name     string
		dst, src []byte
		want     error
	}{
		{"partial sector", buf[:600], buf[:600], ErrLength},
		{"short dst", make([]byte, 511), make([]byte, 512), ErrLength},
		{"inexact overlap", buf[16:528], buf[:512], ErrOverlap},
		{"overlap the other way", buf[:512], buf[100:612], ErrOverlap},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			require.ErrorIs(t, c.Encrypt(tt.dst, tt.src, 0), tt.want)
			require.ErrorIs(t, c.Decrypt(tt.dst, tt.src, 0), tt.want)
		})
	}
	// An empty call and a longer dst are fine; dst beyond len(src) is untouched.
	require.NoError(t, c.Encrypt(nil, nil, 0))
	dst := make([]byte, 1024)
	require.NoError(t, c.Encrypt(dst, make([]byte, 512), 0))
	require.Equal(t, make([]byte, 512), dst[512:])
}

func TestWipe(t *testing.T) {
	key := randBytes(t, 64)
	c, err := New("aes-xts-essiv:sha256", key, 512)
	require.NoError(t, err)
	blocks := []cipher.Block{c.data, c.tweak, c.essiv}
	c.Wipe()
	c.Wipe() // idempotent
	require.ErrorIs(t, c.Encrypt(make([]byte, 512), make([]byte, 512), 0), ErrWiped)
	require.ErrorIs(t, c.Decrypt(make([]byte, 512), make([]byte, 512), 0), ErrWiped)

	// The key schedules themselves are zero now.
	for _, b := range blocks {
		mem := blockMemory(t, b)
		require.NotEmpty(t, mem)
		require.Equal(t, make([]byte, len(mem)), mem)
	}
	var nilCipher *Cipher
	nilCipher.Wipe()
}

func TestWipeBlockClearsSchedule(t *testing.T) {
	b, err := aes.NewCipher(randBytes(t, 32))
	require.NoError(t, err)
	require.NotEqual(t, make([]byte, len(blockMemory(t, b))), blockMemory(t, b))
	wipeBlock(b)
	require.Equal(t, make([]byte, len(blockMemory(t, b))), blockMemory(t, b))
}

// TestConcurrentUse runs one Cipher from several goroutines (meant for -race).
func TestConcurrentUse(t *testing.T) {
	key := randBytes(t, 64)
	ref, err := xts.NewCipher(aes.NewCipher, key)
	require.NoError(t, err)
	c, err := New("aes-xts-plain64", key, 4096)
	require.NoError(t, err)
	errs := make(chan error, 8)
	for g := 0; g < 8; g++ {
		go func(g int) {
			plain := make([]byte, 3*4096)
			for i := range plain {
				plain[i] = byte(i * (g + 1))
			}
			got := make([]byte, len(plain))
			for round := 0; round < 50; round++ {
				iv := uint64(g*1000 + round*8)
				if err := c.Encrypt(got, plain, iv); err != nil {
					errs <- err
					return
				}
				want := make([]byte, 4096)
				ref.Encrypt(want, plain[4096:8192], iv+8)
				if string(want) != string(got[4096:8192]) {
					errs <- fmt.Errorf("goroutine %d round %d: mismatch", g, round)
					return
				}
			}
			errs <- nil
		}(g)
	}
	for g := 0; g < 8; g++ {
		require.NoError(t, <-errs)
	}
}

func TestEncryptAllocatesNothing(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items under the race detector")
	}
	c, err := New("aes-xts-plain64", randBytes(t, 64), 512)
	require.NoError(t, err)
	buf := make([]byte, 64<<10)
	require.NoError(t, c.Encrypt(buf, buf, 0)) // warm the pool
	allocs := testing.AllocsPerRun(100, func() {
		_ = c.Encrypt(buf, buf, 9)
		_ = c.Decrypt(buf, buf, 9)
	})
	require.Zero(t, allocs)
}

func TestRandomSplits(t *testing.T) {
	// Encrypting a run of sectors at once equals encrypting it piecewise with
	// the IV advanced by SectorSize/512 per sector.
	r := mrand.New(mrand.NewPCG(1, 2))
	for _, spec := range []string{"aes-xts-plain64", "aes-cbc-essiv:sha256"} {
		for _, ss := range sectorSizes {
			key := randBytes(t, 32)
			c, err := New(spec, key, ss)
			require.NoError(t, err)
			plain := randBytes(t, 20*ss)
			iv := r.Uint64()
			whole := make([]byte, len(plain))
			require.NoError(t, c.Encrypt(whole, plain, iv))
			pieces := make([]byte, len(plain))
			for off := 0; off < len(plain); {
				n := (1 + r.IntN(5)) * ss
				n = min(n, len(plain)-off)
				require.NoError(t, c.Encrypt(pieces[off:off+n], plain[off:off+n], iv+uint64(off/512)))
				off += n
			}
			require.Equal(t, whole, pieces, "%s sector %d", spec, ss)
		}
	}
}

// TestLargeCalls covers calls big enough to be split over CPUs, with sizes
// that do not divide evenly, against x/crypto/xts sector by sector.
func TestLargeCalls(t *testing.T) {
	key := randBytes(t, 64)
	ref, err := xts.NewCipher(aes.NewCipher, key)
	require.NoError(t, err)
	for _, ss := range []int{512, 4096} {
		c, err := New("aes-xts-plain64", key, ss)
		require.NoError(t, err)
		for _, size := range []int{parallelMin - ss, parallelMin, 4*parallelMin + 3*ss, 1<<20 + 7*ss} {
			t.Run(fmt.Sprintf("sector%d/%d", ss, size), func(t *testing.T) {
				plain := randBytes(t, size)
				const iv = 1<<32 - 100
				want := make([]byte, size)
				for o := 0; o < size; o += ss {
					ref.Encrypt(want[o:o+ss], plain[o:o+ss], iv+uint64(o/512))
				}
				got := append([]byte(nil), plain...)
				require.NoError(t, c.Encrypt(got, got, iv))
				require.Equal(t, want, got)
				require.NoError(t, c.Decrypt(got, got, iv))
				require.Equal(t, plain, got)
			})
		}
	}
}

// TestWorkersSplit checks that spreading a call over any number of workers
// (fewer, as many as and more than its chunks) gives the serial result.
func TestWorkersSplit(t *testing.T) {
	for _, ss := range []int{512, 4096} {
		c, err := New("aes-xts-plain64", randBytes(t, 64), ss)
		require.NoError(t, err)
		size := 5*parallelChunk + 3*ss
		plain := randBytes(t, size)
		want := make([]byte, size)
		c.cryptSerial(want, plain, 12345, false)
		for _, workers := range []int{2, 3, 6, 7, 64} {
			t.Run(fmt.Sprintf("sector%d/workers%d", ss, workers), func(t *testing.T) {
				got := make([]byte, size)
				c.cryptWorkers(got, plain, 12345, false, workers)
				require.Equal(t, want, got)
				c.cryptWorkers(got, got, 12345, true, workers)
				require.Equal(t, plain, got)
			})
		}
	}
}

// TestScratchIsCleared checks no tweak or IV survives a call in the pool.
func TestScratchIsCleared(t *testing.T) {
	for _, spec := range []string{"aes-xts-plain64", "aes-cbc-essiv:sha256"} {
		c, err := New(spec, randBytes(t, 32), 512)
		require.NoError(t, err)
		buf := randBytes(t, 3*batchBytes)
		require.NoError(t, c.Encrypt(buf, buf, 77))
		s := c.getScratch()
		require.Equal(t, scratch{}, *s, spec)
	}
}
