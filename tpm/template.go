package tpm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
)

// SRKHandle is the persistent handle of the storage root key used by
// systemd 254+ (TCG provisioning guidance).
const SRKHandle tpm2.TPMHandle = 0x81000001

// Primary key algorithms, as named in the token's "tpm2-primary-alg".
const (
	AlgECC = "ecc"
	AlgRSA = "rsa"
)

// storageSymmetric is AES-128-CFB, the symmetric scheme of storage keys.
func storageSymmetric() tpm2.TPMTSymDefObject {
	return tpm2.TPMTSymDefObject{
		Algorithm: tpm2.TPMAlgAES,
		KeyBits:   tpm2.NewTPMUSymKeyBits(tpm2.TPMAlgAES, tpm2.TPMKeyBits(128)),
		Mode:      tpm2.NewTPMUSymMode(tpm2.TPMAlgAES, tpm2.TPMAlgCFB),
	}
}

// primaryTemplate returns the storage primary key template systemd uses:
// restricted decrypt key with fixedTPM, fixedParent, sensitiveDataOrigin and
// userWithAuth, AES-128-CFB, and an empty unique field. systemd 252 creates it
// transiently without noDA; 254+ persists it as SRK with noDA.
func primaryTemplate(alg string, noDA bool) (tpm2.TPMTPublic, error) {
	attrs := tpm2.TPMAObject{
		FixedTPM:            true,
		FixedParent:         true,
		SensitiveDataOrigin: true,
		UserWithAuth:        true,
		NoDA:                noDA,
		Restricted:          true,
		Decrypt:             true,
	}
	switch alg {
	case AlgECC, "":
		return tpm2.TPMTPublic{
			Type:             tpm2.TPMAlgECC,
			NameAlg:          tpm2.TPMAlgSHA256,
			ObjectAttributes: attrs,
			Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
				Symmetric: storageSymmetric(),
				Scheme:    tpm2.TPMTECCScheme{Scheme: tpm2.TPMAlgNull},
				CurveID:   tpm2.TPMECCNistP256,
				KDF:       tpm2.TPMTKDFScheme{Scheme: tpm2.TPMAlgNull},
			}),
			Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{}),
		}, nil
	case AlgRSA:
		return tpm2.TPMTPublic{
			Type:             tpm2.TPMAlgRSA,
			NameAlg:          tpm2.TPMAlgSHA256,
			ObjectAttributes: attrs,
			Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{
				Symmetric: storageSymmetric(),
				Scheme:    tpm2.TPMTRSAScheme{Scheme: tpm2.TPMAlgNull},
				KeyBits:   2048,
			}),
			Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{}),
		}, nil
	}
	return tpm2.TPMTPublic{}, fmt.Errorf("primary key algorithm %q: %w", alg, ErrUnsupported)
}

// sealedTemplate returns the public area of the sealed data object: a
// KEYEDHASH object usable only through its policy (no userWithAuth).
func sealedTemplate(policy []byte) tpm2.TPMTPublic {
	return tpm2.TPMTPublic{
		Type:    tpm2.TPMAlgKeyedHash,
		NameAlg: tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{
			FixedTPM:    true,
			FixedParent: true,
		},
		AuthPolicy: tpm2.TPM2BDigest{Buffer: policy},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgKeyedHash, &tpm2.TPMSKeyedHashParms{
			Scheme: tpm2.TPMTKeyedHashScheme{Scheme: tpm2.TPMAlgNull},
		}),
		Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgKeyedHash, &tpm2.TPM2BDigest{}),
	}
}

// esysResource is the resource type tag of a serialized ESYS_TR for a key.
const esysResource = 1

// srkInfo is a parsed "tpm2_srk": an ESYS_TR serialization of the SRK as
// tpm2-tss's Esys_TR_Serialize writes it: handle (u32) ‖ TPM2B_NAME ‖
// resource type (u32, 1 = key) ‖ TPM2B_PUBLIC.
type srkInfo struct {
	handle tpm2.TPMHandle
	name   []byte
	public tpm2.TPMTPublic
}

