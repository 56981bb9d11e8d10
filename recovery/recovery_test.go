package recovery

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestGenerate(t *testing.T) {
	seen := map[string]bool{}
	for range 200 {
		pw, err := Generate()
		require.NoError(t, err)
		require.Len(t, pw, Len)
		require.True(t, Looks(pw))
		canon, err := Parse(pw)
		require.NoError(t, err)
		require.Equal(t, pw, string(canon))
		key, err := Key(pw)
		require.NoError(t, err)
		require.Equal(t, pw, FromKey(key))
		require.False(t, seen[pw], "duplicate recovery password")
		seen[pw] = true
	}
}

func TestFromKeyKnown(t *testing.T) {
	tests := []struct {
		name string
		key  [KeyBytes]byte
		want string
	}{
		{"zero", [KeyBytes]byte{}, "000000-000000-000000-000000-000000-000000-000000-000000"},
		{"all ones", [KeyBytes]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
			"720885-720885-720885-720885-720885-720885-720885-720885"},
		// Little-endian words: bytes 01 00 are the word 1, group 000011.
		{"word order", [KeyBytes]byte{1, 0, 0, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
			"000011-002816-000022-000000-000000-000000-000000-000000"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, FromKey(tc.key))
			key, err := Key(tc.want)
			require.NoError(t, err)
			require.Equal(t, tc.key, key)
		})
	}
}

func TestParseForms(t *testing.T) {
	const canon = "042647-302313-590458-071500-554323-116567-412181-516978"
	tests := []struct {
		name, in string
	}{
		{"canonical", canon},
		{"spaces", "042647 302313 590458 071500 554323 116567 412181 516978"},
		{"no separators", "042647302313590458071500554323116567412181516978"},
		{"surrounding white space", "  \t" + canon + "\t "},
		{"line end", canon + "\r\n"},
		{"spaced dashes", "042647 - 302313 - 590458 - 071500 - 554323 - 116567 - 412181 - 516978"},
		{"mixed separators", "042647-302313 590458\t071500-554323  116567 -412181- 516978"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			require.True(t, Looks(tc.in))
			got, err := Parse(tc.in)
			require.NoError(t, err)
			require.Equal(t, canon, string(got))
		})
	}
}

func TestParseNotRecovery(t *testing.T) {
	tests := []struct {
		name, in string
	}{
		{"empty", ""},
		{"ordinary passphrase", "correct horse battery staple"},
		{"seven groups", "042647-302313-590458-071500-554323-116567-412181"},
		{"nine groups", "042647-302313-590458-071500-554323-116567-412181-516978-000000"},
		{"47 digits", "04264730231359045807150055432311656741218151697"},
		{"49 digits", "0426473023135904580715005543231165674121815169780"},
		{"letter in a group", "042647-302313-59045a-071500-554323-116567-412181-516978"},
		{"double dash", "042647--302313-590458-071500-554323-116567-412181-516978"},
		{"trailing dash", "042647-302313-590458-071500-554323-116567-412181-516978-"},
		{"leading dash", "-042647-302313-590458-071500-554323-116567-412181-516978"},
		{"four-digit group", "042647-3023-590458-071500-554323-116567-412181-516978"},
		{"partial separators", "042647302313-590458-071500-554323-116567-412181-516978"},
		{"unicode digits", "٠٤٢٦٤٧-302313-590458-071500-554323-116567-412181-516978"},
		{"other separator", "042647.302313.590458.071500.554323.116567.412181.516978"},
		{"newline inside", "042647\n302313 590458 071500 554323 116567 412181 516978"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			require.False(t, Looks(tc.in))
			got, err := Parse(tc.in)
			require.ErrorIs(t, err, ErrNotRecovery)
			require.NotErrorIs(t, err, ErrInvalid)
			require.Nil(t, got)
			_, err = Key(tc.in)
			require.ErrorIs(t, err, ErrNotRecovery)
		})
	}
}

func TestParseGroupErrors(t *testing.T) {
	tests := []struct {
		name, in string
		index    int
		group    string
		reason   string
	}{
		{"not a multiple of 11", "042647-302313-590458-071501-554323-116567-412181-516978", 4, "071501", "multiple of 11"},
		{"above the maximum", "042647-302313-590458-071500-554323-116567-412181-720896", 8, "720896", "above 720885"},
		{"999999 is a multiple of 11 but too large", "999999-302313-590458-071500-554323-116567-412181-516978", 1, "999999", "above"},
		{"five digits", "042647-302313-59045-071500-554323-116567-412181-516978", 3, "59045", "5 digits"},
		{"seven digits", "042647-302313-590458-0715000-554323-116567-412181-516978", 4, "0715000", "7 digits"},
		{"first bad group is named", "042647-302313-590459-071501-554323-116567-412181-516978", 3, "590459", "multiple of 11"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			require.True(t, Looks(tc.in))
			got, err := Parse(tc.in)
			require.Nil(t, got)
			require.ErrorIs(t, err, ErrInvalid)
			require.NotErrorIs(t, err, ErrNotRecovery)
			var ge *GroupError
			require.True(t, errors.As(err, &ge))
			require.Equal(t, tc.index, ge.Index)
			require.Equal(t, tc.group, ge.Group)
			require.Contains(t, err.Error(), tc.reason)
			require.NotContains(t, err.Error(), tc.group, "the message must not carry the digits")
		})
	}
}

