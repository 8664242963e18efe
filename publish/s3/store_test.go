package s3

import (
	"io"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/imsbuild/imsbuild/publish"
	"github.com/imsbuild/imsbuild/publish/publishtest"
)

func newFileStore(t testing.TB) *publishtest.Blobs { return publishtest.New(t) }

// putBlob stores size deterministic pseudo-random bytes (seeded) and returns
// the artifact with its md5.
func putBlob(t testing.TB, s *publishtest.Blobs, seed uint64, size int64) publish.Artifact {
	t.Helper()
	var key [32]byte
	key[0], key[1] = byte(seed), byte(seed>>8)
	a := s.AddReader(t, "", io.LimitReader(rand.NewChaCha8(key), size))
	a.MediaType = ""
	return a
}

// putFile stores the file at path.
func putFile(t testing.TB, s *publishtest.Blobs, path string) publish.Artifact {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	a := s.AddReader(t, "", f)
	a.MediaType = ""
	return a
}

// putBytes stores b.
func putBytes(t testing.TB, s *publishtest.Blobs, b []byte) publish.Artifact {
	t.Helper()
	a := s.Add(t, "", b)
	a.MediaType = ""
	return a
}
