package tpm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/google/go-tpm/tpm2/transport"
	"golang.org/x/sys/unix"
)

// DefaultDevice is the kernel's resource-managed TPM device used by "auto".
const DefaultDevice = "/dev/tpmrm0"

// maxResponseBytes bounds a TPM response; TPM 2.0 responses are at most a few
// KiB (TPM_PT_MAX_RESPONSE_SIZE is typically 4096).
const maxResponseBytes = 64 << 10

// Open connects to a TPM. device is one of:
//   - "auto" or "": DefaultDevice if it exists, else an error wrapping ErrNoTPM;
//   - a device path such as /dev/tpmrm0 or /dev/tpm0;
//   - "swtpm:host=H,port=P", "swtpm:port=P" or "swtpm:path=/socket", the
//     syntax systemd uses for swtpm's server socket (raw TPM commands).
//
// The caller closes the returned transport.
func Open(device string) (transport.TPMCloser, error) {
	switch {
	case device == "" || device == "auto":
		if _, err := os.Stat(DefaultDevice); err != nil {
			return nil, fmt.Errorf("open TPM: %s: %w", DefaultDevice, ErrNoTPM)
		}
		return openDevice(DefaultDevice)
	case strings.HasPrefix(device, "swtpm:") || device == "swtpm":
		return openSwtpm(strings.TrimPrefix(strings.TrimPrefix(device, "swtpm"), ":"))
	default:
		return openDevice(device)
	}
}

// openDevice opens a TPM character device. It uses unix.Open rather than
// os.OpenFile: the latter may put the descriptor in non-blocking mode, and a
// read can then return no data before the TPM has answered.
func openDevice(path string) (transport.TPMCloser, error) {
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENXIO) {
			return nil, fmt.Errorf("open TPM %s: %w: %w", path, ErrNoTPM, err)
		}
		return nil, fmt.Errorf("open TPM %s: %w", path, err)
	}
	return &deviceTPM{f: os.NewFile(uintptr(fd), path)}, nil
}

// deviceTPM is a transport over a TPM character device: one write sends a
// command, one read returns its whole response.
type deviceTPM struct {
	mu sync.Mutex
	f  *os.File
}

// Send implements transport.TPM.
func (d *deviceTPM) Send(cmd []byte) ([]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, err := d.f.Write(cmd); err != nil {
		return nil, fmt.Errorf("send TPM command: %w", err)
	}
	buf := make([]byte, maxResponseBytes)
	n, err := d.f.Read(buf)
	if err != nil {
		return nil, fmt.Errorf("read TPM response: %w", err)
	}
	if n < 10 {
		return nil, fmt.Errorf("read TPM response: short response (%d bytes)", n)
	}
	return buf[:n], nil
}

// Close implements io.Closer.
func (d *deviceTPM) Close() error { return d.f.Close() }

// openSwtpm parses systemd's swtpm TCTI options and connects to swtpm's server
// (data) socket. Only the data socket is used; nothing is sent to the control
// socket.
func openSwtpm(opts string) (transport.TPMCloser, error) {
	host, port, path := "127.0.0.1", "2321", ""
	if opts != "" {
		for _, kv := range strings.Split(opts, ",") {
			k, v, ok := strings.Cut(kv, "=")
			if !ok {
				return nil, fmt.Errorf("open TPM: swtpm option %q: want key=value", kv)
			}
			switch k {
			case "host":
				host = v
			case "port":
				if p, err := strconv.ParseUint(v, 10, 16); err != nil || p == 0 {
					return nil, fmt.Errorf("open TPM: swtpm port %q: not a port number", v)
				}
				port = v
			case "path":
				path = v
			default:
				return nil, fmt.Errorf("open TPM: unknown swtpm option %q", k)
			}
		}
	}
	var (
		conn net.Conn
		err  error
	)
	if path != "" {
		conn, err = net.DialTimeout("unix", path, 5*time.Second)
	} else {
		conn, err = net.DialTimeout("tcp", net.JoinHostPort(host, port), 5*time.Second)
	}
	if err != nil {
		return nil, fmt.Errorf("open TPM: connect to swtpm: %w: %w", ErrNoTPM, err)
	}
	return &streamTPM{conn: conn}, nil
}

// streamTPM sends raw TPM commands over a stream socket and reads each
// response by its header's size field.
type streamTPM struct {
	mu   sync.Mutex
	conn net.Conn
}

// Send implements transport.TPM.
func (s *streamTPM) Send(cmd []byte) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.conn.SetDeadline(time.Now().Add(2 * time.Minute)); err != nil {
		return nil, fmt.Errorf("send TPM command: %w", err)
	}
	if _, err := s.conn.Write(cmd); err != nil {
		return nil, fmt.Errorf("send TPM command: %w", err)
	}
	hdr := make([]byte, 10)
	if _, err := io.ReadFull(s.conn, hdr); err != nil {
		return nil, fmt.Errorf("read TPM response: %w", err)
	}
	size := binary.BigEndian.Uint32(hdr[2:6])
	if size < 10 || size > maxResponseBytes {
		return nil, fmt.Errorf("read TPM response: bad response size %d", size)
	}
	rsp := make([]byte, size)
	copy(rsp, hdr)
	if _, err := io.ReadFull(s.conn, rsp[10:]); err != nil {
		return nil, fmt.Errorf("read TPM response: %w", err)
	}
	return rsp, nil
}

// Close implements io.Closer.
func (s *streamTPM) Close() error { return s.conn.Close() }

// TPM response codes that mean "send the same command again".
const (
	rcRetry   = 0x922 // TPM_RC_RETRY
	rcYielded = 0x908 // TPM_RC_YIELDED
	rcTesting = 0x90A // TPM_RC_TESTING
)

// retryTPM resends a command the TPM answered with TPM_RC_RETRY (or YIELDED,
// TESTING): the command was not executed, so resending the same bytes is safe.
type retryTPM struct {
	t transport.TPM
}

// withRetry wraps t unless it already retries.
func withRetry(t transport.TPM) transport.TPM {
	if _, ok := t.(retryTPM); ok {
		return t
	}
	return retryTPM{t: t}
}

// Send implements transport.TPM.
func (r retryTPM) Send(cmd []byte) ([]byte, error) {
	delay := 5 * time.Millisecond
	for attempt := 0; ; attempt++ {
		rsp, err := r.t.Send(cmd)
		if err != nil || len(rsp) < 10 || attempt >= 20 {
			return rsp, err
		}
		switch binary.BigEndian.Uint32(rsp[6:10]) {
		case rcRetry, rcYielded, rcTesting:
			time.Sleep(delay)
			if delay < 200*time.Millisecond {
				delay *= 2
			}
		default:
			return rsp, nil
		}
	}
}