// TestEveryTypoIsCaught changes every digit of several passwords to every
// other digit, and swaps every pair of adjacent differing digits inside a
// group: each must be refused with the right group named (see the package
// comment for why none can slip through).
func TestEveryTypoIsCaught(t *testing.T) {
	pws := []string{"000000-720885-042647-302313-590458-071500-554323-116567"}
	for range 5 {
		pw, err := Generate()
		require.NoError(t, err)
		pws = append(pws, pw)
	}
	var typos, swaps int
	for _, pw := range pws {
		for pos := range len(pw) {
			if pw[pos] == '-' {
				continue
			}
			index := pos/(GroupDigits+1) + 1
			for d := byte('0'); d <= '9'; d++ {
				if d == pw[pos] {
					continue
				}
				typo := []byte(pw)
				typo[pos] = d
				_, err := Parse(string(typo))
				var ge *GroupError
				require.Truef(t, errors.As(err, &ge), "typo %s of %s not caught", typo, pw)
				require.Equal(t, index, ge.Index)
				typos++
			}
			if pos+1 < len(pw) && pw[pos+1] != '-' && pw[pos] != pw[pos+1] {
				swap := []byte(pw)
				swap[pos], swap[pos+1] = swap[pos+1], swap[pos]
				_, err := Parse(string(swap))
				var ge *GroupError
				require.Truef(t, errors.As(err, &ge), "transposition %s of %s not caught", swap, pw)
				require.Equal(t, index, ge.Index)
				swaps++
			}
		}
	}
	require.Equal(t, len(pws)*digits*9, typos)
	require.Positive(t, swaps)
}

// TestBitLockerImages parses the recovery passwords real BitLocker volumes
// were made with, as listed in cryptsetup's test images.
func TestBitLockerImages(t *testing.T) {
	const archive = "/work/shared/testdata/cryptsetup/bitlk-images.tar.xz"
	if _, err := os.Stat(archive); err != nil {
		t.Skipf("%s not found; skipping", archive)
	}
	out, err := exec.Command("tar", "-xJOf", archive, "bitlk-images/images.conf").Output()
	if err != nil {
		t.Skipf("cannot extract images.conf (tar with xz needed): %v", err)
	}
	var n int
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		rp, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "RP=")
		if !ok || rp == "" { // a clear-key image has no recovery password
			continue
		}
		n++
		t.Run(rp, func(t *testing.T) {
			require.True(t, Looks(rp))
			canon, err := Parse(rp)
			require.NoError(t, err)
			require.Equal(t, rp, string(canon))
			key, err := Key(rp)
			require.NoError(t, err)
			require.Equal(t, rp, FromKey(key))
		})
	}
	require.NoError(t, sc.Err())
	require.Positive(t, n, "no RP= lines in images.conf")
	t.Logf("%d BitLocker recovery passwords parsed", n)
}

func FuzzParse(f *testing.F) {
	f.Add("042647-302313-590458-071500-554323-116567-412181-516978")
	f.Add("042647302313590458071500554323116567412181516978")
	f.Add("042647 302313 590458 071500 554323 116567 412181 516978")
	f.Add("042647-302313-59045-071500-554323-116567-412181-516978")
	f.Add("999999-999999-999999-999999-999999-999999-999999-999999")
	f.Add("correct horse battery staple")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		looks := Looks(s)
		canon, err := Parse(s)
		switch {
		case err == nil:
			require.True(t, looks)
			require.Len(t, canon, Len)
			again, err := Parse(string(canon))
			require.NoError(t, err)
			require.Equal(t, canon, again)
			key, err := Key(s)
			require.NoError(t, err)
			require.Equal(t, string(canon), FromKey(key))
		case errors.Is(err, ErrNotRecovery):
			require.False(t, looks)
		default:
			require.True(t, looks)
			var ge *GroupError
			require.True(t, errors.As(err, &ge))
			require.True(t, ge.Index >= 1 && ge.Index <= Groups)
			require.Contains(t, s, ge.Group)
		}
	})
}

// TestCryptsetupKeySlot formats a LUKS2 image with cryptsetup whose
// passphrase is a generated recovery password, then opens it with the
// canonical form Parse makes from the same password typed with spaces.
func TestCryptsetupKeySlot(t *testing.T) {
	cs, err := exec.LookPath("cryptsetup")
	if err != nil {
		t.Skip("cryptsetup not installed; skipping interop test")
	}
	pw, err := Generate()
	require.NoError(t, err)
	dir := t.TempDir()
	img, key := dir+"/img", dir+"/key"
	require.NoError(t, os.WriteFile(img, nil, 0o600))
	require.NoError(t, os.Truncate(img, 20<<20))
	require.NoError(t, os.WriteFile(key, []byte(pw), 0o600))
	out, err := exec.Command(cs, "luksFormat", "--type", "luks2", "-q", "--pbkdf", "pbkdf2",
		"--pbkdf-force-iterations", "1000", "--key-file", key, img).CombinedOutput()
	require.NoError(t, err, "%s", out)

	typed := strings.ReplaceAll(pw, "-", "  ")
	canon, err := Parse(typed)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(key, canon, 0o600))
	out, err = exec.Command(cs, "open", "--test-passphrase", "--key-file", key, img).CombinedOutput()
	require.NoError(t, err, "%s", out)

	require.NoError(t, os.WriteFile(key, []byte(typed), 0o600))
	require.Error(t, exec.Command(cs, "open", "--test-passphrase", "--key-file", key, img).Run(),
		"the spaced form is a different passphrase; only the canonical form opens")
}
