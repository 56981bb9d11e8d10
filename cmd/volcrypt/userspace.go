package main

// open --userspace: the volume's plaintext served as MOUNTPOINT/volume
// through FUSE by a background volcrypt process (package userspace), for
// hosts without device-mapper.
//
// The open command unlocks the volume, then starts the server: the volcrypt
// binary again (/proc/self/exe) with VOLCRYPT_USERSPACE_SERVER=1 in its
// environment, caught by init below before any command runs. The volume key
// and the parameters go to the server through a pipe (fd 3), never argv or
// the environment; the server answers on a second pipe (fd 4) once the
// mount is ready, or with its error, and open exits. The server runs in its
// own session with standard streams on /dev/null, writes a state file
// (/run/volcrypt/userspace/*.json: no secret; a user's own runtime directory
// for a user who mounts through fusermount3) for status and close, and on
// unmount (close, umount, SIGTERM/SIGINT/SIGHUP) syncs the device, leaves
// the sync's outcome next to the state file (*.result, which close reads and
// fails on), wipes the key, removes the state file and exits. While it
// serves, it holds userspace.ClaimFile on the device and the header, so no
// second server, whoever runs it, serves them too.

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/volcrypt/volcrypt/crypt"
	"github.com/volcrypt/volcrypt/internal/secret"
	"github.com/volcrypt/volcrypt/userspace"
	"github.com/volcrypt/volcrypt/volume"
)

const (
	// userspaceServerEnv in the environment makes the binary the FUSE
	// server of open --userspace.
	userspaceServerEnv = "VOLCRYPT_USERSPACE_SERVER"
	// userspaceFile is the plaintext file's name inside the mount point.
	userspaceFile = userspace.DefaultName
	// serverReadyTimeout bounds how long open waits for the server.
	serverReadyTimeout = 60 * time.Second
	// serverExitTimeout bounds how long close waits for the server to sync
	// and exit after the unmount.
	serverExitTimeout = 60 * time.Second
)

func init() {
	if os.Getenv(userspaceServerEnv) == "1" {
		os.Exit(runUserspaceServer())
	}
}

// serverConfig is what open sends the server after the key; no secret.
type serverConfig struct {
	Device     string `json:"device"`
	Header     string `json:"header,omitempty"`
	Mountpoint string `json:"mountpoint"`
	ReadOnly   bool   `json:"read_only"`
}

// userspaceStatus is a served volume, as status shows it and as the server
// records it in its state file.
type userspaceStatus struct {
	Mountpoint    string `json:"mountpoint"`
	File          string `json:"file"`
	Type          string `json:"type"`
	UUID          string `json:"uuid,omitempty"`
	Cipher        string `json:"cipher"`
	KeyBits       int    `json:"key_bits"`
	Device        string `json:"device"`
	Header        string `json:"header,omitempty"`
	SectorSize    int    `json:"sector_size"`
	OffsetSectors uint64 `json:"offset_sectors"`
	SizeSectors   uint64 `json:"size_sectors"`
	Mode          string `json:"mode"` // read/write or readonly
	PID           int    `json:"pid"`
	// Running is false when the server died (killed) and left the mount.
	Running bool `json:"running"`
	// PIDStart is the server's start time in clock ticks since boot
	// (/proc/PID/stat), telling it from a later process with its PID.
	PIDStart uint64 `json:"pid_start,omitempty"`
	// DevID and Inode identify the device (Inode 0 for a block device).
	DevID uint64 `json:"dev_id,omitempty"`
	Inode uint64 `json:"inode,omitempty"`
}

// public is s as open --json and status --json show it: without the state
// file's bookkeeping.
func (s userspaceStatus) public() userspaceStatus {
	s.PIDStart, s.DevID, s.Inode = 0, 0, 0
	return s
}

