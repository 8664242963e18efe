package pack

import (
	"context"
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"io"
	"os"

	"github.com/imsbuild/imsbuild/ims"
	"github.com/imsbuild/imsbuild/internal/ctxio"
)

// copyArtifact streams r into a new file at dst, hashing while copying.
func copyArtifact(ctx context.Context, name, dst string, r io.Reader) (Artifact, error) {
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return Artifact{}, err
	}
	a, err := hashArtifact(name, dst, ctxio.Reader(ctx, r), f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(dst)
	}
	return a, err
}

// Checksums returns the sha256 and md5 (hex) of the file at path, computed
// on two cores at once.
func Checksums(ctx context.Context, path string) (sha256Hex, md5Hex string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return "", "", err
	}
	defer f.Close()
	a, err := hashArtifact("", path, ctxio.Reader(ctx, f), nil)
	return a.SHA256, a.MD5, err
}

// hashArtifact reads r to EOF, writing it to w when not nil, and returns
// the artifact with its size, sha256 and md5. The two digests are computed
// on two cores at once: a rootfs is hundreds of megabytes.
func hashArtifact(name, path string, r io.Reader, w io.Writer) (Artifact, error) {
	s, m := sha256.New(), md5.New()
	sw, sdone := concurrentWriter(s)
	mw, mdone := concurrentWriter(m)
	out := io.MultiWriter(sw, mw)
	if w != nil {
		out = io.MultiWriter(w, sw, mw)
	}
	n, err := io.CopyBuffer(out, r, make([]byte, 1<<20))
	sw.Close()
	mw.Close()
	<-sdone
	<-mdone
	if err != nil {
		return Artifact{}, err
	}
	return Artifact{
		Name:      name,
		Path:      path,
		Size:      n,
		SHA256:    hex.EncodeToString(s.Sum(nil)),
		MD5:       hex.EncodeToString(m.Sum(nil)),
		MediaType: ims.MediaTypeOf(name),
	}, nil
}

// concurrentWriter returns a pipe whose reads feed h in its own goroutine;
// done is closed once the pipe is closed and h has everything.
func concurrentWriter(h hash.Hash) (*io.PipeWriter, <-chan struct{}) {
	pr, pw := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_, err := io.CopyBuffer(h, pr, make([]byte, 1<<20))
		pr.CloseWithError(err)
	}()
	return pw, done
}
