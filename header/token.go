package header

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
)

// Token is a token's common part; the rest of its JSON belongs to its owner
// and is kept unchanged.
type Token struct {
	ID       int
	Type     string
	Keyslots []int
	JSON     json.RawMessage
}

// Tokens returns the header's tokens in id order.
func (h *Header) Tokens() []Token {
	var out []Token
	for _, id := range keysOf(h.Meta.Tokens) {
		raw := h.Meta.Tokens[id]
		var t tokenHeader
		_ = json.Unmarshal(raw, &t)
		out = append(out, Token{ID: id, Type: t.Type, Keyslots: t.Keyslots, JSON: raw})
	}
	return out
}

// AddToken stores a token's JSON under id (the lowest free id when id is
// negative) after checking its type and key-slot references. Types starting
// with "luks2-" are reserved for cryptsetup's built-in tokens.
func (h *Header) AddToken(id int, raw json.RawMessage) (int, error) {
	if h.Version != 2 {
		return -1, fmt.Errorf("add token: LUKS%d %w", h.Version, ErrReadOnlyFormat)
	}
	t, err := h.Meta.validateToken(raw)
	if err != nil {
		return -1, fmt.Errorf("add token: %w", err)
	}
	if strings.HasPrefix(t.Type, "luks2-") {
		return -1, fmt.Errorf("add token: type %q is reserved for cryptsetup", t.Type)
	}
	if id < 0 {
		for id = 0; id < MaxTokens; id++ {
			if _, used := h.Meta.Tokens[id]; !used {
				break
			}
		}
	}
	if id >= MaxTokens {
		return -1, fmt.Errorf("add token: no free token id below %d", MaxTokens)
	}
	if _, used := h.Meta.Tokens[id]; used {
		return -1, fmt.Errorf("add token: token %d exists", id)
	}
	var compact json.RawMessage
	if compact, err = compactJSON(raw); err != nil {
		return -1, fmt.Errorf("add token: %w", err)
	}
	h.Meta.Tokens[id] = compact
	return id, nil
}

// RemoveToken drops token id from the in-memory metadata.
func (h *Header) RemoveToken(id int) error {
	if _, ok := h.Meta.Tokens[id]; !ok {
		return fmt.Errorf("token %d does not exist", id)
	}
	delete(h.Meta.Tokens, id)
	return nil
}

func compactJSON(raw json.RawMessage) (json.RawMessage, error) {
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// setTokenKeyslots returns the token with the value of its "keyslots"
// member replaced and every other byte as it was: a token belongs to its
// owner.
func setTokenKeyslots(raw json.RawMessage, ids []int) (json.RawMessage, error) {
	slices.Sort(ids)
	b, err := IDList(ids).MarshalJSON()
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	if t, err := dec.Token(); err != nil || t != json.Delim('{') {
		return nil, fmt.Errorf("token is not a JSON object")
	}
	for dec.More() {
		name, err := dec.Token()
		if err != nil {
			return nil, err
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, err
		}
		if name == "keyslots" {
			end := int(dec.InputOffset())
			start := end - len(v)
			out := make([]byte, 0, len(raw)-len(v)+len(b))
			out = append(append(append(out, raw[:start]...), b...), raw[end:]...)
			return out, nil
		}
	}
	return nil, fmt.Errorf("token has no keyslots member")
}

func readRandom(b []byte) (int, error) { return io.ReadFull(rand.Reader, b) }