// openUserspace serves the unlocked volume's plaintext as the file
// MOUNTPOINT/volume through FUSE (open --userspace) and returns once it is
// mounted; a background volcrypt process keeps serving it until close.
func (a *app) openUserspace(cmd *cobra.Command, v *volume.Volume, key *secret.Buffer, mountpoint string, readOnly bool) error {
	mp, err := filepath.Abs(mountpoint)
	if err != nil {
		return usageError{fmt.Errorf("mount point %s: %w", mountpoint, err)}
	}
	if st, err := os.Stat(mp); err != nil || !st.IsDir() {
		return usageError{fmt.Errorf("mount point %s: %w", mountpoint, userspace.ErrNotDir)}
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		return fmt.Errorf("open %s: %w", v.Path, userspace.ErrNoFUSE)
	}
	if userspaceStateDir() == "" {
		return usageError{errNoStateDir}
	}
	if _, ok, err := userspace.Lookup(mp); err != nil {
		return err
	} else if ok {
		return fmt.Errorf("%s already serves a volume: %w", mp, volume.ErrInUse)
	}
	dev, err := filepath.Abs(v.Path)
	if err != nil {
		return err
	}
	hdr := ""
	if v.HeaderPath != v.Path {
		if hdr, err = filepath.Abs(v.HeaderPath); err != nil {
			return err
		}
	}
	if other, ok := servedElsewhere(dev); ok {
		return fmt.Errorf("%s is already served at %s: %w", v.Path, other, volume.ErrInUse)
	}
	cfg, err := json.Marshal(serverConfig{Device: dev, Header: hdr, Mountpoint: mp, ReadOnly: readOnly})
	if err != nil {
		return err
	}
	st, err := startServer(key, cfg)
	if err != nil {
		return fmt.Errorf("serve %s at %s: %w", v.Path, mp, err)
	}
	if a.json {
		return a.printJSON(st.public())
	}
	ro := ""
	if readOnly {
		ro = "-r "
	}
	fmt.Fprintf(a.stderr, "%s is served as %s (%d bytes, %s).\n", v.Path, st.File, st.SizeSectors*512, st.Mode)
	if os.Geteuid() == 0 {
		// --direct-io: the loop device sends its requests to the server
		// asynchronously and keeps no second page cache (reads about
		// twice as fast as without, measured on this host).
		fmt.Fprintf(a.stderr, "Attach it with: losetup %s-b %d --direct-io=on -f --show %s\n", ro, st.SectorSize, st.File)
	} else {
		// Mounted through fusermount3 without allow_other: no other
		// user, root (and so losetup) included, may open the file.
		fmt.Fprintf(a.stderr, "Only you can open it (not even root, so no losetup): use it as a raw disk image, e.g. qemu -drive file=%s,format=raw,cache=none\n", st.File)
	}
	fmt.Fprintf(a.stderr, "Close it with:  volcrypt close %s\n", mp)
	return nil
}

// startServer starts the background server, hands it the key and config,
// and waits until it has mounted (its state) or failed (its error).
func startServer(key *secret.Buffer, cfg []byte) (*userspaceStatus, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("find the volcrypt binary: %w", err)
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer inR.Close()
	defer inW.Close()
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer outR.Close()
	defer outW.Close()
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	defer null.Close()

	cmd := exec.Command(self, "userspace-server")
	cmd.Env = append(os.Environ(), userspaceServerEnv+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = null, null, null
	cmd.ExtraFiles = []*os.File{inR, outW} // fd 3, fd 4
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start the server: %w", err)
	}
	inR.Close()
	outW.Close()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	// The key first (length-prefixed, so the server reads it straight into
	// locked memory with no buffering), then the config.
	_, err = inW.Write([]byte{byte(key.Len() >> 8), byte(key.Len())})
	if err == nil {
		_, err = inW.Write(key.Bytes())
	}
	if err == nil {
		_, err = inW.Write(cfg)
	}
	inW.Close()
	if err != nil {
		_ = cmd.Process.Kill()
		return nil, fmt.Errorf("send the key to the server: %w", err)
	}

	answer := make(chan []byte, 1)
	go func() { b, _ := io.ReadAll(io.LimitReader(outR, 64<<10)); answer <- b }()
	var b []byte
	select {
	case b = <-answer:
	case <-time.After(serverReadyTimeout):
		_ = cmd.Process.Kill()
		return nil, errors.New("the server did not mount in time")
	}
	st, err := parseServerAnswer(b)
	if err != nil {
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
		}
		return nil, err
	}
	return st, nil
}

