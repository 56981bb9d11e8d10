package volume

import (
	"context"
	"sync"

	"github.com/volcrypt/volcrypt/internal/secret"
)

// chunk is one hotzone on its way through a pipeline: [start, end) in
// logical bytes, its data (read, then transformed) and whatever prepare
// keeps for commit (checksums).
type chunk struct {
	start, end int64
	b          []byte
	sums       []byte
	recovered  bool // the hotzone was recovered from an interrupted run
	err        error
}

// pipeline overlaps the in-memory half of an in-place operation with the
// on-disk half: prepare (read a hotzone, checksum and transform it in
// memory) runs for the next hotzone while commit (make its resilience data
// durable, overwrite it, record progress) runs for the current one.
// Commits run in order, one at a time, on the calling goroutine, so the
// ordering guarantees of a sequential run hold: nothing is written to disk
// by prepare. prepare must only read regions that no earlier hotzone's
// commit writes. Buffers of bufBytes are wiped at the end.
func pipeline(ctx context.Context, zones [][2]int64, bufBytes, sumsBytes int64, prepare, commit func(*chunk) error) error {
	const depth = 2
	free := make(chan *chunk, depth)
	ready := make(chan *chunk, depth)
	for range depth {
		c := &chunk{b: make([]byte, bufBytes), sums: make([]byte, sumsBytes)}
		defer secret.Wipe(c.b[:cap(c.b)])
		free <- c
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(ready)
		for _, z := range zones {
			var c *chunk
			select {
			case c = <-free:
			case <-stop:
				return
			}
			c.start, c.end, c.recovered = z[0], z[1], false
			c.b = c.b[:z[1]-z[0]]
			c.err = prepare(c)
			select {
			case ready <- c:
			case <-stop:
				return
			}
			if c.err != nil {
				return
			}
		}
	}()
	defer wg.Wait()
	defer close(stop)
	for c := range ready {
		if c.err != nil {
			return c.err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := commit(c); err != nil {
			return err
		}
		free <- c
	}
	return ctx.Err()
}
