package engine

import (
	"archive/tar"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/zclconf/go-cty/cty"

	"github.com/imsbuild/imsbuild/internal/ctxio"
)

// The bundle of a build is what a remote step needs to reproduce any step
// of it exactly: one gzipped tar, staged once per build in the remote
// cache by its digest (so equal builds share it):
//
//	bundle.json       BundleManifest: the options that enter keys
//	vars.imsvars.hcl  every variable's value that is not sensitive
//	build/…           the build directory (build files, recipe trees,
//	                  scripts, files, CA certificates, the lock file)
//
// Sensitive variables and the HMAC key travel in the executor's
// SecretEnv, never in the bundle. The tar is canonical (sorted, no times),
// so the same inputs stage the same blob.

// Bundle entry names.
const (
	BundleManifestName = "bundle.json"
	BundleVarsName     = "vars.imsvars.hcl"
	BundleBuildDir     = "build"
)

// MaxBundleSize bounds the bytes of a bundle's files, on both sides: the
// build directory ships whole, so a build that keeps images in it must
// keep them elsewhere (or under .imsbuild, which is skipped).
const MaxBundleSize = 1 << 30

// BundleManifest is bundle.json.
type BundleManifest struct {
	Version    int  `json:"version"` // 1
	Locked     bool `json:"locked,omitempty"`
	TrackRepos bool `json:"track_repos,omitempty"`
}

// stageBundle writes the build's bundle and puts it in the remote cache,
// once per build; it returns the blob's digest.
func (e *Engine) stageBundle(ctx context.Context) (string, error) {
	return e.once("bundle", func() (string, error) {
		if err := os.MkdirAll(e.opts.WorkDir, 0o755); err != nil {
			return "", err
		}
		f, err := os.CreateTemp(e.opts.WorkDir, "bundle-*.tar.gz")
		if err != nil {
			return "", err
		}
		defer os.Remove(f.Name())
		defer f.Close()
		if err := e.writeBundle(ctx, f); err != nil {
			return "", err
		}
		if err := f.Close(); err != nil {
			return "", err
		}
		d, _, err := e.opts.Remote.Store.PutFile(ctx, f.Name())
		if err != nil {
			return "", fmt.Errorf("put bundle in %s: %w", e.opts.Remote.URL, err)
		}
		return string(d), nil
	})
}

// writeBundle writes the bundle of the build to w.
func (e *Engine) writeBundle(ctx context.Context, w io.Writer) error {
	gz := gzip.NewWriter(w) // no name, no time: canonical
	tw := tar.NewWriter(gz)
	man, err := json.Marshal(BundleManifest{Version: 1, Locked: e.opts.Locked, TrackRepos: e.opts.TrackRepos})
	if err != nil {
		return err
	}
	vars, err := e.varsFile()
	if err != nil {
		return err
	}
	for _, f := range []struct {
		name string
		data []byte
	}{{BundleManifestName, man}, {BundleVarsName, vars}} {
		if err := tw.WriteHeader(&tar.Header{Name: f.name, Mode: 0o644, Size: int64(len(f.data)), Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
			return err
		}
		if _, err := tw.Write(f.data); err != nil {
			return err
		}
	}
	if err := e.writeBuildDir(ctx, tw); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	return gz.Close()
}

// varsFile is an HCL file that sets every variable that is not sensitive
// to its value.
func (e *Engine) varsFile() ([]byte, error) {
	f := hclwrite.NewEmptyFile()
	names := make([]string, 0, len(e.cfg.Variables))
	for name := range e.cfg.Variables {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if v := e.cfg.Variables[name]; !v.Sensitive {
			f.Body().SetAttributeValue(name, v.Value)
		}
	}
	return f.Bytes(), nil
}

// varText is v as IMSBUILD_VAR_<name> gives it: a string as it is,
// anything else in HCL syntax.
func varText(v cty.Value) (string, error) {
	if v.IsNull() || !v.IsKnown() {
		return "", errors.New("no known value")
	}
	if v.Type() == cty.String {
		return v.AsString(), nil
	}
	return string(hclwrite.TokensForValue(v).Bytes()), nil
}

// writeBuildDir adds the build directory under build/, without what is
// not an input: the cache and state directories, .imsbuild, .git, variable
// files (-var-file and *.imsvars.hcl: they may hold sensitive values) and
// dir publish targets.
func (e *Engine) writeBuildDir(ctx context.Context, tw *tar.Writer) error {
	root := e.cfg.Dir
	skip := map[string]bool{
		filepath.Join(root, ".imsbuild"): true,
		filepath.Join(root, ".git"):      true,
	}
	for _, p := range []string{e.cfg.Settings.Cache.Dir, e.opts.StateDir, e.opts.WorkDir, e.opts.LogDir} {
		if p != "" {
			skip[filepath.Clean(p)] = true
		}
	}
	for name := range e.cfg.Files {
		if !slices.Contains(e.cfg.BuildFiles, name) {
			if abs, err := filepath.Abs(name); err == nil {
				skip[abs] = true
			}
		}
	}
	for _, p := range e.cfg.Publishes {
		if p.Kind == "dir" && p.Path != "" {
			skip[filepath.Clean(p.Path)] = true
		}
	}
	var total int64
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		// Variable files are where site values live, sensitive ones
		// included; they reach a build only by -var-file, whose values
		// the bundle carries in vars.imsvars.hcl.
		if skip[path] || (!d.IsDir() && strings.HasSuffix(path, ".imsvars.hcl")) {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		name := BundleBuildDir
		if rel != "." {
			name += "/" + filepath.ToSlash(rel)
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		hdr := &tar.Header{Name: name, Mode: int64(fi.Mode().Perm()), Format: tar.FormatPAX}
		if fi.Mode()&fs.ModeSetuid != 0 {
			hdr.Mode |= 0o4000
		}
		if fi.Mode()&fs.ModeSetgid != 0 {
			hdr.Mode |= 0o2000
		}
		if fi.Mode()&fs.ModeSticky != 0 {
			hdr.Mode |= 0o1000
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			hdr.Uid, hdr.Gid = int(st.Uid), int(st.Gid)
		}
		switch {
		case fi.Mode().IsRegular():
			hdr.Typeflag, hdr.Size = tar.TypeReg, fi.Size()
			if total += fi.Size(); total > MaxBundleSize {
				return fmt.Errorf("the build directory %s holds more than %d bytes; a remote step ships it whole: keep large files elsewhere", root, MaxBundleSize)
			}
		case fi.IsDir():
			hdr.Typeflag, hdr.Name = tar.TypeDir, name+"/"
		case fi.Mode()&fs.ModeSymlink != 0:
			if hdr.Linkname, err = os.Readlink(path); err != nil {
				return err
			}
			hdr.Typeflag = tar.TypeSymlink
		default:
			return fmt.Errorf("bundle %s: a %s cannot be shipped to a remote step", path, strings.TrimSpace(fi.Mode().Type().String()))
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		if hdr.Typeflag != tar.TypeReg {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		if _, err := io.CopyN(tw, ctxio.Reader(ctx, f), hdr.Size); err != nil {
			return fmt.Errorf("bundle %s: %w", path, err)
		}
		return nil
	})
}
