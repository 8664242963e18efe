package untar

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// ErrFormat reports a file that is not a tar, tar.gz or tar.zst archive.
var ErrFormat = errors.New("not a tar, gzip or zstd archive")

// MaxZstdWindow is the largest zstd window accepted: 2 GiB, what
// `zstd --long=31` (the CLI's largest long mode) writes; the decoder's
// default of 512 MiB refuses those archives. Decoding keeps up to one
// window of output in memory, as the zstd CLI does, so this is also the
// bound of the decoder's memory; a frame that asks for more is refused
// ("window size exceeded") before anything is allocated.
const MaxZstdWindow = 1 << 31

var (
	gzipMagic = []byte{0x1f, 0x8b}
	zstdMagic = []byte{0x28, 0xb5, 0x2f, 0xfd}
)

// Open opens the archive at path and returns a reader of the plain tar
// stream, decompressing gzip or zstd as the magic bytes say. A file that is
// neither compressed nor a tar archive gives an error wrapping ErrFormat.
func Open(path string) (io.ReadCloser, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	rc, err := newReader(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("open archive %s: %w", path, err)
	}
	return rc, nil
}

// NewReader is Open for an already opened stream: it returns the plain tar
// stream of r. Closing the result does not close r.
func NewReader(r io.Reader) (io.ReadCloser, error) {
	return newReader(struct{ io.Reader }{r})
}

func newReader(r io.Reader) (io.ReadCloser, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	head, err := br.Peek(512)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
		return nil, err
	}
	switch {
	case bytes.HasPrefix(head, gzipMagic):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		return &stack{Reader: zr, closers: []io.Closer{zr, closerOf(r)}}, nil
	case bytes.HasPrefix(head, zstdMagic):
		zr, err := zstd.NewReader(br, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(MaxZstdWindow))
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		return &stack{Reader: zr, closers: []io.Closer{zstdCloser{zr}, closerOf(r)}}, nil
	case isTarHeader(head):
		return &stack{Reader: br, closers: []io.Closer{closerOf(r)}}, nil
	}
	return nil, ErrFormat
}

// isTarHeader reports whether block is a tar header: ustar magic at 257, or
// an old v7 header whose checksum is right.
func isTarHeader(block []byte) bool {
	if len(block) < 512 {
		return false
	}
	if bytes.Equal(block[257:262], []byte("ustar")) {
		return true
	}
	field := bytes.Trim(block[148:156], " \x00")
	want, err := strconv.ParseUint(string(field), 8, 32)
	if err != nil || len(field) == 0 {
		return false
	}
	var sum uint64
	for i, b := range block {
		if i >= 148 && i < 156 {
			b = ' '
		}
		sum += uint64(b)
	}
	return sum == want
}

// stack is a reader with the closers of everything under it.
type stack struct {
	io.Reader
	closers []io.Closer
}

func (s *stack) Close() error {
	var errs []error
	for _, c := range s.closers {
		if c != nil {
			errs = append(errs, c.Close())
		}
	}
	return errors.Join(errs...)
}

type zstdCloser struct{ d *zstd.Decoder }

func (z zstdCloser) Close() error { z.d.Close(); return nil }

func closerOf(r io.Reader) io.Closer {
	if c, ok := r.(io.Closer); ok {
		return c
	}
	return nil
}
