package main

import (
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestConcurrentKeyAddsLoseNothing runs volcrypt and cryptsetup key
// additions on one volume at once: thanks to the shared lock every addition
// that reports success ends up in its own slot and opens the volume (a
// cryptsetup that sees the header change under it refuses, which is safe).
func TestConcurrentKeyAddsLoseNothing(t *testing.T) {
	cs := cryptsetupBin(t)
	img := image(t, 32<<20)
	kf := keyFile(t, "base")
	mustRun(t, "", append(append([]string{"format", "-q", "--key-file", kf}, cheap...), img)...)
	const ours, theirs = 8, 2
	keys := make([]string, ours+theirs)
	for i := range keys {
		keys[i] = keyFile(t, fmt.Sprintf("key number %d", i))
	}
	var wg sync.WaitGroup
	errs := make([]string, len(keys))
	for i := range keys {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i < ours {
				r := volcrypt(t, "", append(append([]string{"key", "add", "--key-file", kf, "--new-key-file", keys[i]}, cheap...), img)...)
				if r.code != 0 {
					errs[i] = r.stderr
				}
				return
			}
			out, err := exec.Command(cs, "luksAddKey", "--key-file", kf, "--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000", img, keys[i]).CombinedOutput()
			if err != nil {
				errs[i] = string(out)
			}
		}()
	}
	wg.Wait()
	added := []int{}
	for i, e := range errs {
		switch {
		case e == "":
			added = append(added, i)
		case i >= ours && strings.Contains(e, "concurrent LUKS2 metadata update"):
			// cryptsetup refuses, safely, when the header changed under it.
		default:
			t.Fatalf("adder %d failed: %s", i, e)
		}
	}
	require.GreaterOrEqual(t, len(added), ours)
	slots := map[string]bool{}
	for _, i := range added {
		k := keys[i]
		r := mustRun(t, "", "open", "--test", "--json", "--key-file", k, img)
		require.False(t, slots[r.stdout], "key %d shares a slot: %s", i, r.stdout)
		slots[r.stdout] = true
	}
	mustRun(t, "", "open", "--test", "--key-file", kf, img)
}