// serverError is the server's one-line error, keeping its errno (when it had
// one) and its sentinel (one of serverSentinels) so the exit code and hint
// are the same as if open had failed itself.
type serverError struct {
	msg      string
	errno    syscall.Errno
	sentinel error
}

func (e *serverError) Error() string { return e.msg }

func (e *serverError) Unwrap() []error {
	var errs []error
	if e.errno != 0 {
		errs = append(errs, e.errno)
	}
	if e.sentinel != nil {
		errs = append(errs, e.sentinel)
	}
	return errs
}

// serverSentinels are the errors that keep their identity through the
// server's answer, by name.
var serverSentinels = map[string]error{
	"nofuse":       userspace.ErrNoFUSE,
	"nofusermount": userspace.ErrNoFusermount,
	"notdir":       userspace.ErrNotDir,
	"inuse":        volume.ErrInUse,
}

// serverErrorAnswer is err as the server sends it: "error ERRNO[:NAME]
// MESSAGE", NAME from serverSentinels.
func serverErrorAnswer(err error) string {
	var errno syscall.Errno
	errors.As(err, &errno)
	code := strconv.Itoa(int(errno))
	for name, s := range serverSentinels {
		if errors.Is(err, s) {
			code += ":" + name
			break
		}
	}
	return fmt.Sprintf("error %s %s", code, oneLine(err))
}

// The server's answer: "ok <state JSON>" or serverErrorAnswer's.
func parseServerAnswer(b []byte) (*userspaceStatus, error) {
	word, rest, _ := strings.Cut(string(b), " ")
	switch word {
	case "ok":
		var st userspaceStatus
		if err := json.Unmarshal([]byte(rest), &st); err != nil {
			return nil, fmt.Errorf("server answer: %w", err)
		}
		return &st, nil
	case "error":
		code, msg, _ := strings.Cut(rest, " ")
		num, name, _ := strings.Cut(code, ":")
		errno, _ := strconv.Atoi(num)
		return nil, &serverError{msg: strings.TrimSpace(msg), errno: syscall.Errno(errno), sentinel: serverSentinels[name]}
	}
	return nil, errors.New("the server exited without mounting")
}

// runUserspaceServer is the background server's main: it returns the exit
// code.
func runUserspaceServer() int {
	in, out := os.NewFile(3, "config"), os.NewFile(4, "ready")
	if in == nil || out == nil {
		return 1
	}
	if err := serveUserspace(in, out); err != nil {
		fmt.Fprint(out, serverErrorAnswer(err)) // unread once mounted
		out.Close()
		return 1
	}
	return 0
}

