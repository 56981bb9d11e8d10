package tpm

import (
	"encoding/base64"
	"encoding/json"
	"testing"

	"github.com/google/go-tpm/tpm2"
	"github.com/stretchr/testify/require"
)

const token252 = `{"type":"systemd-tpm2","keyslots":["1"],"tpm2-blob":"AJ4AIAAB","tpm2-pcrs":[7],"tpm2-pcr-bank":"sha256","tpm2-primary-alg":"ecc","tpm2-policy-hash":"4b0b22f51e59c656618a3d381a1d85a4f7c2b8e75237a026f6e2097c530570c7","tpm2-pin":false}`

// A tpm2_srk as systemd 255 writes it (from a public LUKS2 dump).
const srk255 = "gQAAAQAiAAvfr86mWQ4ncWaXV9jUk3nRHRw/bEYnAiQSalhvf/6mpwAAAAEAWgAjAAsAAwRyAAAABgCAAEMAEAADABAAIP6Ye/LshHa6QKXX2NTPu7PEtBsUMnV57+02mjS75wKXACDvxzC6RaHZbojoiA3IzwXNp7vsM285RQApR76fkT8xKA=="

func TestParseTokenSystemd252(t *testing.T) {
	tok, err := ParseToken([]byte(token252))
	require.NoError(t, err)
	require.Equal(t, []int{1}, tok.Keyslots)
	require.Equal(t, []int{7}, tok.PCRs)
	require.Equal(t, "sha256", tok.PCRBank)
	require.Equal(t, "ecc", tok.PrimaryAlg)
	require.False(t, tok.PIN)
	require.Len(t, tok.PolicyHash, 32)
	out, err := json.Marshal(tok)
	require.NoError(t, err)
	require.Equal(t, token252, string(out), "parse then marshal gives the same bytes")
}

func TestTokenPreservesUnknownFields(t *testing.T) {
	in := `{"type":"systemd-tpm2","x-future":{"a":[1,2,{"b":null}]},"keyslots":["3","4"],"tpm2-blob":"AJ4AIAAB","tpm2-pcrs":[0,7],"tpm2-policy-hash":"00ff","tpm2-pin":true,"tpm2_pcrlock":false,"tpm2_salt":"c2FsdA==","tpm2_srk":"` + srk255 + `","zzz":"keep me"}`
	tok, err := ParseToken([]byte(in))
	require.NoError(t, err)
	require.Equal(t, []byte("salt"), tok.Salt)
	require.True(t, tok.PIN)
	out, err := json.Marshal(tok)
	require.NoError(t, err)
	require.Equal(t, in, string(out))

	// Changing a known field keeps the unknown ones.
	tok.Keyslots = []int{5}
	tok.Salt = nil
	out, err = tok.MarshalJSON()
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(out, &m))
	require.Equal(t, "keep me", m["zzz"])
	require.Equal(t, map[string]any{"a": []any{1.0, 2.0, map[string]any{"b": nil}}}, m["x-future"])
	require.Equal(t, []any{"5"}, m["keyslots"])
	require.NotContains(t, m, "tpm2_salt")
	require.Equal(t, false, m["tpm2_pcrlock"])
}

