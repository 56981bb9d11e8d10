package tpm

import (
	"crypto"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// maxPCR is the highest PCR index of a PC-client TPM.
const maxPCR = 23

// DefaultPCRs is the PCR set used when SealOptions.PCRs is nil: PCR 7, the
// Secure Boot policy, as systemd-cryptenroll defaults to.
var DefaultPCRs = []int{7}

// ParsePCRList parses a PCR list as systemd-cryptenroll's --tpm2-pcrs takes
// it: indexes 0–23 separated by "+" (or ","), e.g. "0+7". The result is
// sorted and without duplicates; an empty string gives an empty list.
func ParsePCRList(s string) ([]int, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return []int{}, nil
	}
	var pcrs []int
	for _, f := range strings.FieldsFunc(s, func(r rune) bool { return r == '+' || r == ',' }) {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 0 || n > maxPCR {
			return nil, fmt.Errorf("parse PCR list %q: %q is not a PCR index 0–%d", s, f, maxPCR)
		}
		pcrs = append(pcrs, n)
	}
	if len(pcrs) == 0 {
		return nil, fmt.Errorf("parse PCR list %q: no PCR index", s)
	}
	slices.Sort(pcrs)
	return slices.Compact(pcrs), nil
}

// FormatPCRList formats PCRs as "0+7".
func FormatPCRList(pcrs []int) string {
	parts := make([]string, len(pcrs))
	for i, p := range pcrs {
		parts[i] = strconv.Itoa(p)
	}
	return strings.Join(parts, "+")
}

// checkPCRs validates PCR indexes and returns them sorted without duplicates.
func checkPCRs(pcrs []int) ([]int, error) {
	out := slices.Clone(pcrs)
	for _, p := range out {
		if p < 0 || p > maxPCR {
			return nil, fmt.Errorf("PCR %d out of range 0–%d", p, maxPCR)
		}
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// bankAlg maps a systemd PCR bank name to its TPM algorithm.
func bankAlg(bank string) (tpm2.TPMIAlgHash, crypto.Hash, error) {
	switch bank {
	case "sha256", "":
		return tpm2.TPMAlgSHA256, crypto.SHA256, nil
	case "sha1":
		return tpm2.TPMAlgSHA1, crypto.SHA1, nil
	case "sha384":
		return tpm2.TPMAlgSHA384, crypto.SHA384, nil
	case "sha512":
		return tpm2.TPMAlgSHA512, crypto.SHA512, nil
	}
	return 0, 0, fmt.Errorf("PCR bank %q: %w", bank, ErrUnsupported)
}

// pcrSelection builds a TPML_PCR_SELECTION for one bank; the bitmap is 3
// bytes, as TPMs and systemd expect.
func pcrSelection(alg tpm2.TPMIAlgHash, pcrs []int) tpm2.TPMLPCRSelection {
	bitmap := make([]byte, 3)
	for _, p := range pcrs {
		bitmap[p/8] |= 1 << (p % 8)
	}
	return tpm2.TPMLPCRSelection{PCRSelections: []tpm2.TPMSPCRSelection{{Hash: alg, PCRSelect: bitmap}}}
}

// ReadPCRs reads the current values of pcrs from bank ("sha256" if empty).
// The TPM may answer fewer PCRs per command than asked; ReadPCRs asks again
// for the rest. A PCR the bank does not have is an error.
func ReadPCRs(t transport.TPM, bank string, pcrs []int) (map[int][]byte, error) {
	alg, _, err := bankAlg(bank)
	if err != nil {
		return nil, fmt.Errorf("read PCRs: %w", err)
	}
	pcrs, err = checkPCRs(pcrs)
	if err != nil {
		return nil, fmt.Errorf("read PCRs: %w", err)
	}
	t = withRetry(t)
	out := make(map[int][]byte, len(pcrs))
	remaining := pcrs
	for len(remaining) > 0 {
		rsp, err := (tpm2.PCRRead{PCRSelectionIn: pcrSelection(alg, remaining)}).Execute(t)
		if err != nil {
			return nil, fmt.Errorf("read PCRs %s: %w", FormatPCRList(remaining), err)
		}
		var got []int
		for _, sel := range rsp.PCRSelectionOut.PCRSelections {
			if sel.Hash != alg {
				continue
			}
			for i, b := range sel.PCRSelect {
				for bit := 0; bit < 8; bit++ {
					if b&(1<<bit) != 0 {
						got = append(got, i*8+bit)
					}
				}
			}
		}
		if len(got) == 0 || len(got) != len(rsp.PCRValues.Digests) {
			return nil, fmt.Errorf("read PCRs %s: bank %s does not hold them", FormatPCRList(remaining), bankName(bank))
		}
		for i, p := range got {
			out[p] = rsp.PCRValues.Digests[i].Buffer
		}
		var rest []int
		for _, p := range remaining {
			if _, ok := out[p]; !ok {
				rest = append(rest, p)
			}
		}
		if len(rest) == len(remaining) {
			return nil, fmt.Errorf("read PCRs %s: TPM returned none of them", FormatPCRList(remaining))
		}
		remaining = rest
	}
	return out, nil
}

// bankName returns bank, or "sha256" for the empty default.
func bankName(bank string) string {
	if bank == "" {
		return "sha256"
	}
	return bank
}

// pcrPolicyDigest returns the pcrDigest of TPM2_PolicyPCR for the given
// values: the bank's hash over the PCR values in ascending index order.
func pcrPolicyDigest(h crypto.Hash, pcrs []int, values map[int][]byte) []byte {
	d := h.New()
	for _, p := range pcrs {
		d.Write(values[p])
	}
	return d.Sum(nil)
}
