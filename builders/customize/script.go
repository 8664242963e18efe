package customize

import (
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/imsbuild/imsbuild/builders/sandbox"
	"github.com/imsbuild/imsbuild/spec"
)

// Where the script directory is bound in the sandbox: in the image root when
// jailed (the mountpoint is removed afterwards), in the sandbox's private
// /tmp otherwise (the host root is read-only there).
const (
	jailedScriptDir = "/.imsbuild/script"
	hostScriptDir   = "/tmp/.imsbuild/script"
)

// defaultPath is the PATH of scripts whose environment sets none.
const defaultPath = "/usr/sbin:/usr/bin:/sbin:/bin"

// runScript runs the step's script with /bin/sh -e in sb.
func runScript(ctx context.Context, e Environment, root string, st spec.Customize, env []string, log io.Writer) error {
	dir, err := os.MkdirTemp(e.ScriptDir, "imsbuild-script-") // 0700
	if err != nil {
		return fmt.Errorf("script dir: %w", err)
	}
	defer os.RemoveAll(dir)
	name, err := writeScript(dir, st)
	if err != nil {
		return err
	}
	mountDir := jailedScriptDir
	if !st.Jail {
		mountDir = hostScriptDir
	}
	out := newSink(log)
	stdout, stderr := out.lines(), out.lines()
	err = e.Sandbox.Run(ctx, sandbox.Spec{
		Root:        root,
		BuilderRoot: e.BuilderRoot,
		Jail:        st.Jail,
		Network:     st.Network,
		Args:        []string{"/bin/sh", "-e", path.Join(mountDir, name)},
		Env:         scriptEnv(env, st),
		Dir:         "/",
		Binds:       []sandbox.Bind{{Source: dir, Dest: mountDir, ReadOnly: true}},
		Stdout:      stdout,
		Stderr:      stderr,
		Timeout:     st.Timeout,
	})
	stdout.flush()
	stderr.flush()
	if err != nil {
		return err
	}
	if err := out.err; err != nil {
		return fmt.Errorf("write log: %w", err)
	}
	return nil
}

// writeScript puts the step's script into dir and returns its file name.
func writeScript(dir string, st spec.Customize) (string, error) {
	name := "inline.sh"
	if st.Script != "" {
		name = filepath.Base(st.Script)
	}
	dst, err := os.OpenFile(filepath.Join(dir, name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return "", fmt.Errorf("script: %w", err)
	}
	if st.Script != "" {
		src, oerr := os.Open(st.Script)
		if oerr != nil {
			dst.Close()
			return "", fmt.Errorf("script: %w", oerr)
		}
		defer src.Close()
		_, err = io.Copy(dst, src) // the function's err: a short copy fails the step
	} else {
		_, err = io.WriteString(dst, st.Inline)
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("script %s: %w", name, err)
	}
	return name, nil
}

// scriptEnv is env, then the step's Env, a default PATH, IMSBUILD=1 and,
// non-jailed, IMAGE_ROOT; later values win; sorted.
func scriptEnv(env []string, st spec.Customize) []string {
	vars := make(map[string]string, len(env)+len(st.Env)+3)
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k != "" {
			vars[k] = v
		}
	}
	for k, v := range st.Env {
		vars[k] = v
	}
	if _, ok := vars["PATH"]; !ok {
		vars["PATH"] = defaultPath
	}
	vars["IMSBUILD"] = "1"
	if !st.Jail {
		vars["IMAGE_ROOT"] = sandbox.ImageDir
	}
	out := make([]string, 0, len(vars))
	for k, v := range vars {
		out = append(out, k+"="+v)
	}
	slices.Sort(out)
	return out
}
