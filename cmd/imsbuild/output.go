package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/term"

	"github.com/imsbuild/imsbuild/engine"
	"github.com/imsbuild/imsbuild/internal/bytesize"
)

// printer renders engine events: JSON lines, plain timestamped lines (CI),
// or a live progress display on a terminal.
type printer struct {
	mu        sync.Mutex
	w         io.Writer
	json      *json.Encoder
	tty       bool
	start     time.Time
	total     int
	counts    map[engine.Status]int
	running   map[string]runningStep
	failed    bool
	published int
	stop      chan struct{}
	done      chan struct{}
	redact    func(string) string // masks sensitive values in errors
	check     bool                // build --check: the summary counts identical and differing steps
}

type runningStep struct {
	since time.Time
	last  string
}

func newPrinter(stdout io.Writer, _ io.Writer, asJSON bool) *printer {
	p := &printer{w: stdout, start: time.Now(), counts: map[engine.Status]int{}, running: map[string]runningStep{},
		redact: func(s string) string { return s }}
	if asJSON {
		p.json = json.NewEncoder(stdout)
		return p
	}
	if f, ok := stdout.(*os.File); ok && term.IsTerminal(int(f.Fd())) && os.Getenv("TERM") != "dumb" {
		p.tty = true
		p.stop, p.done = make(chan struct{}), make(chan struct{})
		go p.tick()
	}
	return p
}

// Event is the engine's event sink.
func (p *printer) Event(ev engine.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if ev.Status == engine.StatusFailed {
		p.failed = true
	}
	if p.json != nil {
		_ = p.json.Encode(ev)
		return
	}
	switch ev.Status {
	case engine.StatusPlanned:
		p.total++
		return
	case engine.StatusStarted, engine.StatusChecking:
		p.running[ev.Step] = runningStep{since: ev.Time}
	case engine.StatusWaiting, engine.StatusResumed:
	case engine.StatusLog:
		if r, ok := p.running[ev.Step]; ok && p.tty {
			// The status line is one line: newlines and tabs would break it too.
			r.last = strings.NewReplacer("\n", " ", "\t", " ").Replace(printable(ev.Line))
			p.running[ev.Step] = r
			p.redraw()
			return
		}
	default:
		delete(p.running, ev.Step)
		if ev.Status == engine.StatusDone && strings.HasPrefix(ev.Step, "publish.") {
			p.published++
		} else {
			p.counts[ev.Status]++
		}
	}
	p.clearStatus()
	fmt.Fprintln(p.w, p.line(ev))
	p.redraw()
}

func (p *printer) line(ev engine.Event) string {
	ts := ev.Time.Format("15:04:05")
	switch ev.Status {
	case engine.StatusLog:
		return fmt.Sprintf("%s %-24s | %s", ts, ev.Step, printable(ev.Line))
	case engine.StatusStarted:
		if ev.Key == "" {
			return fmt.Sprintf("%s %-24s started", ts, ev.Step)
		}
		return fmt.Sprintf("%s %-24s started  key %s%s", ts, ev.Step, shortKey(ev.Key), remoteMark(ev))
	case engine.StatusCached:
		return fmt.Sprintf("%s %-24s cached   key %s", ts, ev.Step, shortKey(ev.Key))
	case engine.StatusDone:
		return fmt.Sprintf("%s %-24s done     %s %s%s", ts, ev.Step, time.Duration(ev.DurationMS)*time.Millisecond, bytesize.Format(ev.Bytes), remoteMark(ev))
	case engine.StatusFailed:
		s := fmt.Sprintf("%s %-24s FAILED   %s", ts, ev.Step, printable(firstLine(ev.Error)))
		if ev.LogPath != "" {
			s += "\n         full log: " + printable(ev.LogPath)
		}
		return s
	case engine.StatusSkipped:
		return fmt.Sprintf("%s %-24s skipped  (%s)", ts, ev.Step, printable(ev.Reason))
	case engine.StatusChecking:
		return fmt.Sprintf("%s %-24s checking key %s", ts, ev.Step, shortKey(ev.Key))
	case engine.StatusIdentical:
		return fmt.Sprintf("%s %-24s identical %s %s", ts, ev.Step, time.Duration(ev.DurationMS)*time.Millisecond, bytesize.Format(ev.Bytes))
	case engine.StatusDiffers:
		return fmt.Sprintf("%s %-24s DIFFERS  from the cached result in %s\n%s", ts, ev.Step, time.Duration(ev.DurationMS)*time.Millisecond, checkDetail(ev.Check))
	case engine.StatusCancelled:
		return fmt.Sprintf("%s %-24s cancelled", ts, ev.Step)
	case engine.StatusResumed:
		return fmt.Sprintf("%s %-24s resumed  the SSH environment was completed", ts, ev.Step)
	case engine.StatusWaiting:
		if i := ev.SSH; i != nil {
			what := "interactive"
			if i.Debug {
				what = "DEBUG (the step fails afterwards)"
			}
			return fmt.Sprintf("%s %-24s waiting  %s environment, jail=%t: ssh -p %d %s@%s\n%s %-24s          host key %s; run `touch %s` inside to finish",
				ts, ev.Step, what, i.Jail, i.Port, i.User, i.Host, ts, "", i.HostKey, i.CompleteFile)
		}
	}
	return fmt.Sprintf("%s %-24s %s", ts, ev.Step, ev.Status)
}

// remoteMark marks the line of a step built by the executor.
func remoteMark(ev engine.Event) string {
	if ev.Remote {
		return " (remote)"
	}
	return ""
}

