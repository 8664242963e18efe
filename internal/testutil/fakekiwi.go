package testutil

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FakeKiwi puts a kiwi-ng on PATH for the test that "prepares" a copy of a
// busybox root (with the rendered config.xml at /etc/recipe.xml), and fails
// half way, leaving /etc/half in the root, when the description's
// config.xml says FAIL. It says a --target-arch in its output. It returns
// how many times it ran. Tests of what
// runs kiwi use it; the real kiwi-ng is exercised by the end-to-end tests.
func FakeKiwi(t testing.TB) (runs func() int) {
	t.Helper()
	RequireTool(t, "unshare")
	root := BusyboxRoot(t, true)
	bin := t.TempDir()
	counter := filepath.Join(bin, "runs")
	script := fmt.Sprintf(`#!/bin/sh
if [ "$1" = "--version" ]; then echo "KIWI (next generation) version 9.99.0"; exit 0; fi
while [ $# -gt 0 ]; do
  case "$1" in --root) root=$2; shift;; --description) desc=$2; shift;; --target-arch) echo "fake kiwi: --target-arch $2"; shift;; esac
  shift
done
echo run >> %[1]s
if grep -q FAIL "$desc/config.xml"; then
  mkdir -p "$root" && cp -a %[2]s/. "$root/" && echo half-installed > "$root/etc/half"
  echo "fake kiwi: package broken-pkg not found" >&2; exit 1
fi
mkdir -p "$root" && cp -a %[2]s/. "$root/" && cp "$desc/config.xml" "$root/etc/recipe.xml"
echo "prepared $root"
`, counter, root)
	if err := os.WriteFile(filepath.Join(bin, "kiwi-ng"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+":"+os.Getenv("PATH"))
	return func() int {
		b, _ := os.ReadFile(counter)
		return strings.Count(string(b), "run")
	}
}