// serveUserspace reads the key and config from in, mounts, reports the
// state on out and serves until unmounted.
func serveUserspace(in, out *os.File) error {
	// Unmount on the usual termination signals; caught from now on so that
	// a signal during setup is not lost.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)

	var n [2]byte
	if _, err := io.ReadFull(in, n[:]); err != nil {
		return fmt.Errorf("read the key: %w", err)
	}
	key := secret.New(int(n[0])<<8 | int(n[1]))
	defer key.Wipe()
	if _, err := io.ReadFull(in, key.Bytes()); err != nil {
		return fmt.Errorf("read the key: %w", err)
	}
	b, err := io.ReadAll(io.LimitReader(in, 1<<20))
	in.Close()
	if err != nil {
		return fmt.Errorf("read the config: %w", err)
	}
	var cfg serverConfig
	if err := json.Unmarshal(b, &cfg); err != nil {
		return fmt.Errorf("read the config: %w", err)
	}
	// Served once, whoever serves it and wherever the state files are.
	for _, p := range []string{cfg.Device, cfg.Header} {
		if p == "" {
			continue
		}
		c, err := userspace.ClaimFile(p, !cfg.ReadOnly)
		if err != nil {
			return err
		}
		defer c.Release()
	}
	protectFromOOM()

	v, err := volume.Load(cfg.Device, volume.LoadOptions{HeaderFile: cfg.Header, ReadOnly: cfg.ReadOnly})
	if err != nil {
		return err
	}
	defer v.Close()
	// A second descriptor on the data device: fsync on it flushes the
	// device (fsync is per file, not per descriptor), and on a block device
	// O_EXCL claims it, as dm-crypt does, so nothing mounts or maps it
	// while it is served.
	flag := os.O_RDONLY
	st, err := os.Stat(cfg.Device)
	if err != nil {
		return err
	}
	if st.Mode()&os.ModeDevice != 0 {
		flag |= unix.O_EXCL
	}
	syncFile, err := os.OpenFile(cfg.Device, flag, 0)
	if err != nil {
		return fmt.Errorf("claim %s: %w", cfg.Device, err)
	}
	defer syncFile.Close()

	keyLen := key.Len()
	pt, err := v.Plaintext(key)
	if err != nil {
		key.Wipe()
		return err
	}
	defer pt.Close()
	// Without the mapping (no address space for it), reads go through the
	// engine, only slower.
	ct := mapCiphertext(v, syncFile, key, pt.Size())
	key.Wipe()
	defer ct.Close()
	state, err := newUserspaceStatus(v, cfg, pt.Size(), keyLen, st)
	if err != nil {
		return err
	}
	m, err := userspace.Serve(cfg.Mountpoint, pt, userspace.Options{
		Name: userspaceFile, ReadOnly: cfg.ReadOnly, Sync: syncFile.Sync, Source: cfg.Device,
		UID: uint32(os.Getuid()), GID: uint32(os.Getgid()),
		Ciphertext: ct.mapped(),
	})
	if err != nil {
		return err
	}
	statePath := userspaceStatePath(cfg.Mountpoint)
	resultPath := userspaceResultPath(cfg.Mountpoint)
	_ = os.Remove(resultPath) // a previous server's
	if err := writeState(statePath, state); err != nil {
		_ = m.Unmount()
		_ = m.Wait()
		return err
	}
	defer os.Remove(statePath)
	js, _ := json.Marshal(state)
	fmt.Fprintf(out, "ok %s", js)
	out.Close()

	for {
		select {
		case <-m.Done():
			// The final sync's outcome, for close: written before the
			// state file goes, so close finds it once the server exits.
			err := m.Wait()
			answer := "ok"
			if err != nil {
				answer = serverErrorAnswer(fmt.Errorf("the server's final sync of %s: %w", cfg.Device, err))
			}
			_ = writeFileAtomic(resultPath, []byte(answer))
			return err
		case <-sigs:
			// Busy (a loop device holds the file): detach, so the server
			// stops as soon as the last user goes.
			if m.Unmount() != nil {
				_ = m.Detach()
			}
		}
	}
}

// mappedCiphertext is the data segment mapped for the server, with its own
// copy of the engine's cipher; Close unmaps it and wipes the key. A nil
// *mappedCiphertext maps nothing.
type mappedCiphertext struct {
	ct *userspace.Ciphertext
	c  *crypt.Cipher
}

