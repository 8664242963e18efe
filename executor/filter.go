package executor

import (
	"bytes"
	"fmt"
	"io"
	"regexp"
)

// StoredMarker starts the line a remote step writes, last, once its
// result is in the remote cache: StoredMarker followed by the key it is
// recorded under. An executor that sees it may end the step there,
// without waiting for the process's exit to reach it (on Kubernetes the
// kubelet notices an exited container up to a second later), but only
// after Step.Stored confirms it: the line comes through the step's
// output, which a script can write too. Executors remove it from the log.
const StoredMarker = "imsbuild-internal: step-stored "

// FormatStoredMarker is the stored marker line (with its newline) for key.
func FormatStoredMarker(key string) string { return StoredMarker + key + "\n" }

var hexKey = regexp.MustCompile(`^[0-9a-f]{64}$`)

// ParseStoredMarker reads line (without its newline), written by a remote
// step and so hostile: ok is false when line is not a stored marker line,
// and err says why a marker line is unusable.
func ParseStoredMarker(line []byte) (key string, ok bool, err error) {
	rest, ok := bytes.CutPrefix(line, []byte(StoredMarker))
	if !ok {
		return "", false, nil
	}
	if !hexKey.Match(rest) {
		return "", true, fmt.Errorf("stored marker: %.80q is not a key", rest)
	}
	return string(rest), true, nil
}

// Markers receives the marker lines a Filter takes out of a remote
// step's output; a nil function ignores its kind (the line is still
// removed: it is not meant for people).
type Markers struct {
	SSH    func(SSHEndpoint, error) // SSHMarker lines
	Stored func(key string, err error)
}

// Filter is a writer for a remote step's output: it passes every line
// to out except marker lines (SSHMarker, StoredMarker), which it gives to
// its Markers. A partial line is held until its newline, up to
// MaxSSHMarkerLine bytes; Flush writes what is held.
type Filter struct {
	out     io.Writer
	markers Markers
	buf     []byte
}

// NewFilter returns a Filter writing to out.
func NewFilter(out io.Writer, m Markers) *Filter {
	return &Filter{out: out, markers: m}
}

func (f *Filter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			f.buf = append(f.buf, p...)
			if len(f.buf) > MaxSSHMarkerLine {
				// Too long to be a marker: log text.
				if err := f.Flush(); err != nil {
					return n, err
				}
			}
			return n, nil
		}
		line := p[:i+1]
		p = p[i+1:]
		if len(f.buf) > 0 {
			line = append(f.buf, line...)
			f.buf = f.buf[:0]
		}
		// A line longer than a marker may be is text, however it came
		// (in one write, or flushed in parts).
		if content := bytes.TrimSuffix(line, []byte("\n")); len(content) <= MaxSSHMarkerLine && f.marker(content) {
			continue
		}
		if _, err := f.out.Write(line); err != nil {
			return n, err
		}
	}
	return n, nil
}

// marker gives line to its Markers function if it is a marker line.
func (f *Filter) marker(line []byte) bool {
	if ep, ok, err := ParseSSHMarker(line); ok {
		if f.markers.SSH != nil {
			f.markers.SSH(ep, err)
		}
		return true
	}
	if key, ok, err := ParseStoredMarker(line); ok {
		if f.markers.Stored != nil {
			f.markers.Stored(key, err)
		}
		return true
	}
	return false
}

// Flush writes the partial line held, if any.
func (f *Filter) Flush() error {
	if len(f.buf) == 0 {
		return nil
	}
	_, err := f.out.Write(f.buf)
	f.buf = f.buf[:0]
	return err
}
