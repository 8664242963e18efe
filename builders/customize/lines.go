package customize

import (
	"bytes"
	"io"
	"sync"
)

// maxLine is the longest line buffered; a longer one is cut.
const maxLine = 64 << 10

// sink serializes whole lines from several writers into one log.
type sink struct {
	mu  sync.Mutex
	w   io.Writer
	err error // first write error
}

func newSink(w io.Writer) *sink { return &sink{w: w} }

func (s *sink) write(line []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return
	}
	if _, err := s.w.Write(line); err != nil {
		s.err = err
	}
}

// lines returns a writer that passes complete lines to the sink.
func (s *sink) lines() *lineWriter { return &lineWriter{sink: s} }

// lineWriter buffers a partial line until its newline arrives.
type lineWriter struct {
	sink *sink
	buf  []byte
}

func (l *lineWriter) Write(p []byte) (int, error) {
	l.buf = append(l.buf, p...)
	start := 0
	for {
		i := bytes.IndexByte(l.buf[start:], '\n')
		if i < 0 {
			break
		}
		l.sink.write(l.buf[start : start+i+1])
		start += i + 1
	}
	l.buf = l.buf[:copy(l.buf, l.buf[start:])]
	if len(l.buf) >= maxLine {
		l.flush()
	}
	return len(p), nil
}

// flush writes a pending partial line, ending it with a newline.
func (l *lineWriter) flush() {
	if len(l.buf) == 0 {
		return
	}
	l.sink.write(append(l.buf, '\n'))
	l.buf = l.buf[:0]
}
