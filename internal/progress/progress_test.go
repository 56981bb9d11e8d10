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
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	require.NoError(t, unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0))
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	require.NoError(t, err)
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	require.NoError(t, err)
	t.Cleanup(func() { s.Close(); m.Close() })
	return s, m
}

func TestBarOnTerminal(t *testing.T) {
	tty, master := openPTY(t)
	task := New(tty, false).Start("wipe", "disk.img", 1<<20)
	require.NotNil(t, task)
	task.Set(1 << 19)
	task.Done(nil)
	buf := make([]byte, 4096)
	require.NoError(t, master.SetReadDeadline(time.Now().Add(2*time.Second)))
	n, _ := master.Read(buf)
	require.Contains(t, string(buf[:n]), "wipe disk.img")
}
