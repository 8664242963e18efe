package atomicfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteFile(t *testing.T) {
	tests := []struct {
		name    string
		old     string // existing content, "" for none
		data    string
		perm    os.FileMode
		wantErr bool
	}{
		{name: "new file", data: "hello", perm: 0o644},
		{name: "replace", old: "old content that is longer", data: "new", perm: 0o600},
		{name: "read-only mode", data: "ro", perm: 0o444},
		{name: "setuid bit kept", data: "x", perm: fs.ModeSetuid | 0o755},
		{name: "empty", data: "", perm: 0o640},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			p := filepath.Join(dir, "f")
			if tc.old != "" {
				if err := os.WriteFile(p, []byte(tc.old), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if err := WriteFile(p, []byte(tc.data), tc.perm); err != nil {
				t.Fatalf("WriteFile() = %v", err)
			}
			got, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.data {
				t.Errorf("content = %q, want %q", got, tc.data)
			}
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode() != tc.perm {
				t.Errorf("mode = %v, want %v", fi.Mode(), tc.perm)
			}
			assertNoTemp(t, dir, 1)
		})
	}
}

func TestWriteFileMissingDir(t *testing.T) {
	p := filepath.Join(t.TempDir(), "missing", "f")
	err := WriteFile(p, []byte("x"), 0o644)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("WriteFile() = %v, want ErrNotExist", err)
	}
}

func TestAbortLeavesOldContent(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := os.WriteFile(p, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := Create(p, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("partial new")); err != nil {
		t.Fatal(err)
	}
	// Readers see the old content while the new one is being written.
	if got, _ := os.ReadFile(p); string(got) != "old" {
		t.Errorf("during write content = %q, want old", got)
	}
	f.Abort()
	f.Abort() // idempotent
	if got, _ := os.ReadFile(p); string(got) != "old" {
		t.Errorf("after Abort content = %q, want old", got)
	}
	if err := f.Commit(); err == nil {
		t.Error("Commit() after Abort = nil, want error")
	}
	assertNoTemp(t, dir, 1)
}

func TestCreateTempCommitAs(t *testing.T) {
	dir := t.TempDir()
	tmp := filepath.Join(dir, "tmp")
	if err := os.Mkdir(tmp, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := CreateTemp(tmp, "", 0o444)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Abort()
	if !strings.HasPrefix(f.Name(), tmp+string(filepath.Separator)) {
		t.Errorf("Name() = %s, want under %s", f.Name(), tmp)
	}
	if _, err := f.ReadFrom(strings.NewReader("streamed")); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "final")
	if err := f.CommitAs(dst); err != nil {
		t.Fatalf("CommitAs() = %v", err)
	}
	f.Abort() // no-op after commit
	if got, err := os.ReadFile(dst); err != nil || string(got) != "streamed" {
		t.Errorf("ReadFile() = %q, %v; want streamed", got, err)
	}
	assertNoTemp(t, tmp, 0)
}

func TestCommitWithoutTarget(t *testing.T) {
	dir := t.TempDir()
	f, err := CreateTemp(dir, "", 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Commit(); err == nil {
		t.Fatal("Commit() without target = nil, want error")
	}
	assertNoTemp(t, dir, 0)
}

func assertNoTemp(t *testing.T, dir string, want int) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != want {
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		t.Errorf("dir %s has %v, want %d entries (temp file left behind?)", dir, names, want)
	}
}
