package kiwi

import (
	"bufio"
	"bytes"
	"os"
	"strings"
	"sync"
)

// tailWriter keeps the last max lines written to it. kiwi's progress bars
// rewrite a line with carriage returns; only the last state of a line counts.
type tailWriter struct {
	max int

	mu      sync.Mutex
	partial []byte
	ring    []string
}

func (t *tailWriter) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			t.partial = append(t.partial, p...)
			// Bound a line that never ends.
			if len(t.partial) > 64<<10 {
				t.partial = t.partial[len(t.partial)-(64<<10):]
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

func (t *tailWriter) push(line string) {
	if j := strings.LastIndexByte(strings.TrimRight(line, "\r"), '\r'); j >= 0 {
		line = line[j+1:]
	}
	t.ring = append(t.ring, strings.TrimRight(line, "\r"))
	if len(t.ring) > t.max {
		t.ring = t.ring[len(t.ring)-t.max:]
	}
}

func (t *tailWriter) lines() []string {
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

// fileTail returns the last n lines of the file at path, reading it as a
// stream; nil when it cannot be read.
func fileTail(path string, n int) []string {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	t := &tailWriter{max: n}
	r := bufio.NewReader(f)
	if _, err := r.WriteTo(t); err != nil {
		return nil
	}
	return t.lines()
}
