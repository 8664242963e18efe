package engine

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

const tailLines = 20

// maxLine is the longest line kept whole; a longer one is written in parts
// (a sensitive value across the cut escapes redaction).
const maxLine = 1 << 20

// stepLog writes a step's output to its log file, reports each line and
// keeps the last lines for the failure message. It works in whole lines so
// that every sensitive value of the build, however the output was split
// into writes, is masked in the file, the events and the tail alike.
type stepLog struct {
	mu     sync.Mutex
	f      *os.File
	redact func(string) string
	onLine func(string)
	buf    []byte
	tail   []string
	err    error // the first write error
}

// newStepLog creates the log file path, readable by its owner only: a
// script may print secrets imsbuild does not know.
func newStepLog(path string, redact func(string) string, onLine func(string)) (*stepLog, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	// An existing log from an older imsbuild keeps its mode otherwise.
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return nil, err
	}
	return &stepLog{f: f, redact: redact, onLine: onLine}, nil
}

func (l *stepLog) Write(p []byte) (int, error) { return l.write(p, false) }

// Quiet returns a writer to the same log whose lines go to the file and the
// tail but not to events: output too verbose for the console (mksquashfs'
// statistics), summarized there by its writer instead.
func (l *stepLog) Quiet() io.Writer { return quietLog{l} }

type quietLog struct{ l *stepLog }

func (q quietLog) Write(p []byte) (int, error) { return q.l.write(p, true) }

func (l *stepLog) write(p []byte, quiet bool) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.err != nil {
		return 0, l.err
	}
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 && len(l.buf) >= maxLine {
			i = maxLine
		}
		if i < 0 {
			break
		}
		l.line(string(l.buf[:i]), true, quiet)
		l.buf = l.buf[min(i+1, len(l.buf)):]
	}
	if l.err != nil {
		return 0, l.err
	}
	return len(p), nil
}

// line writes one line (redacted) to the file and reports it.
func (l *stepLog) line(s string, newline, quiet bool) {
	s = l.redact(s)
	text := s
	if newline {
		text += "\n"
	}
	if _, err := l.f.WriteString(text); err != nil && l.err == nil {
		l.err = err
	}
	s = finalState(strings.TrimRight(s, "\r"))
	l.tail = append(l.tail, s)
	if len(l.tail) > tailLines {
		l.tail = l.tail[len(l.tail)-tailLines:]
	}
	if l.onLine != nil && !quiet {
		l.onLine(s)
	}
}

// finalState returns what a terminal shows of a line rewritten with
// carriage returns (a progress bar such as kiwi's "Processing: [###  ] 33%"
// drawn a hundred times): its last non-blank part. The log file keeps the
// line as written; events and the tail get this.
func finalState(s string) string {
	if !strings.Contains(s, "\r") {
		return s
	}
	parts := strings.Split(s, "\r")
	for i := len(parts) - 1; i >= 0; i-- {
		if strings.TrimSpace(parts[i]) != "" {
			return parts[i]
		}
	}
	return ""
}

// Close writes a last partial line and closes the file.
func (l *stepLog) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf) > 0 {
		l.line(string(l.buf), false, false)
		l.buf = nil
	}
	err := l.f.Close()
	if l.err != nil {
		return l.err
	}
	return err
}

// Tail returns the last lines written.
func (l *stepLog) Tail() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.tail, "\n")
}