// mapCiphertext maps the data segment of v, size plaintext bytes, from data
// (the data device, open for reading), so that the server decrypts reads
// straight from the device's page cache; nil if it cannot.
func mapCiphertext(v *volume.Volume, data *os.File, key *secret.Buffer, size int64) *mappedCiphertext {
	seg, err := v.Header.DataSegment()
	if err != nil || seg.IVTweak == nil {
		return nil
	}
	c, err := crypt.New(seg.Encryption, key.Bytes(), seg.SectorSize)
	if err != nil {
		return nil
	}
	ct, err := userspace.MapCiphertext(data, int64(seg.Offset), size, c, uint64(*seg.IVTweak))
	if err != nil {
		c.Wipe()
		return nil
	}
	return &mappedCiphertext{ct: ct, c: c}
}

// mapped is the mapping for userspace.Options, or nil.
func (m *mappedCiphertext) mapped() *userspace.Ciphertext {
	if m == nil {
		return nil
	}
	return m.ct
}

// Close unmaps the ciphertext and wipes the cipher; only after the mount
// has stopped.
func (m *mappedCiphertext) Close() {
	if m == nil {
		return
	}
	_ = m.ct.Close()
	m.c.Wipe()
}

func newUserspaceStatus(v *volume.Volume, cfg serverConfig, size int64, keyLen int, st os.FileInfo) (*userspaceStatus, error) {
	seg, err := v.Header.DataSegment()
	if err != nil {
		return nil, err
	}
	start, err := processStart(os.Getpid())
	if err != nil {
		return nil, err
	}
	s := &userspaceStatus{
		Mountpoint: cfg.Mountpoint, File: filepath.Join(cfg.Mountpoint, userspaceFile),
		Type: fmt.Sprintf("LUKS%d", v.Header.Version), UUID: v.Header.UUID,
		Cipher: seg.Encryption, KeyBits: keyLen * 8, Device: cfg.Device, Header: cfg.Header,
		SectorSize: seg.SectorSize, OffsetSectors: uint64(seg.Offset) / 512, SizeSectors: uint64(size) / 512,
		Mode: "read/write", PID: os.Getpid(), Running: true, PIDStart: start,
	}
	if cfg.ReadOnly {
		s.Mode = "readonly"
	}
	if sys, ok := st.Sys().(*syscall.Stat_t); ok {
		s.DevID, s.Inode = sys.Dev, sys.Ino
		if st.Mode()&os.ModeDevice != 0 {
			s.DevID, s.Inode = sys.Rdev, 0
		}
	}
	return s, nil
}

// userspaceStateDir holds one JSON file per served mount point: under
// /run for root, for another user (who mounts through fusermount3) in the
// user's runtime directory ($XDG_RUNTIME_DIR), else the user's cache
// ($XDG_CACHE_HOME or $HOME/.cache). There is no fallback to a shared
// directory such as /tmp, where another user could plant it: "" when the
// user has neither.
func userspaceStateDir() string {
	if os.Geteuid() == 0 {
		return "/run/volcrypt/userspace"
	}
	dir := os.Getenv("XDG_RUNTIME_DIR")
	if dir == "" {
		c, err := os.UserCacheDir()
		if err != nil {
			return ""
		}
		dir = c
	}
	return filepath.Join(dir, "volcrypt", "userspace")
}

// errNoStateDir means a user without root has no runtime directory nor home
// for the state files.
var errNoStateDir = errors.New("no directory for state files: set XDG_RUNTIME_DIR or HOME")

// userspaceStatePath is the state file of the server at mount point mp.
func userspaceStatePath(mp string) string {
	return userspaceStateBase(mp) + ".json"
}

// userspaceResultPath is where the server at mount point mp leaves the
// outcome of its final sync for close: "ok" or an error answer.
func userspaceResultPath(mp string) string {
	return userspaceStateBase(mp) + ".result"
}

func userspaceStateBase(mp string) string {
	h := sha256.Sum256([]byte(mp))
	return filepath.Join(userspaceStateDir(), hex.EncodeToString(h[:12]))
}