func TestParseTokenErrors(t *testing.T) {
	cases := map[string]string{
		"not object":     `[]`,
		"wrong type":     `{"type":"systemd-fido2","keyslots":["1"],"tpm2-blob":"AA==","tpm2-pcrs":[7],"tpm2-policy-hash":"00"}`,
		"missing blob":   `{"type":"systemd-tpm2","keyslots":["1"],"tpm2-pcrs":[7],"tpm2-policy-hash":"00"}`,
		"bad base64":     `{"type":"systemd-tpm2","keyslots":["1"],"tpm2-blob":"!!","tpm2-pcrs":[7],"tpm2-policy-hash":"00"}`,
		"bad pcr":        `{"type":"systemd-tpm2","keyslots":["1"],"tpm2-blob":"AA==","tpm2-pcrs":[24],"tpm2-policy-hash":"00"}`,
		"bad keyslot":    `{"type":"systemd-tpm2","keyslots":["01"],"tpm2-blob":"AA==","tpm2-pcrs":[7],"tpm2-policy-hash":"00"}`,
		"bad hex":        `{"type":"systemd-tpm2","keyslots":["1"],"tpm2-blob":"AA==","tpm2-pcrs":[7],"tpm2-policy-hash":"zz"}`,
		"duplicate":      `{"type":"systemd-tpm2","type":"systemd-tpm2","keyslots":["1"],"tpm2-blob":"AA==","tpm2-pcrs":[7],"tpm2-policy-hash":"00"}`,
		"trailing data":  `{"type":"systemd-tpm2","keyslots":["1"],"tpm2-blob":"AA==","tpm2-pcrs":[7],"tpm2-policy-hash":"00"} {}`,
		"bad bank":       `{"type":"systemd-tpm2","keyslots":["1"],"tpm2-blob":"AA==","tpm2-pcrs":[7],"tpm2-policy-hash":"00","tpm2-pcr-bank":"md5"}`,
		"two blobs list": `{"type":"systemd-tpm2","keyslots":["1"],"tpm2-blob":["AA==","AA=="],"tpm2-pcrs":[7],"tpm2-policy-hash":"00"}`,
	}
	for name, in := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := ParseToken([]byte(in))
			require.Error(t, err)
			var pe *TokenParseError
			require.ErrorAs(t, err, &pe)
		})
	}
}

func TestTokenSealedConversion(t *testing.T) {
	s := &Sealed{Blob: []byte{0, 1, 2}, PolicyHash: []byte{9}, PrimaryAlg: "ecc", PCRs: []int{0, 7}, PCRBank: "sha256", PIN: true, Salt: []byte("s")}
	tok := NewToken(s, 2)
	b, err := tok.MarshalJSON()
	require.NoError(t, err)
	require.JSONEq(t, `{"type":"systemd-tpm2","keyslots":["2"],"tpm2-blob":"AAEC","tpm2-pcrs":[0,7],"tpm2-pcr-bank":"sha256","tpm2-primary-alg":"ecc","tpm2-policy-hash":"09","tpm2-pin":true,"tpm2_salt":"cw=="}`, string(b))
	back, err := ParseToken(b)
	require.NoError(t, err)
	s2, err := back.Sealed()
	require.NoError(t, err)
	require.Equal(t, s, s2)

	back.PubKey = []byte{1}
	_, err = back.Sealed()
	require.ErrorIs(t, err, ErrUnsupported)
}

func TestParseSRKFromSystemd(t *testing.T) {
	raw, err := base64.StdEncoding.DecodeString(srk255)
	require.NoError(t, err)
	srk, err := parseSRK(raw)
	require.NoError(t, err)
	require.Equal(t, SRKHandle, srk.handle)
	// Its public area is our SRK template with the key filled in.
	tmpl, err := primaryTemplate(AlgECC, true)
	require.NoError(t, err)
	require.Equal(t, tmpl.ObjectAttributes, srk.public.ObjectAttributes)
	got, err := srk.public.Parameters.ECCDetail()
	require.NoError(t, err)
	want, err := tmpl.Parameters.ECCDetail()
	require.NoError(t, err)
	require.Equal(t, tpm2.Marshal(*want), tpm2.Marshal(*got))
	name, err := tpm2.ObjectName(&srk.public)
	require.NoError(t, err)
	require.Equal(t, srk.name, name.Buffer)
	require.Equal(t, raw, serializeSRK(srk.handle, srk.name, srk.public))
}

func TestPassphrase(t *testing.T) {
	require.Equal(t, "AAEC/w==", string(Passphrase([]byte{0, 1, 2, 0xff})))
}

func TestParsePCRList(t *testing.T) {
	cases := []struct {
		in   string
		want []int
		ok   bool
	}{
		{"7", []int{7}, true},
		{"0+7", []int{0, 7}, true},
		{"7+0+7", []int{0, 7}, true},
		{"1,4", []int{1, 4}, true},
		{"", []int{}, true},
		{"24", nil, false},
		{"x", nil, false},
		{"+", nil, false},
		{"-1", nil, false},
	}
	for _, c := range cases {
		got, err := ParsePCRList(c.in)
		if !c.ok {
			require.Error(t, err, c.in)
			continue
		}
		require.NoError(t, err, c.in)
		require.Equal(t, c.want, got, c.in)
	}
	require.Equal(t, "0+7", FormatPCRList([]int{0, 7}))
}
