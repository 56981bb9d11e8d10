package tpm

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"strconv"
	"testing"

	"github.com/google/go-tpm/tpm2"
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
		{"sha1 bank", SealOptions{PCRs: []int{7}, PCRBank: "sha1"}, nil},
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
	t.Log(err)
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

	info, err := ReadLockoutInfo(tp)
	require.NoError(t, err)
	require.Positive(t, info.MaxFailures)
	require.Equal(t, info.MaxFailures, info.TriesLeft())
	for want := info.MaxFailures - 1; want >= 0; want-- {
		_, err = Unseal(tp, s, []byte("wrong "+strconv.Itoa(want)))
		require.ErrorIs(t, err, ErrBadPIN)
		var be *BadPINError
		require.ErrorAs(t, err, &be)
		require.Equal(t, want, be.TriesLeft)
		t.Log(err)
		require.NotContains(t, err.Error(), "wrong "+strconv.Itoa(want), "PIN leaked into error")
	}
	info, err = ReadLockoutInfo(tp)
	require.NoError(t, err)
	require.Zero(t, info.TriesLeft())
	_, err = Unseal(tp, s, []byte("wrong again"))
	require.ErrorIs(t, err, ErrLockout)
	require.Contains(t, err.Error(), "tpm2_dictionarylockout -c")
	t.Log(err)
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
	info, err := ReadLockoutInfo(tp)
	require.NoError(t, err)
	require.Zero(t, info.Failures)

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
	require.Equal(t, "wrong TPM PIN: 1 try left before lockout", (&BadPINError{TriesLeft: 1}).Error())
	require.Equal(t, "wrong TPM PIN: 2 tries left before lockout", (&BadPINError{TriesLeft: 2}).Error())
}

func TestRSAPrimary(t *testing.T) {
	if testing.Short() {
		t.Skip("RSA key generation is slow: skipped in -short mode")
	}
	_, tp := openTestTPM(t)
	sec := randomSecret(t)
	s, err := Seal(tp, sec, SealOptions{PrimaryAlg: AlgRSA, PIN: []byte("1")})
	require.NoError(t, err)
	require.Equal(t, AlgRSA, s.PrimaryAlg)
	got, err := Unseal(tp, s, []byte("1"))
	require.NoError(t, err)
	require.Equal(t, sec, got)
	// The same blob under the wrong primary algorithm does not load.
	s.PrimaryAlg = AlgECC
	_, err = Unseal(tp, s, []byte("1"))
	require.Error(t, err)
	require.Zero(t, loadedHandles(t, tp), "handles leaked")
}

func TestSRKTokens(t *testing.T) {
	_, tp := openTestTPM(t)
	sec := randomSecret(t)
	s, err := Seal(tp, sec, SealOptions{UseSRK: true, PIN: []byte("p"), SaltPIN: true})
	require.NoError(t, err)
	srk, err := parseSRK(s.SRK)
	require.NoError(t, err)
	require.True(t, srk.public.ObjectAttributes.NoDA)

	// A second seal reuses the persistent SRK.
	s2, err := Seal(tp, sec, SealOptions{UseSRK: true})
	require.NoError(t, err)
	require.Equal(t, s.SRK, s2.SRK)

	// With the persistent SRK evicted, the same key is recreated transiently.
	_, err = tpm2.EvictControl{
		Auth:             tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		ObjectHandle:     tpm2.NamedHandle{Handle: SRKHandle, Name: tpm2.TPM2BName{Buffer: srk.name}},
		PersistentHandle: SRKHandle,
	}.Execute(tp)
	require.NoError(t, err)
	got, err := Unseal(tp, s, []byte("p"))
	require.NoError(t, err)
	require.Equal(t, sec, got)

	// Salted PIN: the same PIN under another salt is a wrong PIN.
	ns := *s
	ns.Salt = []byte("other salt")
	_, err = Unseal(tp, &ns, []byte("p"))
	require.ErrorIs(t, err, ErrBadPIN)
	require.Zero(t, loadedHandles(t, tp), "handles leaked")

	// Another TPM has another SRK: refused before anything is unsealed.
	_, tp2 := openTestTPM(t)
	_, err = Unseal(tp2, s, []byte("p"))
	require.ErrorContains(t, err, "tpm2_srk")
	require.Zero(t, loadedHandles(t, tp2), "handles leaked")
}

func FuzzParseToken(f *testing.F) {
	f.Add([]byte(token252))
	f.Add([]byte(`{"type":"systemd-tpm2","keyslots":[],"tpm2-blob":["AA=="],"tpm2-pcrs":[],"tpm2-policy-hash":"","x":[1,{"y":2}],"tpm2_srk":"` + srk255 + `"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		tok, err := ParseToken(data)
		if err != nil {
			return
		}
		out, err := tok.MarshalJSON()
		require.NoError(t, err)
		tok2, err := ParseToken(out)
		require.NoError(t, err, "%s", out)
		out2, err := tok2.MarshalJSON()
		require.NoError(t, err)
		require.Equal(t, string(out), string(out2))
		if s, err := tok.Sealed(); err == nil {
			_, _, _ = splitBlob(s.Blob)
			if len(s.SRK) > 0 {
				_, _ = parseSRK(s.SRK)
			}
		}
	})
}

func TestPrimaryAlgFallback(t *testing.T) {
	if testing.Short() {
		t.Skip("RSA key generation is slow: skipped in -short mode")
	}
	_, tp := openTestTPM(t)
	for _, alg := range []string{AlgECC, AlgRSA} {
		sec := randomSecret(t)
		s, err := Seal(tp, sec, SealOptions{PrimaryAlg: alg})
		require.NoError(t, err)
		tok := NewToken(s, 1)
		tok.PrimaryAlg = "" // as systemd before 250 wrote it
		old, err := tok.Sealed()
		require.NoError(t, err)
		got, err := Unseal(tp, old, nil)
		require.NoError(t, err, alg)
		require.Equal(t, sec, got)
		require.Zero(t, loadedHandles(t, tp), "handles leaked")
	}
}
