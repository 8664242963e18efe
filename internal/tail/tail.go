// Package tail keeps the last lines of a tool's output for error messages.
package tail

import (
	"bufio"
	"bytes"
	"os"
	"strings"
	"sync"
)

// maxPartial bounds a line that never ends.
const maxPartial = 64 << 10

// Lines is an io.Writer that keeps the last Max lines written to it. A
// progress bar that rewrites a line with carriage returns counts by its
// last state. Safe for concurrent writers (stdout and stderr of one tool).
type Lines struct {
	max int

	mu      sync.Mutex
	partial []byte
	ring    []string
}

// New returns a Lines keeping the last max lines.
func New(max int) *Lines { return &Lines{max: max} }

func (t *Lines) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			t.partial = append(t.partial, p...)
			if len(t.partial) > maxPartial {
				t.partial = t.partial[len(t.partial)-maxPartial:]
			}
			break
		}
		t.partial = append(t.partial, p[:i]...)
		t.push(string(t.partial))
		t.partial = t.partial[:0]
		p = p[i+1:]
	}
	return n, nil
}

func (t *Lines) push(line string) {
	line = strings.TrimRight(line, "\r")
	if j := strings.LastIndexByte(line, '\r'); j >= 0 {
		line = line[j+1:]
	}
	t.ring = append(t.ring, line)
	if len(t.ring) > t.max {
		t.ring = t.ring[len(t.ring)-t.max:]
	}
}

// Lines returns the kept lines, a last unterminated one included.
func (t *Lines) Lines() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := append([]string(nil), t.ring...)
	if len(t.partial) > 0 {
		out = append(out, string(t.partial))
		if len(out) > t.max {
			out = out[len(out)-t.max:]
		}
	}
	return out
}

// Summary returns the last n non-empty lines, trimmed, joined by "; ".
func (t *Lines) Summary(n int) string {
	var lines []string
	for _, l := range t.Lines() {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "; ")
}

// File returns the last n lines of the file at path, read as a stream;
// nil when it cannot be read.
func File(path string, n int) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	t := New(n)
	if _, err := bufio.NewReader(f).WriteTo(t); err != nil {
		return nil
	}
	return t.Lines()
}
