package header

import (
	"bytes"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestSegmentOffsetCheck: the data must not start inside the header or
// key-slot area, counting as cryptsetup's json_segments_get_minimal_offset
// does (backup segments skipped, no check when a segment is at 0). The
// real cryptsetup's luksDump is the oracle.
func TestSegmentOffsetCheck(t *testing.T) {
	path, err := exec.LookPath("cryptsetup")
	if err != nil {
		t.Skip("cryptsetup not installed: the oracle is missing (apt-get install cryptsetup-bin)")
	}
	seg := func(m map[string]any, id string) map[string]any {
		return m["segments"].(map[string]any)[id].(map[string]any)
	}
	copySeg := func(m map[string]any, from, to string) map[string]any {
		s := map[string]any{}
		for k, v := range seg(m, from) {
			s[k] = v
		}
		m["segments"].(map[string]any)[to] = s
		return s
	}
	for _, tc := range []struct {
		name   string
		mutate func(m map[string]any)
		ok     bool
	}{
		{"segment-after-key-slots", func(m map[string]any) {}, true},
		{"segment-inside-key-slots", func(m map[string]any) {
			seg(m, "0")["offset"] = "1048576"
		}, false},
		{"segment-inside-key-slots-and-backup-at-0", func(m map[string]any) {
			seg(m, "0")["offset"] = "1048576"
			b := copySeg(m, "0", "1")
			b["offset"] = "0"
			b["flags"] = []any{"backup-final"}
			digest0(m)["segments"] = []any{"0", "1"}
		}, false},
		{"detached-segments-at-0-and-4m", func(m map[string]any) {
			s0 := seg(m, "0")
			s0["offset"] = "0"
			s0["size"] = "4194304"
			s1 := copySeg(m, "0", "1")
			s1["offset"] = "4194304"
			s1["size"] = "dynamic"
			s1["iv_tweak"] = "8192"
			digest0(m)["segments"] = []any{"0", "1"}
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			disk, _ := craftDisk(t, tc.mutate)
			out, err := exec.Command(path, "luksDump", writeFile(t, "hdr.img", disk)).CombinedOutput()
			require.Equal(t, tc.ok, err == nil, "cryptsetup luksDump (the oracle): %v: %s", err, out)
			_, err = Read(bytes.NewReader(disk))
			if tc.ok {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, ErrInvalid)
			}
		})
	}
}