func writeState(path string, s *userspaceStatus) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(path, b); err != nil {
		return fmt.Errorf("state file: %w", err)
	}
	return nil
}

// writeFileAtomic writes b to path (mode 0600) through a new temporary file
// (O_EXCL: never one planted there) renamed over it, in the state directory
// made private first (see privateDir).
func writeFileAtomic(path string, b []byte) error {
	if userspaceStateDir() == "" {
		return errNoStateDir
	}
	dir := filepath.Dir(path)
	if err := privateDir(dir); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name()) // unless renamed
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}

// errUnsafeStateDir means the state directory is not a directory of this
// user's alone.
var errUnsafeStateDir = errors.New("state directory is not a private directory of this user (mode 0700)")

// privateDir creates dir (mode 0700) if needed and checks that it is a real
// directory (no symbolic link), owned by this user, that no one else may
// enter or change.
func privateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return err
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR || st.Uid != uint32(os.Geteuid()) || st.Mode&0o077 != 0 {
		return fmt.Errorf("%s: %w", dir, errUnsafeStateDir)
	}
	return nil
}

// protectFromOOM makes a root server one of the last processes the OOM
// killer picks: the mapped ciphertext counts in its resident size, and
// killing it fails every later I/O of the file system on top with EIO.
// -900, not -1000 (never killed): a runaway server can still be stopped.
// Other users may not lower the value; best effort.
func protectFromOOM() {
	if os.Geteuid() == 0 {
		_ = os.WriteFile("/proc/self/oom_score_adj", []byte("-900"), 0)
	}
}

// serverResult reads and removes the outcome the server at mount point mp
// left; nil when it synced, or left none.
func serverResult(mp string) error {
	if userspaceStateDir() == "" {
		return nil
	}
	path := userspaceResultPath(mp)
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	_ = os.Remove(path)
	if strings.HasPrefix(string(b), "error ") {
		_, err := parseServerAnswer(b)
		return err
	}
	return nil
}

// readState reads the state file of mount point mp; nil when there is
// none. Running says whether its server is still alive.
func readState(mp string) *userspaceStatus {
	if userspaceStateDir() == "" {
		return nil
	}
	b, err := os.ReadFile(userspaceStatePath(mp))
	if err != nil {
		return nil
	}
	var s userspaceStatus
	if json.Unmarshal(b, &s) != nil || s.Mountpoint != mp {
		return nil
	}
	s.Running = alive(s.PID, s.PIDStart)
	return &s
}

// processStart returns a process's start time (field 22 of /proc/PID/stat).
func processStart(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	start, _, err := parseStat(b)
	return start, err
}

// parseStat returns the start time and state of a /proc/PID/stat line.
func parseStat(b []byte) (start uint64, state string, err error) {
	// The command name (field 2) may hold spaces; fields count from its ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, "", errors.New("malformed /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 20 {
		return 0, "", errors.New("malformed /proc stat")
	}
	start, err = strconv.ParseUint(f[19], 10, 64)
	return start, f[0], err
}

// servedElsewhere returns the mount point that already serves device dev.
func servedElsewhere(dev string) (string, bool) {
	st, err := os.Stat(dev)
	if err != nil {
		return "", false
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return "", false
	}
	id, ino := sys.Dev, sys.Ino
	if st.Mode()&os.ModeDevice != 0 {
		id, ino = sys.Rdev, 0
	}
	if userspaceStateDir() == "" {
		return "", false
	}
	files, _ := filepath.Glob(filepath.Join(userspaceStateDir(), "*.json"))
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var s userspaceStatus
		if json.Unmarshal(b, &s) != nil || s.DevID != id || s.Inode != ino {
			continue
		}
		if alive(s.PID, s.PIDStart) {
			return s.Mountpoint, true
		}
	}
	return "", false
}

