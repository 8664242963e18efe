package customize

import (
	"context"
	"fmt"
	"io"
	"path/filepath"

	"github.com/imsbuild/imsbuild/builders/sandbox"
	"github.com/imsbuild/imsbuild/spec"
)

// Apply runs steps in order on root. Output of scripts goes to log.
//
// Script output (stdout and stderr) reaches log in whole lines, unprefixed.
// env is the base environment of every script (K=V); each step adds its own
// Env, a default PATH and IMSBUILD=1. An error names the step, counted from
// 1, and wraps the sandbox's error (a *sandbox.ExitError,
// sandbox.ErrTimeout, or ctx.Err()).
func Apply(ctx context.Context, sb sandbox.Sandbox, root string, steps []spec.Customize, env []string, log io.Writer) error {
	return ApplyIn(ctx, func(context.Context, spec.Customize) (Environment, error) { return Environment{Sandbox: sb}, nil }, root, steps, env, log)
}

// Environment is where a step's script runs: a sandbox, and for a
// non-jailed step the builder root used as / (empty: the host's).
type Environment struct {
	Sandbox     sandbox.Sandbox
	BuilderRoot string
	// ScriptDir is where the script file is written (in a directory of
	// its own, 0700, the file 0600, removed after the step): an inline
	// script may hold secrets, so callers pass a private directory that
	// is swept after a crash. "" means os.TempDir().
	ScriptDir string
}

// ApplyIn is Apply with the environment chosen per step, e.g. an OCI
// builder image run with runc for steps that name one.
func ApplyIn(ctx context.Context, envFor func(context.Context, spec.Customize) (Environment, error), root string, steps []spec.Customize, env []string, log io.Writer) error {
	if log == nil {
		log = io.Discard
	}
	for i, st := range steps {
		e, err := envFor(ctx, st)
		if err == nil {
			err = apply(ctx, e, root, st, env, log)
		}
		if err != nil {
			return fmt.Errorf("customize step %d (%s): %w", i+1, stepName(st), err)
		}
	}
	return nil
}

// apply runs one step: files, then the script.
func apply(ctx context.Context, e Environment, root string, st spec.Customize, env []string, log io.Writer) error {
	for _, f := range st.Files {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := copyFile(root, f); err != nil {
			return err
		}
	}
	if st.Script == "" && st.Inline == "" {
		return nil
	}
	return runScript(ctx, e, root, st, env, log)
}

// stepName names a step in errors: its script's file name, "inline" or
// "files".
func stepName(st spec.Customize) string {
	switch {
	case st.Script != "":
		return filepath.Base(st.Script)
	case st.Inline != "":
		return "inline"
	}
	return "files"
}
