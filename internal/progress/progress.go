// Package progress reports how far long operations (wipe, reencrypt,
// benchmark, unlocking, calibration) have got: a progress bar when the
// output is a terminal, nothing when it is not, and one JSON object per
// line with --progress-json, for scripts.
//
// The whole API:
//
//	var pj bool
//	progress.AddFlag(cmd.Flags(), &pj)           // registers --progress-json
//	r := progress.New(a.stderr, pj)              // nil-safe; bars only on a tty
//	t := r.Start("wipe", "/dev/sdb1", sizeBytes) // total -1: unknown (a spinner)
//	t.Add(n)                                     // or t.Set(done)
//	t.Done(err)                                  // always; err nil on success
//
// A nil *Reporter or *Task does nothing, so library callbacks can be wired
// unconditionally. Progress goes to standard error, so a command's --json
// result on standard output stays one document.
//
// # JSON lines (--progress-json)
//
// Each line is one object; fields never change meaning, new ones may be
// added:
//
//	{"event":"start","task":"wipe","item":"/dev/sdb1","done":0,"total":1073741824,"elapsed_ms":0}
//	{"event":"progress","task":"wipe","item":"/dev/sdb1","done":268435456,"total":1073741824,"percent":25,"elapsed_ms":812}
//	{"event":"done","task":"wipe","item":"/dev/sdb1","done":1073741824,"total":1073741824,"percent":100,"elapsed_ms":3301}
//	{"event":"failed","task":"unlock","item":"data","done":0,"total":-1,"elapsed_ms":2012,"error":"no key available with this passphrase"}
//
// event is start, progress, done or failed; task names the operation; item
// the device or volume; done and total are in the task's unit (bytes
// unless the task says otherwise), total is -1 when unknown and percent is
// then absent; "progress" lines come at most every Interval.
//
// Tasks volcrypt reports so far:
//
//	task       item                      total
//	attach     crypttab name             -1      attach-all, per volume
//	calibrate  KDF (argon2id, pbkdf2, …) -1      format, key add, key change when the KDF cost is measured
//	wipe       device                    bytes   format --wipe
package progress

import (
	"encoding/json"
	"io"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/pflag"
	"golang.org/x/term"
)

// FlagName is the flag that asks for JSON lines.
const FlagName = "progress-json"

// AddFlag registers --progress-json on fs, setting *p.
func AddFlag(fs *pflag.FlagSet, p *bool) {
	fs.BoolVar(p, FlagName, false, "report progress as JSON lines on standard error (see volcrypt(8))")
}

// DefaultInterval is the least time between two "progress" lines.
const DefaultInterval = 500 * time.Millisecond

// Reporter makes Tasks that report to one writer.
type Reporter struct {
	w    io.Writer
	json bool
	tty  bool
	// Interval is the least time between two "progress" JSON lines.
	Interval time.Duration
	mu       sync.Mutex
}

// New returns a Reporter writing to w: JSON lines if jsonLines, bars if w is
// a terminal, otherwise nothing.
func New(w io.Writer, jsonLines bool) *Reporter {
	r := &Reporter{w: w, json: jsonLines, Interval: DefaultInterval}
	if f, ok := w.(*os.File); ok && !jsonLines {
		r.tty = term.IsTerminal(int(f.Fd()))
	}
	return r
}

// Task is one operation being reported.
type Task struct {
	r           *Reporter
	task, item  string
	total, done int64
	start, last time.Time
	bar         *progressbar.ProgressBar
	mu          sync.Mutex
}

// Start reports the start of task on item, with total units to do (-1 if
// unknown).
func (r *Reporter) Start(task, item string, total int64) *Task {
	if r == nil || (!r.json && !r.tty) {
		return nil
	}
	now := time.Now()
	t := &Task{r: r, task: task, item: item, total: total, start: now, last: now}
	if r.json {
		t.emit("start", nil)
		return t
	}
	desc := task
	if item != "" {
		desc = task + " " + item
	}
	t.bar = progressbar.NewOptions64(total, barOptions(r.w, desc, total)...)
	return t
}

// barOptions: a byte bar shows done/total, throughput and
// [elapsed:left] ("wipe disk.img  25% |███    | (256/1.0 GiB, 312 MiB/s) [0s:2s]");
// a spinner (total -1) turns from the start and shows the time elapsed.
// Both are cleared when the task ends.
func barOptions(w io.Writer, desc string, total int64) []progressbar.Option {
	opts := []progressbar.Option{progressbar.OptionSetWriter(w), progressbar.OptionSetDescription(desc),
		progressbar.OptionThrottle(100 * time.Millisecond), progressbar.OptionClearOnFinish(), progressbar.OptionSetWidth(30)}
	if total > 0 {
		return append(opts, progressbar.OptionShowBytes(true), progressbar.OptionShowCount(),
			progressbar.OptionUseIECUnits(true), progressbar.OptionSetPredictTime(true))
	}
	return append(opts, progressbar.OptionSetElapsedTime(true), progressbar.OptionSetRenderBlankState(true))
}

// Add reports n more units done.
func (t *Task) Add(n int64) {
	if t == nil {
		return
	}
	t.mu.Lock()
	done := t.done + n
	t.mu.Unlock()
	t.Set(done)
}

// Set reports done units done.
func (t *Task) Set(done int64) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.done = done
	if t.bar != nil {
		_ = t.bar.Set64(done)
		return
	}
	now := time.Now()
	if now.Sub(t.last) < t.r.Interval && (t.total < 0 || done < t.total) {
		return
	}
	t.last = now
	t.emit("progress", nil)
}

// Done reports the end of the task: success when err is nil.
func (t *Task) Done(err error) {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.bar != nil {
		if err == nil || t.total < 0 {
			// Finish also stops a spinner's ticker, which Exit does not.
			_ = t.bar.Finish()
		} else {
			// Keep the bar where it stopped; the error goes below it.
			_ = t.bar.Exit()
			t.r.mu.Lock()
			_, _ = io.WriteString(t.r.w, "\n")
			t.r.mu.Unlock()
		}
		return
	}
	if err != nil {
		t.emit("failed", err)
		return
	}
	if t.total >= 0 {
		t.done = t.total
	}
	t.emit("done", nil)
}

// Line is one JSON line of --progress-json.
type Line struct {
	Event     string   `json:"event"`
	Task      string   `json:"task"`
	Item      string   `json:"item,omitempty"`
	Done      int64    `json:"done"`
	Total     int64    `json:"total"`
	Percent   *float64 `json:"percent,omitempty"`
	ElapsedMs int64    `json:"elapsed_ms"`
	Error     string   `json:"error,omitempty"`
}

func (t *Task) emit(event string, err error) {
	l := Line{Event: event, Task: t.task, Item: t.item, Done: t.done, Total: t.total,
		ElapsedMs: time.Since(t.start).Milliseconds()}
	if t.total > 0 && event != "start" {
		p := float64(t.done) * 100 / float64(t.total)
		p = float64(int64(p*10)) / 10
		l.Percent = &p
	}
	if err != nil {
		l.Error = err.Error()
	}
	b, _ := json.Marshal(l)
	t.r.mu.Lock()
	defer t.r.mu.Unlock()
	_, _ = t.r.w.Write(append(b, '\n'))
}
