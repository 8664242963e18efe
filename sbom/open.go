package sbom

import (
	"errors"
	"os"
	"syscall"
)

// errNotRegular is returned by openRegular for a FIFO, device, socket or
// directory.
var errNotRegular = errors.New("not a regular file")

// openRegular opens name in root for reading only if it is a regular file.
// O_NONBLOCK makes opening a FIFO return at once (a plain open would wait
// for a writer forever: a hostile image could hang the build), and the
// fstat after it rejects FIFOs and devices (/dev/zero as a status file would
// never end) without a race.
func openRegular(root *os.Root, name string) (*os.File, error) {
	f, err := root.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !st.Mode().IsRegular() {
		f.Close()
		return nil, errNotRegular // the caller names the file
	}
	return f, nil
}
