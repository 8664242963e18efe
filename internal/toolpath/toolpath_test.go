package toolpath

import (
	"go/build"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestLook(t *testing.T) {
	gopath := t.TempDir()
	bin := filepath.Join(gopath, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "imsbuild-tool"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "imsbuild-data"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(bin, "imsbuild-dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", t.TempDir())
	old := build.Default.GOPATH
	build.Default.GOPATH = gopath
	t.Cleanup(func() { build.Default.GOPATH = old })

	if p, err := Look("imsbuild-tool"); err != nil || p != filepath.Join(bin, "imsbuild-tool") {
		t.Errorf("Look(imsbuild-tool) = %q, %v; want the $GOPATH/bin file", p, err)
	}
	for _, name := range []string{"imsbuild-data", "imsbuild-dir", "imsbuild-missing"} {
		if p, err := Look(name); err == nil || !strings.Contains(err.Error(), name+" not found") {
			t.Errorf("Look(%s) = %q, %v; want not found (not an executable file)", name, p, err)
		}
	}
	pathDir := t.TempDir()
	if err := os.WriteFile(filepath.Join(pathDir, "imsbuild-tool"), []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", pathDir)
	if p, err := Look("imsbuild-tool"); err != nil || p != filepath.Join(pathDir, "imsbuild-tool") {
		t.Errorf("Look(imsbuild-tool) = %q, %v; want the one on PATH first", p, err)
	}
}
