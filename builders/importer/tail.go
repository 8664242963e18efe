package importer

import "strings"

// tailSize bounds how much tool output an error carries.
const tailSize = 2048

// tail keeps the last tailSize bytes written to it.
type tail struct{ buf []byte }

func (t *tail) Write(p []byte) (int, error) {
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - tailSize; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
	}
	return len(p), nil
}

// String returns the kept output on one line, FATAL ERROR lines first.
func (t *tail) String() string {
	var fatal, rest []string
	for _, l := range strings.Split(string(t.buf), "\n") {
		l = strings.TrimSpace(l)
		switch {
		case l == "":
		case strings.HasPrefix(l, "FATAL ERROR:"):
			fatal = append(fatal, strings.TrimSpace(strings.TrimPrefix(l, "FATAL ERROR:")))
		default:
			rest = append(rest, l)
		}
	}
	if len(fatal) > 0 {
		return strings.Join(fatal, "; ")
	}
	if len(rest) > 5 {
		rest = rest[len(rest)-5:]
	}
	return strings.Join(rest, "; ")
}
