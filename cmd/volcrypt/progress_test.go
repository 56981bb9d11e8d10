package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/volcrypt/volcrypt/internal/progress"
)

// progressLines parses the --progress-json lines of stderr, skipping
// anything else.
func progressLines(t *testing.T, stderr string) []progress.Line {
	t.Helper()
	var ls []progress.Line
	for _, s := range strings.Split(stderr, "\n") {
		if !strings.HasPrefix(s, "{") {
			continue
		}
		var l progress.Line
		require.NoError(t, json.Unmarshal([]byte(s), &l), s)
		ls = append(ls, l)
	}
	return ls
}

// events gives "task:event" for each line.
func events(ls []progress.Line) []string {
	var out []string
	for _, l := range ls {
		out = append(out, l.Task+":"+l.Event)
	}
	return out
}

// fast calibration: PBKDF2 is timed in samples of at most 100 ms.
var calibrating = []string{"--pbkdf", "pbkdf2", "--iter-time", "20", "--progress-json"}

func TestCalibrationProgress(t *testing.T) {
	img := image(t, 24<<20)
	k1, k2, k3 := keyFile(t, "one"), keyFile(t, "two"), keyFile(t, "three")
	for _, tc := range []struct {
		name   string
		args   []string
		events []string
	}{
		{"format", append([]string{"format", "-q", "--key-file", k1}, calibrating...), []string{"calibrate:start", "calibrate:done"}},
		{"key-add", append([]string{"key", "add", "--key-file", k1, "--new-key-file", k2}, calibrating...), []string{"calibrate:start", "calibrate:done"}},
		{"key-change", append([]string{"key", "change", "--key-file", k2, "--new-key-file", k3}, calibrating...), []string{"calibrate:start", "calibrate:done"}},
		{"forced-cost-no-calibration", append([]string{"key", "add", "--key-file", k1, "--new-key-file", k2, "--progress-json"}, cheap...), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := mustRun(t, "", append(tc.args, img)...)
			ls := progressLines(t, r.stderr)
			require.Equal(t, tc.events, events(ls), r.stderr)
			for _, l := range ls {
				require.Equal(t, "pbkdf2", l.Item)
				require.Equal(t, int64(-1), l.Total)
			}
		})
	}
	// The calibrated slots open, with cryptsetup too.
	mustRun(t, "", "open", "--test", "--key-file", k3, img)
	cryptsetupBin(t)
	mustCryptsetup(t, "open", "--test-passphrase", "--key-file", k3, img)
}

func TestFormatWipe(t *testing.T) {
	img := image(t, 0)
	require.NoError(t, os.WriteFile(img, bytes.Repeat([]byte{0xa5}, 24<<20), 0o600))
	kf := keyFile(t, "wiped")
	r := mustRun(t, "", append(append([]string{"format", "-q", "--key-file", kf, "--wipe", "--progress-json", "--json"}, cheap...), img)...)
	ls := progressLines(t, r.stderr)
	ev := events(ls)
	require.Equal(t, "wipe:start", ev[0], r.stderr)
	require.Equal(t, "wipe:done", ev[len(ev)-1], r.stderr)
	last := ls[len(ls)-1]
	require.Equal(t, img, last.Item)
	require.Equal(t, int64(8<<20), last.Total, "24 MiB less the 16 MiB header")
	require.Equal(t, last.Total, last.Done)
	require.Equal(t, 100.0, *last.Percent)
	var doc map[string]any
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &doc), "stdout stays one JSON document")

	raw, err := os.ReadFile(img)
	require.NoError(t, err)
	require.False(t, bytes.Contains(raw[16<<20:], bytes.Repeat([]byte{0xa5}, 16)), "old bytes left in the data area")
	// That the area decrypts to zeros is TestWipe's (volume) business.
	mustRun(t, "", "open", "--test", "--key-file", kf, img)
}

// TestFormatWipeInterrupted: SIGINT stops the wipe; the volume opens.
func TestFormatWipeInterrupted(t *testing.T) {
	img := image(t, 528<<20)
	kf := keyFile(t, "wiped")
	cmd := exec.Command(binary, append(append([]string{"format", "-q", "--key-file", kf, "--wipe", "--progress-json"}, cheap...), img)...)
	cmd.Env = append(os.Environ(), "VOLCRYPT_TEST_AS_CLI=1")
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	sc := bufio.NewScanner(stderr)
	var rest strings.Builder
	for sc.Scan() {
		if strings.Contains(sc.Text(), `"event":"start","task":"wipe"`) {
			require.NoError(t, cmd.Process.Signal(os.Interrupt))
			break
		}
	}
	for sc.Scan() {
		rest.WriteString(sc.Text() + "\n")
	}
	err = cmd.Wait()
	require.Error(t, err, "interrupted: %s", rest.String())
	ls := progressLines(t, rest.String())
	require.Equal(t, "failed", ls[len(ls)-1].Event, rest.String())
	require.Less(t, ls[len(ls)-1].Done, int64(512<<20))
	require.Contains(t, rest.String(), "wipe stopped after ")
	require.Contains(t, rest.String(), "interrupt", "the cause is named")
	require.Contains(t, rest.String(), "the volume is formatted and opens")
	mustRun(t, "", "open", "--test", "--key-file", kf, img)
}
