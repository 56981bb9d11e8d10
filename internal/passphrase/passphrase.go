// Package passphrase reads secrets the way cryptsetup does: from a key file
// (or standard input) byte for byte, or from a terminal prompt without echo.
// Nothing here takes a secret from argv or the environment.
package passphrase

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/term"

	"github.com/volcrypt/volcrypt/internal/secret"
)

// MaxKeyFileBytes is the most read from a key file, as cryptsetup's default
// (8 MiB).
const MaxKeyFileBytes = 8 << 20

var (
	// ErrMismatch means the two entries of a new passphrase differ.
	ErrMismatch = errors.New("passphrases do not match")
	// ErrEmpty means an empty passphrase was given.
	ErrEmpty = errors.New("empty passphrase")
	// ErrNoTerminal means a passphrase was needed but there is no terminal
	// to ask on and no key file was given.
	ErrNoTerminal = errors.New("no terminal to ask for a passphrase: give --key-file")
)

// KeyFile describes a key file argument: Path ("-" for standard input),
// Offset bytes skipped, and Size bytes read (0: up to the end).
type KeyFile struct {
	Path   string
	Offset int64
	Size   int64
}

// Read reads the key file's bytes exactly: no newline is stripped.
func (k KeyFile) Read(stdin io.Reader) ([]byte, error) {
	var r io.Reader
	if k.Path == "-" {
		r = stdin
	} else {
		f, err := os.Open(k.Path)
		if err != nil {
			return nil, fmt.Errorf("key file: %w", err)
		}
		defer f.Close()
		r = f
	}
	if k.Offset > 0 {
		if _, err := io.CopyN(io.Discard, r, k.Offset); err != nil {
			return nil, fmt.Errorf("key file: skip %d bytes: %w", k.Offset, err)
		}
	}
	limit := int64(MaxKeyFileBytes)
	if k.Size > MaxKeyFileBytes {
		return nil, fmt.Errorf("--keyfile-size %d is larger than the %d bytes a key file may have", k.Size, MaxKeyFileBytes)
	}
	if k.Size > 0 {
		limit = k.Size
	}
	buf, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		secret.Wipe(buf)
		return nil, fmt.Errorf("key file: %w", err)
	}
	if int64(len(buf)) > limit {
		if k.Size > 0 {
			buf = buf[:limit]
		} else {
			secret.Wipe(buf)
			return nil, fmt.Errorf("key file is larger than %d bytes: use --keyfile-size", MaxKeyFileBytes)
		}
	}
	if k.Size > 0 && int64(len(buf)) < k.Size {
		secret.Wipe(buf)
		return nil, fmt.Errorf("key file holds %d bytes, --keyfile-size asks for %d", len(buf), k.Size)
	}
	if len(buf) == 0 {
		return nil, fmt.Errorf("key file: %w", ErrEmpty)
	}
	return buf, nil
}

// Prompter asks for passphrases on a terminal, or reads them a line at a
// time from a non-terminal input (as cryptsetup does when piped).
type Prompter struct {
	In  *os.File
	Out io.Writer
	// Lines reads piped input; it is created on first use.
	lines *bufio.Reader
}

// IsTerminal reports whether the input is a terminal.
func (p *Prompter) IsTerminal() bool { return term.IsTerminal(int(p.In.Fd())) }

// Ask prints prompt and reads one passphrase; with confirm it asks again
// and requires the same answer.
func (p *Prompter) Ask(prompt string, confirm bool) ([]byte, error) {
	first, err := p.read(prompt)
	if err != nil {
		return nil, err
	}
	if len(first) == 0 {
		return nil, ErrEmpty
	}
	if !confirm || !p.IsTerminal() {
		return first, nil
	}
	second, err := p.read("Verify passphrase: ")
	if err != nil {
		secret.Wipe(first)
		return nil, err
	}
	defer secret.Wipe(second)
	if !bytes.Equal(first, second) {
		secret.Wipe(first)
		return nil, ErrMismatch
	}
	return first, nil
}

func (p *Prompter) read(prompt string) ([]byte, error) {
	if p.IsTerminal() {
		fmt.Fprint(p.Out, prompt)
		b, err := term.ReadPassword(int(p.In.Fd()))
		fmt.Fprintln(p.Out)
		if err != nil {
			return nil, fmt.Errorf("read passphrase: %w", err)
		}
		return b, nil
	}
	if p.lines == nil {
		p.lines = bufio.NewReader(p.In)
	}
	line, err := p.lines.ReadBytes('\n')
	if err != nil && (err != io.EOF || len(line) == 0) {
		if err == io.EOF {
			return nil, ErrNoTerminal
		}
		return nil, fmt.Errorf("read passphrase: %w", err)
	}
	return bytes.TrimSuffix(bytes.TrimSuffix(line, []byte("\n")), []byte("\r")), nil
}
