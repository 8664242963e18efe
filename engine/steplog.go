package engine

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync"
)

const tailLines = 20

// stepLog writes a step's output to its log file, reports each line and
// keeps the last lines for the failure message.
type stepLog struct {
	mu     sync.Mutex
	f      *os.File
	onLine func(string)
	buf    []byte
	tail   []string
}

func newStepLog(path string, onLine func(string)) (*stepLog, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	return &stepLog{f: f, onLine: onLine}, nil
}

func (l *stepLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, err := l.f.Write(p); err != nil {
		return 0, err
	}
	l.buf = append(l.buf, p...)
	for {
		i := bytes.IndexByte(l.buf, '\n')
		if i < 0 {
			break
		}
		l.line(string(l.buf[:i]))
		l.buf = l.buf[i+1:]
	}
	return len(p), nil
}

func (l *stepLog) line(s string) {
	s = strings.TrimRight(s, "\r")
	l.tail = append(l.tail, s)
	if len(l.tail) > tailLines {
		l.tail = l.tail[len(l.tail)-tailLines:]
	}
	if l.onLine != nil {
		l.onLine(s)
	}
}

// Close flushes a last partial line and closes the file.
func (l *stepLog) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.buf) > 0 {
		l.line(string(l.buf))
		l.buf = nil
	}
	return l.f.Close()
}

// Tail returns the last lines written.
func (l *stepLog) Tail() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.tail, "\n")
}