// findUserspace returns the served volume at name: its state when the
// server left one, else what the mount table says (a server that died
// before writing it). ok is false when name is no volcrypt mount point.
func findUserspace(name string) (*userspaceStatus, bool) {
	mp, err := filepath.Abs(name)
	if err != nil {
		return nil, false
	}
	s := readState(mp)
	info, mounted, _ := userspace.Lookup(mp)
	switch {
	case s != nil && (mounted || s.Running):
		return s, true
	case mounted:
		s = &userspaceStatus{Mountpoint: mp, File: filepath.Join(mp, userspaceFile), Device: info.Source, Mode: "read/write"}
		if info.ReadOnly {
			s.Mode = "readonly"
		}
		return s, true
	case s != nil: // stale: the server died and the mount is gone
		_ = os.Remove(userspaceStatePath(mp))
	}
	return nil, false
}

// closeUserspace unmounts a userspace volume at name and waits for its
// server to sync and exit; handled is false when name is not such a mount
// point, so close treats it as a mapping name.
func (a *app) closeUserspace(name string) (handled bool, err error) {
	s, ok := findUserspace(name)
	if !ok {
		return false, nil
	}
	if err := userspace.Unmount(s.Mountpoint); err != nil && !errors.Is(err, unix.EINVAL) {
		if errors.Is(err, unix.EBUSY) {
			return true, fmt.Errorf("%s is in use (the plaintext file is open or attached to a loop device: unmount it and losetup -d first): %w", s.Mountpoint, volume.ErrInUse)
		}
		return true, err
	}
	if s.PID > 0 && s.Running {
		if err := waitExit(s.PID, s.PIDStart, serverExitTimeout); err != nil {
			return true, fmt.Errorf("close %s: %w", s.Mountpoint, err)
		}
	}
	_ = os.Remove(userspaceStatePath(s.Mountpoint))
	if err := serverResult(s.Mountpoint); err != nil {
		return true, fmt.Errorf("close %s: %w", s.Mountpoint, err)
	}
	return true, nil
}

// waitExit waits until process pid (started at start) has exited.
func waitExit(pid int, start uint64, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for alive(pid, start) {
		if time.Now().After(deadline) {
			return fmt.Errorf("server %d did not exit within %s", pid, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return nil
}

// alive says whether process pid, started at start, still runs: it exists,
// is not another process that got its PID, and is not a zombie that its
// parent has yet to reap.
func alive(pid int, start uint64) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	st, state, err := parseStat(b)
	return err == nil && st == start && state != "Z" && state != "X"
}

// statusUserspace reports a userspace volume at name; handled as above.
func (a *app) statusUserspace(name string) (handled bool, err error) {
	s, ok := findUserspace(name)
	if !ok {
		return false, nil
	}
	if a.json {
		return true, a.printJSON(s.public())
	}
	w := a.stdout
	if !s.Running {
		fmt.Fprintf(w, "%s is mounted but its server is not running (killed?): run volcrypt close %s\n", s.Mountpoint, s.Mountpoint)
	} else {
		fmt.Fprintf(w, "%s is active (userspace, FUSE).\n", s.Mountpoint)
	}
	fmt.Fprintf(w, "  file:    %s\n", s.File)
	if s.Type != "" {
		fmt.Fprintf(w, "  type:    %s\n  cipher:  %s\n  keysize: %d bits\n", s.Type, s.Cipher, s.KeyBits)
	}
	fmt.Fprintf(w, "  device:  %s\n", s.Device)
	if s.Header != "" {
		fmt.Fprintf(w, "  header:  %s\n", s.Header)
	}
	if s.SectorSize != 0 {
		fmt.Fprintf(w, "  sector size:  %d\n  offset:  %d sectors\n  size:    %d sectors\n", s.SectorSize, s.OffsetSectors, s.SizeSectors)
	}
	fmt.Fprintf(w, "  mode:    %s\n", s.Mode)
	if s.Running {
		fmt.Fprintf(w, "  server:  pid %d\n", s.PID)
	}
	return true, nil
}
