package executor

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

const testKey = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func TestParseStoredMarker(t *testing.T) {
	for _, tc := range []struct {
		name, line string
		ok, err    bool
	}{
		{"round trip", strings.TrimSuffix(FormatStoredMarker(testKey), "\n"), true, false},
		{"text", "stored image.compute", false, false},
		{"marker in a line", "echo " + StoredMarker + testKey, false, false},
		{"short key", StoredMarker + testKey[:63], true, true},
		{"upper case", StoredMarker + strings.ToUpper(testKey), true, true},
		{"trailing text", StoredMarker + testKey + " x", true, true},
		{"empty", StoredMarker, true, true},
	} {
		key, ok, err := ParseStoredMarker([]byte(tc.line))
		if ok != tc.ok || (err != nil) != tc.err {
			t.Errorf("%s: ok %v, err %v; want ok %v, err %v", tc.name, ok, err, tc.ok, tc.err)
		}
		if ok && err == nil && key != testKey {
			t.Errorf("%s: key %q", tc.name, key)
		}
	}
}

// FuzzFilter: however a pod's output is cut into writes, the filter
// passes every byte of every line that is not a marker line, in order,
// and reports each marker line once, to the function of its kind.
func FuzzFilter(f *testing.F) {
	f.Add([]byte("a\n"+FormatSSHMarker(testEndpoint)+"b\npartial"), uint16(3))
	f.Add([]byte(SSHMarker+strings.Repeat("x", MaxSSHMarkerLine+10)+"\nz\n"), uint16(100))
	f.Add([]byte(SSHMarker+"{bad\n"), uint16(0))
	f.Add([]byte("x\n"+FormatStoredMarker(testKey)+StoredMarker+"zz\n"), uint16(9))
	f.Fuzz(func(t *testing.T, in []byte, cut uint16) {
		var out bytes.Buffer
		var ssh, stored int
		fl := NewFilter(&out, Markers{
			SSH:    func(SSHEndpoint, error) { ssh++ },
			Stored: func(string, error) { stored++ },
		})
		c := int(cut) % (len(in) + 1)
		for _, part := range [][]byte{in[:c], in[c:]} {
			if n, err := fl.Write(part); n != len(part) || err != nil {
				t.Fatalf("Write = %d, %v", n, err)
			}
		}
		if err := fl.Flush(); err != nil {
			t.Fatal(err)
		}
		var want bytes.Buffer
		wantSSH, wantStored := 0, 0
		for _, line := range bytes.SplitAfter(in, []byte("\n")) {
			content := bytes.TrimSuffix(line, []byte("\n"))
			if bytes.HasSuffix(line, []byte("\n")) && len(content) <= MaxSSHMarkerLine {
				if bytes.HasPrefix(content, []byte(SSHMarker)) {
					wantSSH++
					continue
				}
				if bytes.HasPrefix(content, []byte(StoredMarker)) {
					wantStored++
					continue
				}
			}
			want.Write(line)
		}
		if !bytes.Equal(out.Bytes(), want.Bytes()) || ssh != wantSSH || stored != wantStored {
			t.Fatalf("filtered %q (%d ssh, %d stored markers), want %q (%d, %d)", out.Bytes(), ssh, stored, want.Bytes(), wantSSH, wantStored)
		}
	})
}

// A Filter without a function for a kind still takes its lines out.
func TestFilterNilMarkers(t *testing.T) {
	var out bytes.Buffer
	fl := NewFilter(&out, Markers{})
	if _, err := fl.Write([]byte("a\n" + FormatStoredMarker(testKey) + FormatSSHMarker(testEndpoint) + "b\n")); err != nil {
		t.Fatal(err)
	}
	if out.String() != "a\nb\n" {
		t.Errorf("out %q, want %q", out.String(), "a\nb\n")
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("closed") }

func TestFilterWriteError(t *testing.T) {
	fl := NewFilter(failWriter{}, Markers{SSH: func(SSHEndpoint, error) { t.Error("marker") }})
	if _, err := fl.Write([]byte("text\n")); err == nil {
		t.Error("Write = nil error, want the writer's")
	}
}