func shortKey(k string) string {
	if len(k) > 12 {
		return k[:12]
	}
	return k
}

// tick refreshes the elapsed times of the live display.
func (p *printer) tick() {
	defer close(p.done)
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			p.mu.Lock()
			p.redraw()
			p.mu.Unlock()
		}
	}
}

// redraw prints the status line: progress counts and the running steps.
func (p *printer) redraw() {
	if !p.tty {
		return
	}
	finished := p.published + p.counts[engine.StatusIdentical] + p.counts[engine.StatusDiffers] + p.counts[engine.StatusDone] + p.counts[engine.StatusCached] + p.counts[engine.StatusFailed] + p.counts[engine.StatusSkipped] + p.counts[engine.StatusCancelled]
	ids := make([]string, 0, len(p.running))
	for id := range p.running {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	parts := make([]string, 0, len(ids))
	for _, id := range ids {
		r := p.running[id]
		s := fmt.Sprintf("%s %s", id, time.Since(r.since).Truncate(time.Second))
		if r.last != "" {
			s += ": " + r.last
		}
		parts = append(parts, s)
	}
	status := fmt.Sprintf("[%d/%d] %s", finished, p.total, strings.Join(parts, " · "))
	width := 120
	if f, ok := p.w.(*os.File); ok {
		if w, _, err := term.GetSize(int(f.Fd())); err == nil && w > 10 {
			width = w - 1
		}
	}
	if r := []rune(status); len(r) > width {
		status = string(r[:width])
	}
	fmt.Fprintf(p.w, "\r\033[K%s", status)
}

func (p *printer) clearStatus() {
	if p.tty {
		fmt.Fprint(p.w, "\r\033[K")
	}
}

// Failed reports whether any step failed.
func (p *printer) Failed() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failed
}

// SetRedact sets how Summary masks sensitive values in step errors
// (events come masked from the engine).
func (p *printer) SetRedact(redact func(string) string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.redact = redact
}

// Summary prints the outcome of a build, with the log tail of failed steps.
func (p *printer) Summary(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.json != nil {
		return
	}
	p.clearStatus()
	for _, se := range stepErrors(err) {
		// The log tail below shows what a multi-line error (kiwi's) repeats.
		fmt.Fprintf(p.w, "\n--- %s failed: %s\n", se.Step, printable(firstLine(p.redact(se.Err.Error()))))
		if se.LogTail != "" {
			fmt.Fprintf(p.w, "--- last lines of %s:\n%s\n", printable(se.LogPath), printable(se.LogTail))
		}
	}
	c := p.counts
	if p.check {
		fmt.Fprintf(p.w, "check: %d identical, %d differ, %d cached (not checked), %d failed, %d skipped in %s\n",
			c[engine.StatusIdentical], c[engine.StatusDiffers], c[engine.StatusCached], c[engine.StatusFailed], c[engine.StatusSkipped],
			time.Since(p.start).Round(time.Millisecond))
		return
	}
	cancelled := ""
	if n := c[engine.StatusCancelled]; n > 0 {
		cancelled = fmt.Sprintf(", %d cancelled", n)
	}
	fmt.Fprintf(p.w, "%d built, %d cached, %d published, %d failed, %d skipped%s in %s\n",
		c[engine.StatusDone], c[engine.StatusCached], p.published, c[engine.StatusFailed], c[engine.StatusSkipped], cancelled,
		time.Since(p.start).Round(time.Millisecond))
}

// Close stops the live display.
func (p *printer) Close() {
	if p.stop != nil {
		close(p.stop)
		<-p.done
		p.stop = nil
	}
}

// stepErrors lists the step errors inside err (which may be a join).
func stepErrors(err error) []*engine.StepError {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []*engine.StepError
		for _, e := range j.Unwrap() {
			out = append(out, stepErrors(e)...)
		}
		return out
	}
	var se *engine.StepError
	if errors.As(err, &se) {
		return []*engine.StepError{se}
	}
	return nil
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// checkDetail lists what differs in a checked step, one output and one
// change a line, indented under the step's line.
func checkDetail(r *engine.CheckReport) string {
	if r == nil {
		return ""
	}
	var b strings.Builder
	for _, o := range r.Outputs {
		fmt.Fprintf(&b, "           %s: ", printable(o.Name))
		switch o.Diff {
		case engine.DiffMissing:
			fmt.Fprintf(&b, "missing from the rebuild (cached %s, %s)\n", o.Old.Digest, bytesize.Format(o.Old.Size))
			continue
		case engine.DiffExtra:
			fmt.Fprintf(&b, "only in the rebuild (%s, %s)\n", o.New.Digest, bytesize.Format(o.New.Size))
			continue
		}
		fmt.Fprintf(&b, "%s %s → %s %s", o.Old.Digest, bytesize.Format(o.Old.Size), o.New.Digest, bytesize.Format(o.New.Size))
		if o.TotalChanges > 0 {
			fmt.Fprintf(&b, ", %d changes", o.TotalChanges)
		}
		if o.Note != "" {
			fmt.Fprintf(&b, "; %s", o.Note)
		}
		b.WriteString("\n")
		for _, c := range o.Changes {
			fmt.Fprintf(&b, "             %s\n", printable(c.String()))
		}
		if n := o.TotalChanges - len(o.Changes); n > 0 {
			fmt.Fprintf(&b, "             … and %d more\n", n)
		}
	}
	return strings.TrimSuffix(b.String(), "\n")
}
