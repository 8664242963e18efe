package customize_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/imsbuild/imsbuild/builders/customize"
	"github.com/imsbuild/imsbuild/builders/sandbox"
	"github.com/imsbuild/imsbuild/spec"
)

// peekSandbox runs nothing; it records what the script directory bound
// into the sandbox looked like while the script would run.
type peekSandbox struct {
	dir, script     string
	dirMode, scMode os.FileMode
}

func (p *peekSandbox) Name() string { return "peek" }

func (p *peekSandbox) Run(_ context.Context, s sandbox.Spec) error {
	p.dir = s.Binds[0].Source
	if fi, err := os.Stat(p.dir); err == nil {
		p.dirMode = fi.Mode()
	}
	name := filepath.Join(p.dir, filepath.Base(s.Args[len(s.Args)-1]))
	if fi, err := os.Stat(name); err == nil {
		p.scMode = fi.Mode()
	}
	b, _ := os.ReadFile(name)
	p.script = string(b)
	return nil
}

// An inline script may hold secrets: it is written owner-only into the
// directory the caller names (the build's work dir, swept after a crash),
// not a world-readable one under /tmp, and removed after the step.
func TestScriptFilesArePrivate(t *testing.T) {
	work := t.TempDir()
	sb := &peekSandbox{}
	inline := "echo s3cr3t-token\n"
	err := customize.ApplyIn(t.Context(), func(context.Context, spec.Customize) (customize.Environment, error) {
		return customize.Environment{Sandbox: sb, ScriptDir: work}, nil
	}, t.TempDir(), []spec.Customize{{Inline: inline, Jail: true}}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(sb.dir, work+"/") || sb.script != inline {
		t.Errorf("script %q in %s, want %q in a directory of %s", sb.script, sb.dir, inline, work)
	}
	if sb.dirMode != os.ModeDir|0o700 || sb.scMode != 0o600 {
		t.Errorf("script directory %v, file %v; want drwx------ and -rw-------", sb.dirMode, sb.scMode)
	}
	if ents, _ := os.ReadDir(work); len(ents) != 0 {
		t.Errorf("work dir after the step = %v, want empty", ents)
	}
}
