package progress

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func lines(t *testing.T, b *bytes.Buffer) []Line {
	t.Helper()
	var out []Line
	sc := bufio.NewScanner(b)
	for sc.Scan() {
		var l Line
		require.NoError(t, json.Unmarshal(sc.Bytes(), &l), sc.Text())
		out = append(out, l)
	}
	return out
}

func TestJSONLines(t *testing.T) {
	for _, tc := range []struct {
		name   string
		total  int64
		steps  []int64
		err    error
		events []string
		last   string
	}{
		{"known-total", 400, []int64{100, 100, 200}, nil, []string{"start", "progress", "progress", "progress", "done"}, `"percent":100`},
		{"unknown-total", -1, []int64{5}, nil, []string{"start", "progress", "done"}, `"total":-1`},
		{"failed", -1, nil, errors.New("no key available"), []string{"start", "failed"}, `"error":"no key available"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			r := New(&b, true)
			r.Interval = 0
			task := r.Start("wipe", "disk.img", tc.total)
			for _, s := range tc.steps {
				task.Add(s)
			}
			task.Done(tc.err)
			raw := b.String()
			ls := lines(t, &b)
			var ev []string
			for _, l := range ls {
				ev = append(ev, l.Event)
				require.Equal(t, "wipe", l.Task)
				require.Equal(t, "disk.img", l.Item)
				require.Equal(t, tc.total, l.Total)
			}
			require.Equal(t, tc.events, ev)
			rawLines := strings.Split(strings.TrimSpace(raw), "\n")
			require.Contains(t, rawLines[len(rawLines)-1], tc.last)
			if tc.total > 0 {
				require.Equal(t, 25.0, *ls[1].Percent)
			} else {
				require.Nil(t, ls[len(ls)-1].Percent)
			}
		})
	}
}

func TestJSONThrottled(t *testing.T) {
	var b bytes.Buffer
	r := New(&b, true)
	r.Interval = time.Hour
	task := r.Start("reencrypt", "x", 1000)
	for range 999 {
		task.Add(1)
	}
	task.Add(1) // the last step is always reported
	task.Done(nil)
	var ev []string
	for _, l := range lines(t, &b) {
		ev = append(ev, l.Event)
	}
	require.Equal(t, []string{"start", "progress", "done"}, ev)
}

func TestSilentWithoutTerminal(t *testing.T) {
	var b bytes.Buffer
	task := New(&b, false).Start("wipe", "x", 10)
	require.Nil(t, task)
	task.Add(5) // nil-safe
	task.Done(nil)
	var nilReporter *Reporter
	require.Nil(t, nilReporter.Start("wipe", "x", 1))

	f, err := os.CreateTemp(t.TempDir(), "out")
	require.NoError(t, err)
	defer f.Close()
	require.Nil(t, New(f, false).Start("wipe", "x", 10), "a file is not a terminal")
	require.Empty(t, b.String())
}

// openPTY returns the terminal end of a new pseudo-terminal and its master.
func openPTY(t *testing.T) (tty, master *os.File) {
	t.Helper()
	// Non-blocking, so that read deadlines work on the master.
	fd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	m := os.NewFile(uintptr(fd), "/dev/ptmx")
	require.NoError(t, unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0))
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	require.NoError(t, err)
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close(); m.Close() })
	return s, m
}

// readPTY returns what the terminal showed within d.
func readPTY(t *testing.T, master *os.File, d time.Duration) string {
	t.Helper()
	return readPTYUntil(t, master, d, func(string) bool { return false })
}

// readPTYUntil reads what the terminal shows until done says it is
// enough or d has passed.
func readPTYUntil(t *testing.T, master *os.File, d time.Duration, done func(string) bool) string {
	t.Helper()
	var out []byte
	buf := make([]byte, 4096)
	require.NoError(t, master.SetReadDeadline(time.Now().Add(d)))
	for !done(string(out)) {
		n, err := master.Read(buf)
		out = append(out, buf[:n]...)
		if err != nil {
			break
		}
	}
	return string(out)
}

func TestBarOnTerminal(t *testing.T) {
	tty, master := openPTY(t)
	task := New(tty, false).Start("wipe", "disk.img", 8<<20)
	require.NotNil(t, task)
	task.Set(1 << 20)
	time.Sleep(600 * time.Millisecond) // the rate is averaged over half seconds
	task.Set(4 << 20)
	task.Done(nil)
	out := readPTY(t, master, 500*time.Millisecond)
	require.Contains(t, out, "wipe disk.img")
	require.Contains(t, out, "/8.0 MiB", "done/total")
	require.Regexp(t, `[0-9.]+ [KMG]?i?B/s`, out, "throughput")
	require.Regexp(t, `\[[0-9.a-zµ]+:[0-9.a-zµ]+\]`, out, "[elapsed:left]")
}

func TestSpinnerOnTerminal(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
	}{{"done", nil}, {"failed", errors.New("calibration interrupted")}} {
		t.Run(tc.name, func(t *testing.T) {
			tty, master := openPTY(t)
			task := New(tty, false).Start("calibrate", "", -1)
			// Nothing is added: it turns by itself, redrawn every ~100 ms.
			// Up to 2 s for two redraws, so that a busy machine passes too;
			// a spinner that does not turn still fails.
			out := readPTYUntil(t, master, 2*time.Second, func(out string) bool { return strings.Count(out, "calibrate") >= 2 })
			task.Done(tc.err)
			require.Contains(t, out, "calibrate")
			require.GreaterOrEqual(t, strings.Count(out, "calibrate"), 2, "redrawn while it waits: %q", out)
			readPTY(t, master, 500*time.Millisecond)
			require.Empty(t, readPTY(t, master, 300*time.Millisecond), "stopped after Done")
		})
	}
}
