package spec

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"

	"github.com/imsbuild/imsbuild/internal/testutil"
)

// writeBuild writes src as the only build file of a new directory.
func writeBuild(t *testing.T, src string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "build.ims.hcl"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// manyLocals is a build file of about 10 MB with n locals: numbers that
// refer to two earlier ones, and padded strings.
func manyLocals(n int) string {
	var b strings.Builder
	b.WriteString("locals {\n")
	pad := strings.Repeat("x", 110)
	for i := range n {
		switch {
		case i%2 == 0:
			fmt.Fprintf(&b, "  l%06d = \"%s\"\n", i, pad)
		case i == 1:
			fmt.Fprintf(&b, "  l%06d = 0\n", i)
		default: // a chain through every odd local, and a fan-in from the even ones
			fmt.Fprintf(&b, "  l%06d = local.l%06d + length([local.l%06d]) # %s\n", i, i-2, i/4*2, pad[:80])
		}
	}
	b.WriteString("}\n")
	return b.String()
}

// TestLoadManyLocals: evaluating locals is linear, so a 10 MB build file
// with 88k locals validates in seconds (it took over 5 minutes when each local was
// evaluated with an object of all locals evaluated before it).
func TestLoadManyLocals(t *testing.T) {
	src := manyLocals(88_000)
	if len(src) < 10<<20 {
		t.Fatalf("generated %d bytes, want ≥ 10 MiB", len(src))
	}
	dir := writeBuild(t, src)
	cpu0 := testutil.CPUTime(t)
	start := time.Now()
	cfg, diags := Load(dir, Options{})
	took := time.Since(start)
	t.Logf("Load of %d bytes, 88000 locals: %s (%s CPU)", len(src), took, testutil.CPUTime(t)-cpu0)
	for _, d := range diags {
		if d.Severity == hcl.DiagError {
			t.Errorf("diagnostic: %s", d.Error())
		}
	}
	if cfg.Files == nil {
		t.Fatal("Load() returned no Files")
	}
	if took > 60*time.Second {
		t.Errorf("Load took %s, want < 60s (about 5 s on an idle 2-core machine; quadratic evaluation took over 5 minutes)", took)
	}
}

// loadWithin loads dir and fails the test if Load takes longer than limit
// (a hang: reading a device or a FIFO) instead of blocking the test binary.
func loadWithin(t *testing.T, ctx context.Context, limit time.Duration, dir string, opts Options) hcl.Diagnostics {
	t.Helper()
	done := make(chan hcl.Diagnostics, 1)
	go func() {
		_, diags := LoadContext(ctx, dir, opts)
		done <- diags
	}()
	select {
	case d := <-done:
		return d
	case <-time.After(limit):
		t.Fatalf("Load did not return within %s", limit)
		return nil
	}
}

// errorText joins the errors of diags as "line:col: Summary: Detail".
func errorText(diags hcl.Diagnostics) string {
	var b strings.Builder
	for _, d := range diags {
		if d.Severity != hcl.DiagError {
			continue
		}
		if d.Subject == nil {
			fmt.Fprintf(&b, "NO SUBJECT: %s: %s\n", d.Summary, d.Detail)
			continue
		}
		fmt.Fprintf(&b, "%s:%d:%d: %s: %s\n", filepath.Base(d.Subject.Filename), d.Subject.Start.Line, d.Subject.Start.Column, d.Summary, d.Detail)
	}
	return b.String()
}

// TestFileFunctionsRefuseSpecialFiles: file("/dev/zero") ran out of memory,
// filesha256("/dev/zero") and file() of a FIFO never returned.
func TestFileFunctionsRefuseSpecialFiles(t *testing.T) {
	fifo := filepath.Join(t.TempDir(), "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(t.TempDir(), "big")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(maxReadFileSize + 1); err != nil { // sparse
		t.Fatal(err)
	}
	f.Close()
	for _, tc := range []struct {
		name, expr, want string
	}{
		{"file of /dev/zero", `file("/dev/zero")`, "not a regular file (a character device)"},
		{"filesha256 of /dev/zero", `filesha256("/dev/zero")`, "not a regular file (a character device)"},
		{"filemd5 of /dev/urandom", `filemd5("/dev/urandom")`, "not a regular file (a character device)"},
		{"templatefile of /dev/zero", `templatefile("/dev/zero", {})`, "not a regular file (a character device)"},
		{"file of a FIFO", fmt.Sprintf("file(%q)", fifo), "not a regular file (a FIFO)"},
		{"filesha256 of a FIFO", fmt.Sprintf("filesha256(%q)", fifo), "not a regular file (a FIFO)"},
		{"file of /proc/self/stat", `file("/proc/self/stat")`, "not a regular file (a kernel interface file)"},
		{"filesha256 of /proc/self/status", `filesha256("/proc/self/status")`, "not a regular file (a kernel interface file)"},
		{"file of /sys", `file("/sys/kernel/uevent_seqnum")`, "not a regular file (a kernel interface file)"},
		{"file of a directory", fmt.Sprintf("file(%q)", t.TempDir()), "not a regular file (a directory)"},
		{"file over 64 MiB", fmt.Sprintf("file(%q)", big), "is larger than 64 MiB"},
		{"templatefile over 64 MiB", fmt.Sprintf("templatefile(%q, {})", big), "is larger than 64 MiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeBuild(t, "locals {\n  x = "+tc.expr+"\n}\n")
			got := errorText(loadWithin(t, t.Context(), 20*time.Second, dir, Options{}))
			if !strings.Contains(got, "build.ims.hcl:2:7: Error in function call") || !strings.Contains(got, tc.want) {
				t.Errorf("Load() errors:\n%s\nwant build.ims.hcl:2:7: Error in function call … %q", got, tc.want)
			}
		})
	}
}

