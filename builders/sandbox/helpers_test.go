package sandbox_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/imsbuild/imsbuild/builders/overlay"
	"github.com/imsbuild/imsbuild/builders/sandbox"
	"github.com/imsbuild/imsbuild/internal/testutil"
)

// testTimeout bounds every Run of the tests.
const testTimeout = 30 * time.Second

// backend is a sandbox backend under test; open skips the test when the
// backend is not installed.
type backend struct {
	name string
	open func(t testing.TB) sandbox.Sandbox
}

// backends returns the backends to test: bwrap, native and runc.
func backends() []backend {
	return []backend{
		{name: sandbox.BackendBwrap, open: func(t testing.TB) sandbox.Sandbox {
			return sandbox.NewBwrap(testutil.RequireTool(t, "bwrap"))
		}},
		{name: sandbox.BackendNative, open: func(t testing.TB) sandbox.Sandbox { return sandbox.NewNative() }},
		{name: sandbox.BackendRunc, open: func(t testing.TB) sandbox.Sandbox {
			sb, err := sandbox.NewRunc(testutil.RequireTool(t, "runc"))
			if err != nil {
				t.Fatal(err)
			}
			return sb
		}},
	}
}

// forEachBackend runs f as a subtest per backend.
func forEachBackend(t *testing.T, f func(t *testing.T, sb sandbox.Sandbox)) {
	t.Helper()
	testutil.RequireRoot(t)
	for _, be := range backends() {
		t.Run(be.name, func(t *testing.T) { f(t, be.open(t)) })
	}
}

// commandIsInit reports whether sb runs the command as its PID namespace's
// init, which ignores signals it has no handler for.
func commandIsInit(sb sandbox.Sandbox) bool { return sb.Name() == sandbox.BackendRunc }

// shell runs script with /bin/sh -c in sb and returns stdout, stderr and the
// error of Run.
func shell(t *testing.T, sb sandbox.Sandbox, s sandbox.Spec, script string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), testTimeout)
	defer cancel()
	var stdout, stderr bytes.Buffer
	s.Args = []string{"/bin/sh", "-c", script}
	if s.Env == nil {
		s.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	}
	s.Stdout, s.Stderr = &stdout, &stderr
	err := sb.Run(ctx, s)
	return stdout.String(), stderr.String(), err
}

// mountinfo returns the mount table of the test process, without the
// parent images that builds and tests running beside it mount
// (builders/overlay).
func mountinfo(t testing.TB) string {
	t.Helper()
	m, err := overlay.HostMounts()
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// procsWith returns the PIDs of the processes whose command line contains
// marker.
func procsWith(t testing.TB, marker string) []string {
	t.Helper()
	dirs, err := filepath.Glob("/proc/[0-9]*")
	if err != nil {
		t.Fatal(err)
	}
	var pids []string
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join(d, "cmdline"))
		if err != nil {
			continue // gone meanwhile
		}
		if bytes.Contains(b, []byte(marker)) {
			pids = append(pids, filepath.Base(d))
		}
	}
	return pids
}

// tree lists every path under root with its type and mode, to compare an
// image root before and after a run.
func tree(t testing.TB, root string) []string {
	t.Helper()
	var out []string
	err := filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		out = append(out, rel+" "+fi.Mode().String())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

// diff returns the lines only in a and only in b.
func diff(a, b []string) string {
	var sb strings.Builder
	for _, x := range a {
		if !slices.Contains(b, x) {
			sb.WriteString("-" + x + "\n")
		}
	}
	for _, x := range b {
		if !slices.Contains(a, x) {
			sb.WriteString("+" + x + "\n")
		}
	}
	return sb.String()
}

// bareRoot is a busybox root without the /proc, /dev and /tmp mountpoints.
func bareRoot(t testing.TB) string {
	t.Helper()
	root := testutil.BusyboxRoot(t, false)
	for _, d := range []string{"proc", "dev", "tmp"} {
		if err := os.Remove(filepath.Join(root, d)); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// cmdline returns the command line of pid, NUL-separated.
func cmdline(pid string) string {
	b, _ := os.ReadFile(filepath.Join("/proc", pid, "cmdline"))
	return string(b)
}
