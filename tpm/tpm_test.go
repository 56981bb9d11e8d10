package tpm

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

func sha256Sum(b []byte) []byte { s := sha256.Sum256(b); return s[:] }

func randomSecret(t testing.TB) []byte {
	s := make([]byte, 32)
	_, err := rand.Read(s)
	require.NoError(t, err)
	return s
}

func TestSealUnsealRoundTrip(t *testing.T) {
	_, tp := openTestTPM(t)
	cases := []struct {
		name string
		opts SealOptions
		pin  []byte
	}{
		{"pcr7", SealOptions{}, nil},
		{"pcr0+7 with PIN", SealOptions{PCRs: []int{0, 7}, PIN: []byte("1234")}, []byte("1234")},
		{"no PCRs", SealOptions{PCRs: []int{}}, nil},
		{"many PCRs", SealOptions{PCRs: []int{0, 1, 2, 3, 4, 5, 7, 8, 9, 10, 11, 12, 14}}, nil},
		{"SRK and salted PIN (254+ style)", SealOptions{PIN: []byte("hunter2"), SaltPIN: true, UseSRK: true}, []byte("hunter2")},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			sec := randomSecret(t)
			s, err := Seal(tp, sec, c.opts)
			require.NoError(t, err)
			require.Equal(t, c.opts.PIN != nil, s.PIN)
			require.Equal(t, AlgECC, s.PrimaryAlg)
			require.Equal(t, c.opts.UseSRK, s.SRK != nil)
			require.Equal(t, c.opts.SaltPIN, s.Salt != nil)
			got, err := Unseal(tp, s, c.pin)
			require.NoError(t, err)
			require.Equal(t, sec, got)
			require.Zero(t, loadedHandles(t, tp), "handles leaked")
		})
	}
}

func TestUnsealPCRChanged(t *testing.T) {
	_, tp := openTestTPM(t)
	sec := randomSecret(t)
	s, err := Seal(tp, sec, SealOptions{PCRs: []int{0, 7}})
	require.NoError(t, err)
	extendPCR(t, tp, 7, "new secure boot db")
	_, err = Unseal(tp, s, nil)
	require.ErrorIs(t, err, ErrPCRMismatch)
	var pe *PCRMismatchError
	require.ErrorAs(t, err, &pe)
	require.Equal(t, []int{0, 7}, pe.PCRs)
	require.Contains(t, err.Error(), "0+7")
	require.Zero(t, loadedHandles(t, tp), "handles leaked")

	// Extending a PCR the secret is not bound to changes nothing.
	s2, err := Seal(tp, sec, SealOptions{PCRs: []int{7}})
	require.NoError(t, err)
	extendPCR(t, tp, 8, "unrelated")
	got, err := Unseal(tp, s2, nil)
	require.NoError(t, err)
	require.Equal(t, sec, got)
}

func TestWrongPINCountsDownToLockout(t *testing.T) {
	_, tp := openTestTPM(t)
	sec := randomSecret(t)
	s, err := Seal(tp, sec, SealOptions{PIN: []byte("correct horse")})
	require.NoError(t, err)

	_, err = Unseal(tp, s, nil)
	require.ErrorIs(t, err, ErrPINRequired)

	info, err := readDAInfo(tp)
	require.NoError(t, err)
	require.Positive(t, info.max)
	for want := info.max - 1; want >= 0; want-- {
		_, err = Unseal(tp, s, []byte("wrong "+strconv.Itoa(want)))
		require.ErrorIs(t, err, ErrBadPIN)
		var be *BadPINError
		require.ErrorAs(t, err, &be)
		require.Equal(t, want, be.TriesLeft)
		require.NotContains(t, err.Error(), "wrong "+strconv.Itoa(want), "PIN leaked into error")
	}
	_, err = Unseal(tp, s, []byte("wrong again"))
	require.ErrorIs(t, err, ErrLockout)
	require.Contains(t, err.Error(), "tpm2_dictionarylockout -c")
	// While locked out the correct PIN is refused too.
	_, err = Unseal(tp, s, []byte("correct horse"))
	require.ErrorIs(t, err, ErrLockout)
	require.Zero(t, loadedHandles(t, tp), "handles leaked")
}

// interiorZeroPIN returns a PIN whose SHA-256 has a zero byte that is not
// trailing: go-tpm v0.9.8 would cut the auth value there.
func interiorZeroPIN(t testing.TB, salt []byte) []byte {
	for i := 0; i < 100000; i++ {
		pin := []byte("pin" + strconv.Itoa(i))
		var d []byte
		if salt == nil {
			d = sha256Sum(pin)
		} else {
			d = pinAuthValue(pin, salt) // trimmed already
		}
		k := bytes.IndexByte(d, 0)
		if k >= 0 && k < len(bytes.TrimRight(d, "\x00"))-1 {
			return pin
		}
	}
	t.Fatal("no PIN found")
	return nil
}

func TestInteriorZeroBytePIN(t *testing.T) {
	_, tp := openTestTPM(t)
	pin := interiorZeroPIN(t, nil)
	d := sha256Sum(pin)
	t.Logf("PIN %q: SHA-256 %x", pin, d)
	sec := randomSecret(t)
	s, err := Seal(tp, sec, SealOptions{PIN: pin})
	require.NoError(t, err)
	got, err := Unseal(tp, s, pin)
	require.NoError(t, err, "interior zero byte in the PIN's auth value")
	require.Equal(t, sec, got)
	// And the lockout counter did not move.
	info, err := readDAInfo(tp)
	require.NoError(t, err)
	require.Zero(t, info.counter)

	// A PIN equal up to the zero byte is a wrong PIN.
	_, err = Unseal(tp, s, []byte("another"))
	require.ErrorIs(t, err, ErrBadPIN)
}

func TestTrimTrailingZeros(t *testing.T) {
	cases := []struct{ in, want []byte }{
		{nil, nil},
		{[]byte{0, 0}, []byte{}},
		{[]byte{1, 0, 2}, []byte{1, 0, 2}},
		{[]byte{1, 0, 2, 0, 0}, []byte{1, 0, 2}},
		{[]byte{0, 1}, []byte{0, 1}},
	}
	for _, c := range cases {
		require.Equal(t, len(c.want), len(trimTrailingZeros(c.in)), "%x", c.in)
		require.True(t, bytes.Equal(c.want, trimTrailingZeros(c.in)), "%x", c.in)
	}
}

func TestPBKDF2SystemdVector(t *testing.T) {
	// Vector from systemd's test-tpm2.c.
	got := pbkdf2SHA256([]byte{0, 'p', 'a', 's', 's'}, []byte{'m', 'y', 's', 'a', 0, 'l', 't'}, 10000, 32)
	want := []byte{0xE3, 0x07, 0x12, 0xBE, 0xEE, 0xF5, 0x5D, 0x18, 0x72, 0xF4, 0xCF, 0xF1, 0x20, 0x6B, 0xD6, 0x66,
		0xCD, 0x7C, 0xE7, 0x4F, 0xC2, 0x16, 0x70, 0x5B, 0x9B, 0x2F, 0x7D, 0xE2, 0x3B, 0x42, 0x3A, 0x1B}
	require.Equal(t, want, got)
}

func TestErrorsAreTyped(t *testing.T) {
	require.True(t, errors.Is(&LockoutError{}, ErrLockout))
	require.True(t, errors.Is(&BadPINError{TriesLeft: 1}, ErrBadPIN))
	require.Equal(t, "wrong TPM PIN: 1 tries left before lockout", (&BadPINError{TriesLeft: 1}).Error())
}
