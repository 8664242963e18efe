package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/imsbuild/imsbuild/engine"
)

func TestPrintable(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"plain text, tabs\tand\nnewlines", "plain text, tabs\tand\nnewlines"},
		{"héllo ✓", "héllo ✓"},
		{"\x1b[2J\x1b]0;pwned\x07", `\x1b[2J\x1b]0;pwned\x07`},
		{"over\rwrite", `over\x0dwrite`},
		{"del\x7f nul\x00", `del\x7f nul\x00`},
		{"c1 \u009b31m csi", `c1 \u009b31m csi`},
		{"raw c1 byte \x9b31m", `raw c1 byte \x9b31m`},
		{"bad utf-8 \xff\xfe", `bad utf-8 \xff\xfe`},
	} {
		if got := printable(tc.in); got != tc.want {
			t.Errorf("printable(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// Escape sequences from a step reach the console escaped in every place
// the plain printer shows step text.
func TestPrinterEscapesStepOutput(t *testing.T) {
	var buf bytes.Buffer
	p := newPrinter(&buf, nil, false)
	evil := "\x1b]0;pwned\x07\x1b[2J\u009b"
	now := time.Now()
	p.Event(engine.Event{Time: now, Step: "image.x", Status: engine.StatusStarted})
	p.Event(engine.Event{Time: now, Step: "image.x", Status: engine.StatusLog, Line: "log " + evil})
	p.Event(engine.Event{Time: now, Step: "image.x", Status: engine.StatusFailed, Error: "error " + evil, LogPath: "/tmp/x.log"})
	p.Event(engine.Event{Time: now, Step: "image.y", Status: engine.StatusSkipped, Reason: "reason " + evil})
	p.Summary(&engine.StepError{Step: "image.x", LogPath: "/tmp/x.log", LogTail: "tail " + evil + "\nsecond line", Err: errors.New("error " + evil)})
	out := buf.String()
	if strings.ContainsAny(out, "\x1b\x07\u009b") {
		t.Errorf("printer output has raw control characters:\n%q", out)
	}
	for _, want := range []string{
		`| log \x1b]0;pwned\x07\x1b[2J\u009b`,
		`FAILED   error \x1b]0;pwned`,
		`skipped  (reason \x1b]0;pwned`,
		"tail \\x1b]0;pwned\\x07\\x1b[2J\\u009b\nsecond line",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("printer output:\n%s\nwant %q", out, want)
		}
	}
}

// The console shows a script's escape sequences escaped; the step's log
// file keeps its raw bytes; --json escapes them as JSON does.
func TestScriptEscapesOnConsole(t *testing.T) {
	dir := example(t)
	script := "#!/bin/sh\nprintf 'title \\033]0;pwned\\007 clear \\033[2J done\\n'\nexit 3\n"
	if err := os.WriteFile(filepath.Join(dir, "scripts/compute.sh"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	r := imsbuild(t, dir, "build", ".")
	if r.code != exitFailed {
		t.Fatalf("build exit %d, want 1\n%s%s", r.code, r.stdout, r.stderr)
	}
	if strings.ContainsAny(r.stdout+r.stderr, "\x1b\x07") {
		t.Errorf("console output has raw escape characters:\n%q", r.stdout+r.stderr)
	}
	if !strings.Contains(r.stdout, `title \x1b]0;pwned\x07 clear \x1b[2J done`) {
		t.Errorf("console output:\n%s\nwant the script's line with visible escapes", r.stdout)
	}
	logs, _ := filepath.Glob(filepath.Join(dir, ".imsbuild/cache/logs/*"))
	var raw bool
	for _, l := range logs {
		b, _ := os.ReadFile(l)
		raw = raw || bytes.Contains(b, []byte("title \x1b]0;pwned\x07 clear \x1b[2J done"))
	}
	if !raw {
		t.Errorf("no step log in %v keeps the raw bytes", logs)
	}
	r = imsbuild(t, dir, "build", "--json", ".")
	if strings.ContainsAny(r.stdout, "\x1b\x07") || !strings.Contains(r.stdout, `title \u001b]0;pwned\u0007 clear \u001b[2J done`) {
		t.Errorf("--json output:\n%s\nwant JSON escapes", r.stdout)
	}
}

// On a terminal (the live display) too, a script's escape sequences are
// shown escaped, in the status line and in the printed lines.
func TestScriptEscapesOnTerminal(t *testing.T) {
	dir := example(t)
	script := "#!/bin/sh\nprintf 'title \\033]0;pwned\\007 clear \\033[2J done\\n'\nsleep 1\nexit 3\n"
	if err := os.WriteFile(filepath.Join(dir, "scripts/compute.sh"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), binary, "build", ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "TERM=xterm")
	tty, err := pty.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	defer tty.Close()
	var out bytes.Buffer
	io.Copy(&out, tty) // ends with EIO when the process exits
	err = cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitFailed {
		t.Fatalf("exit = %v, want 1\n%q", err, out.String())
	}
	got := out.String()
	if strings.Contains(got, "\x1b]0;pwned") || strings.Contains(got, "\x1b[2J") || strings.Contains(got, "\x07") {
		t.Errorf("terminal output has the script's raw escape sequences:\n%q", got)
	}
	if !strings.Contains(got, `title \x1b]0;pwned\x07 clear \x1b[2J done`) {
		t.Errorf("terminal output:\n%q\nwant the script's line with visible escapes", got)
	}
}