// TestFileFunctionsRegularFiles: the limits leave ordinary use alone.
func TestFileFunctionsRegularFiles(t *testing.T) {
	dir := writeBuild(t, `
locals {
  text   = file("a.txt")
  sum    = filesha256("a.txt")
  tmpl   = templatefile("t.tmpl", { who = "x" })
  exists = [fileexists("a.txt"), fileexists("/dev/zero"), fileexists("nope")]
}
image "base" {
  import            = "root"
  kernel_parameters = "${local.text} ${local.sum} ${local.tmpl} ${jsonencode(local.exists)}"
}
`)
	for name, data := range map[string]string{"a.txt": "hello", "t.tmpl": "hi ${who}", "root/etc/x": "x"} {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cfg, diags := Load(dir, Options{})
	if diags.HasErrors() {
		t.Fatalf("Load() errors:\n%s", errorText(diags))
	}
	want := "hello 2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824 hi x [true,false,false]"
	if got := cfg.Images["base"].KernelParameters; got != want {
		t.Errorf("kernel_parameters = %q, want %q", got, want)
	}
}

// TestBuildFileLimits: a build file that is a device, a FIFO or over 16
// MiB is refused, and so is deep nesting, which crashed the parser with a
// Go stack overflow (a fatal error that no recover catches).
func TestBuildFileLimits(t *testing.T) {
	deep := func(open, close string, n int) string {
		return "locals {\n  x = " + strings.Repeat(open, n) + "1" + strings.Repeat(close, n) + "\n}\n"
	}
	for _, tc := range []struct {
		name string
		src  string
		want string // "" for no error
	}{
		// The audit's case; the others are smaller to keep the test fast.
		{"1M parentheses", deep("(", ")", 1<<20), "build.ims.hcl:2:262: Nesting too deep"},
		{"256k brackets", deep("[", "]", 1<<18), "build.ims.hcl:2:262: Nesting too deep"},
		{"256k templates", deep(`"${`, `}"`, 1<<18), "Nesting too deep"},
		{"256k unary minus", deep("-", "", 1<<18), "build.ims.hcl:2:262: Nesting too deep"},
		{"256k negations", "locals {\n  x = " + strings.Repeat("!", 1<<18) + "true\n}\n", "Nesting too deep"},
		{"256k conditionals", "locals {\n  x = " + strings.Repeat("true ? 1 : ", 1<<18) + "1\n}\n", "Nesting too deep"},
		{"256k nested blocks", strings.Repeat("b {\n", 1<<18) + strings.Repeat("}\n", 1<<18), "Nesting too deep"},
		{"256k for expressions", "locals {\n  x = " + strings.Repeat("[for x in ", 1<<18) + "[]" + strings.Repeat(": x]", 1<<18) + "\n}\n", "Nesting too deep"},
		{"256k template ifs", "locals {\n  x = \"" + strings.Repeat("%{if true}", 1<<18) + "x" + strings.Repeat("%{endif}", 1<<18) + "\"\n}\n", "build.ims.hcl:2:2540: Nesting too deep"},
		{"256k template fors", "locals {\n  x = <<EOT\n" + strings.Repeat("%{~ for x in [1] ~}", 1<<18) + "x" + strings.Repeat("%{ endfor }", 1<<18) + "\nEOT\n}\n", "Nesting too deep"},
		{"many sequential template ifs are fine", "locals {\n  x = \"" + strings.Repeat("%{if true}x%{else}y%{endif}", 10_000) + "\"\n}\n", ""},
		{"256k splats", "locals {\n  x = y" + strings.Repeat("[*]", 1<<18) + "\n}\n", "build.ims.hcl:2:773: Nesting too deep"},
		{"256k attribute splats", "locals {\n  x = y" + strings.Repeat(".*.a", 1<<18) + "\n}\n", "Nesting too deep"},
		{"many splats in a list are fine", "locals {\n  x = [" + strings.Repeat("local.y[*].a, ", 1000) + "]\n  y = [{ a = 1 }]\n}\n", ""},
		{"200 parentheses are fine", deep("(", ")", 200), ""},
		{"many sequential brackets are fine", "locals {\n  x = [" + strings.Repeat("[1], -1, !true, true ? 1 : 2, ", 20_000) + "]\n}\n", ""},
		{"many minus lines are fine", "locals {\n" + strings.Repeat("  a = -1\n  b = 1 - 2 - 3 - 4\n", 1) + "  c = [\n" + strings.Repeat("    -1,\n", 1000) + "  ]\n}\n", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := writeBuild(t, tc.src)
			got := errorText(loadWithin(t, t.Context(), 60*time.Second, dir, Options{}))
			if tc.want == "" {
				if got != "" {
					t.Errorf("Load() errors:\n%s\nwant none", got)
				}
				return
			}
			if !strings.Contains(got, tc.want) {
				t.Errorf("Load() errors:\n%s\nwant %q", got, tc.want)
			}
		})
	}
	t.Run("file over 16 MiB", func(t *testing.T) {
		dir := t.TempDir()
		src := "locals { x = 1 }\n" + strings.Repeat("# padding\n", (maxBuildFileSize/10)+1)
		if err := os.WriteFile(filepath.Join(dir, "build.ims.hcl"), []byte(src), 0o644); err != nil {
			t.Fatal(err)
		}
		got := errorText(loadWithin(t, t.Context(), 60*time.Second, dir, Options{}))
		if want := "build.ims.hcl:1:1: Cannot read build file: " + filepath.Join(dir, "build.ims.hcl") + " is larger than 16 MiB."; !strings.Contains(got, want) {
			t.Errorf("Load() errors:\n%s\nwant %q", got, want)
		}
	})
	t.Run("build file is a FIFO", func(t *testing.T) {
		dir := t.TempDir()
		if err := syscall.Mkfifo(filepath.Join(dir, "build.ims.hcl"), 0o600); err != nil {
			t.Fatal(err)
		}
		got := errorText(loadWithin(t, t.Context(), 20*time.Second, dir, Options{}))
		if want := "build.ims.hcl:1:1: Cannot read build file: " + filepath.Join(dir, "build.ims.hcl") + ": not a regular file (a FIFO)."; !strings.Contains(got, want) {
			t.Errorf("Load() errors:\n%s\nwant %q", got, want)
		}
	})
	t.Run("build file links to /dev/zero", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.Symlink("/dev/zero", filepath.Join(dir, "build.ims.hcl")); err != nil {
			t.Fatal(err)
		}
		got := errorText(loadWithin(t, t.Context(), 20*time.Second, dir, Options{}))
		if want := "not a regular file (a character device)"; !strings.Contains(got, want) {
			t.Errorf("Load() errors:\n%s\nwant %q", got, want)
		}
	})
	t.Run("var file is /dev/zero", func(t *testing.T) {
		dir := writeBuild(t, "locals { x = 1 }\n")
		got := errorText(loadWithin(t, t.Context(), 20*time.Second, dir, Options{VarFiles: []string{"/dev/zero"}}))
		if want := "zero:1:1: Cannot read variable file: /dev/zero: not a regular file (a character device)."; !strings.Contains(got, want) {
			t.Errorf("Load() errors:\n%s\nwant %q", got, want)
		}
	})
	t.Run("-var nesting", func(t *testing.T) {
		dir := writeBuild(t, "variable \"n\" {\n  type = number\n}\n")
		deep := strings.Repeat("(", 1<<20) + "1" + strings.Repeat(")", 1<<20)
		for _, opts := range []Options{{Vars: []string{"n=" + deep}}, {Environ: []string{"IMSBUILD_VAR_n=" + deep}}} {
			got := errorText(loadWithin(t, t.Context(), 60*time.Second, dir, opts))
			if want := "Nesting too deep"; !strings.Contains(got, want) {
				t.Errorf("Load() errors:\n%s\nwant %q", got, want)
			}
		}
	})
	t.Run("jsondecode nesting", func(t *testing.T) {
		dir := writeBuild(t, "locals {\n  x = jsondecode(file(\"d.json\"))\n  y = jsondecode(\"{\\\"a\\\": [[\\\"[[[\\\"]]}\")\n}\n")
		if err := os.WriteFile(filepath.Join(dir, "d.json"), []byte(strings.Repeat("[", 4<<20)+strings.Repeat("]", 4<<20)), 0o644); err != nil {
			t.Fatal(err)
		}
		got := errorText(loadWithin(t, t.Context(), 60*time.Second, dir, Options{}))
		if want := "build.ims.hcl:2:18: Invalid function argument: Invalid value for \"str\" parameter: the JSON nests more than 256 levels deep at byte 256.\n"; got != want {
			t.Errorf("Load() errors:\n%s\nwant\n%s", got, want)
		}
	})
	t.Run("templatefile nesting", func(t *testing.T) {
		dir := writeBuild(t, "locals {\n  x = templatefile(\"t.tmpl\", {})\n}\n")
		tmpl := strings.Repeat("${(", 1<<18) + "1" + strings.Repeat(")}", 1<<18)
		if err := os.WriteFile(filepath.Join(dir, "t.tmpl"), []byte(tmpl), 0o644); err != nil {
			t.Fatal(err)
		}
		got := errorText(loadWithin(t, t.Context(), 60*time.Second, dir, Options{}))
		if want := "Nesting too deep"; !strings.Contains(got, want) {
			t.Errorf("Load() errors:\n%s\nwant %q", got, want)
		}
	})
}