// parseSRK decodes a serialized ESYS_TR.
func parseSRK(b []byte) (*srkInfo, error) {
	r := bytes.NewReader(b)
	var handle uint32
	if err := binary.Read(r, binary.BigEndian, &handle); err != nil {
		return nil, fmt.Errorf("parse tpm2_srk: %w", err)
	}
	name, err := read2B(r)
	if err != nil {
		return nil, fmt.Errorf("parse tpm2_srk: name: %w", err)
	}
	var typ uint32
	if err := binary.Read(r, binary.BigEndian, &typ); err != nil {
		return nil, fmt.Errorf("parse tpm2_srk: %w", err)
	}
	if typ != esysResource {
		return nil, fmt.Errorf("parse tpm2_srk: resource type %d is not a key", typ)
	}
	pubBytes, err := read2B(r)
	if err != nil {
		return nil, fmt.Errorf("parse tpm2_srk: public area: %w", err)
	}
	if r.Len() != 0 {
		return nil, fmt.Errorf("parse tpm2_srk: %d trailing bytes", r.Len())
	}
	pub, err := tpm2.Unmarshal[tpm2.TPMTPublic](pubBytes)
	if err != nil {
		return nil, fmt.Errorf("parse tpm2_srk: public area: %w", err)
	}
	if tpm2.TPMHandle(handle) != SRKHandle {
		return nil, fmt.Errorf("parse tpm2_srk: handle 0x%08x: %w", handle, ErrUnsupported)
	}
	return &srkInfo{handle: tpm2.TPMHandle(handle), name: name, public: *pub}, nil
}

// serializeSRK encodes the SRK as tpm2-tss serializes an ESYS_TR.
func serializeSRK(handle tpm2.TPMHandle, name []byte, pub tpm2.TPMTPublic) []byte {
	pubBytes := tpm2.Marshal(pub)
	var b bytes.Buffer
	_ = binary.Write(&b, binary.BigEndian, uint32(handle))
	_ = binary.Write(&b, binary.BigEndian, uint16(len(name)))
	b.Write(name)
	_ = binary.Write(&b, binary.BigEndian, uint32(esysResource))
	_ = binary.Write(&b, binary.BigEndian, uint16(len(pubBytes)))
	b.Write(pubBytes)
	return b.Bytes()
}

// read2B reads a big-endian u16 size and that many bytes.
func read2B(r *bytes.Reader) ([]byte, error) {
	var n uint16
	if err := binary.Read(r, binary.BigEndian, &n); err != nil {
		return nil, err
	}
	if int(n) > r.Len() {
		return nil, errors.New("size exceeds data")
	}
	b := make([]byte, n)
	_, _ = r.Read(b)
	return b, nil
}

// splitBlob splits "tpm2-blob" (TPM2B_PRIVATE ‖ TPM2B_PUBLIC) into its parts.
func splitBlob(blob []byte) (tpm2.TPM2BPrivate, tpm2.TPM2BPublic, error) {
	r := bytes.NewReader(blob)
	priv, err := read2B(r)
	if err != nil {
		return tpm2.TPM2BPrivate{}, tpm2.TPM2BPublic{}, fmt.Errorf("parse sealed blob: private part: %w", err)
	}
	pub, err := read2B(r)
	if err != nil {
		return tpm2.TPM2BPrivate{}, tpm2.TPM2BPublic{}, fmt.Errorf("parse sealed blob: public part: %w", err)
	}
	if r.Len() != 0 {
		return tpm2.TPM2BPrivate{}, tpm2.TPM2BPublic{}, fmt.Errorf("parse sealed blob: %d trailing bytes", r.Len())
	}
	p := tpm2.BytesAs2B[tpm2.TPMTPublic](pub)
	if _, err := p.Contents(); err != nil {
		return tpm2.TPM2BPrivate{}, tpm2.TPM2BPublic{}, fmt.Errorf("parse sealed blob: public part: %w", err)
	}
	return tpm2.TPM2BPrivate{Buffer: priv}, p, nil
}

// joinBlob concatenates TPM2B_PRIVATE and TPM2B_PUBLIC as systemd stores them.
func joinBlob(priv tpm2.TPM2BPrivate, pub tpm2.TPM2BPublic) []byte {
	var b bytes.Buffer
	b.Write(tpm2.Marshal(priv))
	b.Write(tpm2.Marshal(pub))
	return b.Bytes()
}
