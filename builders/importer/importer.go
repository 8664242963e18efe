package importer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/imsbuild/imsbuild/internal/tail"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/imsbuild/imsbuild/internal/treehash"
	"github.com/imsbuild/imsbuild/internal/untar"
)

// Kind is the kind of an import source.
type Kind string

// Source kinds.
const (
	KindDir      Kind = "dir"
	KindTar      Kind = "tar" // plain, gzip or zstd compressed
	KindSquashfs Kind = "squashfs"
)

// ErrUnknownSource reports a source that is neither a directory, a tar
// archive nor a squashfs file.
var ErrUnknownSource = errors.New("not a directory, tar archive or squashfs file")

var squashfsMagic = []byte("hsqs")

// Detect returns the kind of src by its type and magic bytes.
func Detect(src string) (Kind, error) {
	fi, err := os.Stat(src)
	if err != nil {
		return "", err
	}
	if fi.IsDir() {
		return KindDir, nil
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("%s: %w", src, ErrUnknownSource)
	}
	f, err := os.Open(src)
	if err != nil {
		return "", err
	}
	defer f.Close()
	head := make([]byte, len(squashfsMagic))
	if _, err := io.ReadFull(f, head); err == nil && bytes.Equal(head, squashfsMagic) {
		return KindSquashfs, nil
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	rc, err := untar.NewReader(f)
	if errors.Is(err, untar.ErrFormat) {
		return "", fmt.Errorf("%s: %w", src, ErrUnknownSource)
	}
	if err != nil {
		return "", fmt.Errorf("read %s: %w", src, err)
	}
	rc.Close()
	return KindTar, nil
}

// Import extracts or copies src into the empty directory dst (created when
// missing). Owners are kept when running as root; device nodes are created
// only then too.
func Import(ctx context.Context, src, dst string) error {
	kind, err := Detect(src)
	if err != nil {
		return fmt.Errorf("import: %w", err) // err names src
	}
	if err := emptyDir(dst); err != nil {
		return fmt.Errorf("import %s: %w", src, err)
	}
	switch kind {
	case KindDir:
		err = copyDir(ctx, src, dst)
	case KindSquashfs:
		err = unsquash(ctx, src, dst)
	default:
		err = extractTar(ctx, src, dst)
	}
	if err != nil {
		return fmt.Errorf("import %s: %w", src, err)
	}
	return nil
}

// emptyDir makes sure dst is an empty directory of mode 0755, whatever
// imsbuild's umask is (a source that has a mode for its root sets it).
func emptyDir(dst string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	if err := os.Chmod(dst, 0o755); err != nil {
		return err
	}
	f, err := os.Open(dst)
	if err != nil {
		return err
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	if err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if len(names) > 0 {
		return fmt.Errorf("destination %s is not empty", dst)
	}
	return nil
}

func extractTar(ctx context.Context, src, dst string) error {
	rc, err := untar.Open(src)
	if err != nil {
		return err
	}
	defer rc.Close()
	return untar.Extract(ctx, rc, dst, untar.Options{AllowDevices: os.Geteuid() == 0})
}

func copyDir(ctx context.Context, src, dst string) error {
	return run(ctx, "cp", "-a", "--reflink=auto", "--", strings.TrimSuffix(src, "/")+"/.", dst+"/")
}

func unsquash(ctx context.Context, src, dst string) error {
	return run(ctx, "unsquashfs", "-f", "-no-progress", "-d", dst, src)
}

// ExtractSquashfs extracts from the squashfs file src into the directory
// dst (created when missing; files already there are overwritten) only the
// entries matching patterns: shell wildcards matched per path component,
// relative to the image root, a directory standing for everything below
// it; a pattern that matches nothing is no error. maxDepth > 0 stops the
// descent that many levels below the root: with 4, "usr/share/doc" gives
// the entries of usr/share/doc, symlinks included, without their contents.
func ExtractSquashfs(ctx context.Context, src, dst string, maxDepth int, patterns ...string) error {
	if strings.HasPrefix(src, "-") {
		src = "./" + src // not an option
	}
	args := []string{"-f", "-no-progress", "-quiet", "-d", dst}
	if maxDepth > 0 {
		args = append(args, "-max-depth", strconv.Itoa(maxDepth))
	}
	args = append(append(args, src), patterns...)
	if err := run(ctx, "unsquashfs", args...); err != nil {
		return fmt.Errorf("extract from %s: %w", src, err)
	}
	return nil
}

// run runs a tool and, on failure, returns the last lines it printed.
func run(ctx context.Context, name string, args ...string) error {
	out := tail.New(30)
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout = out
	cmd.Stderr = out
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w", name, ctx.Err())
		}
		if msg := toolMessage(out.Lines()); msg != "" {
			return fmt.Errorf("%s: %w: %s", name, err, msg)
		}
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// SourceDigest returns the content digest ("sha256:…") of src for cache keys:
// the tree digest of a directory, the file sha256 of an archive or squashfs
// (whose bytes hold its owners).
//
// A directory imported by root keeps its owners (cp -a), and an image's
// owners matter (files of system users), so its digest covers them
// (treehash.DirOwners): a chown in the source gives another key. Imported
// by another user, every file becomes that user's whatever the source
// says, so the source's owners are left out (treehash.Dir).
func SourceDigest(ctx context.Context, src string, sc *treehash.StatCache) (string, error) {
	return sourceDigest(ctx, src, sc, os.Geteuid() == 0)
}

// sourceDigest is SourceDigest for an import that keeps owners or not.
func sourceDigest(ctx context.Context, src string, sc *treehash.StatCache, keepsOwners bool) (string, error) {
	fi, err := os.Stat(src)
	if err != nil {
		return "", fmt.Errorf("import digest: %w", err)
	}
	var d string
	switch {
	case fi.IsDir() && keepsOwners:
		d, err = treehash.DirOwners(ctx, src, sc)
	case fi.IsDir():
		d, err = treehash.Dir(ctx, src, sc)
	default:
		d, err = treehash.File(ctx, src, sc)
	}
	if err != nil {
		return "", fmt.Errorf("import digest %s: %w", src, err)
	}
	return d, nil
}