// TestLoadCancelled: a cancelled context stops loading, even in the middle
// of hashing a large file.
func TestLoadCancelled(t *testing.T) {
	dir := writeBuild(t, manyLocals(88_000))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	start := time.Now()
	got := errorText(loadWithin(t, ctx, 20*time.Second, dir, Options{}))
	if !strings.Contains(got, "Loading cancelled: context canceled.") {
		t.Errorf("Load() errors:\n%s\nwant Loading cancelled", got)
	}
	t.Logf("cancelled Load returned in %s", time.Since(start))

	big := filepath.Join(t.TempDir(), "big")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(1 << 40); err != nil { // 1 TiB, sparse: hashing takes hours
		t.Fatal(err)
	}
	f.Close()
	dir = writeBuild(t, fmt.Sprintf("locals {\n  x = filesha256(%q)\n}\n", big))
	ctx, cancel = context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	got = errorText(loadWithin(t, ctx, 20*time.Second, dir, Options{}))
	if !strings.Contains(got, "context deadline exceeded") {
		t.Errorf("Load() errors:\n%s\nwant context deadline exceeded", got)
	}
}

// A cycle among locals is reported at the reference that closes it, with
// the chain and the other site, also when the locals are many.
func TestLocalCycleSites(t *testing.T) {
	src := manyLocals(1000) + "locals {\n  a = \"${local.b}-x\"\n  b = local.c\n  c = local.a\n}\n"
	dir := writeBuild(t, src)
	got := errorText(loadWithin(t, t.Context(), 60*time.Second, dir, Options{}))
	want := fmt.Sprintf("build.ims.hcl:%d:7: Circular reference between local values: The local values refer to each other in a cycle: "+
		"local.a → local.b → local.c → local.a. local.a is defined at %s:%d.\n", 1006, filepath.Join(dir, "build.ims.hcl"), 1004)
	if got != want {
		t.Errorf("Load() errors:\n%s\nwant\n%s", got, want)
	}
}
