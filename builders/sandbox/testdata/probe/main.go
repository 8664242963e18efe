// Command probe tries one thing a confined sandbox must refuse, named by
// its argument, and prints "NAME: ok" when it worked or "NAME: ERROR" when
// it did not (exit status 1). The sandbox tests build it statically and run
// it both on the host (where each probe must work, or the test would prove
// nothing) and in the sandbox.
package main

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// x32Bit marks a system call number of the x32 ABI.
const x32Bit = 0x40000000

// i386Mount is mount's number on i386.
const i386Mount = 21

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: probe NAME")
		os.Exit(2)
	}
	name := os.Args[1]
	var err error
	switch name {
	case "open-by-handle":
		err = openByHandle()
	case "mount-i386":
		err = reached(errnoOf(int80(i386Mount)))
	case "mount-x32":
		_, _, e := unix.RawSyscall6(x32Bit|unix.SYS_MOUNT, 0, 0, 0, 0, 0, 0)
		err = reached(e)
	default:
		fmt.Fprintf(os.Stderr, "probe: unknown probe %q\n", name)
		os.Exit(2)
	}
	if err != nil {
		fmt.Printf("%s: %v\n", name, err)
		os.Exit(1)
	}
	fmt.Printf("%s: ok\n", name)
}

// openByHandle opens /etc through a file handle, the way out of a bind
// mounted root when the file system's root inode can be named.
func openByHandle() error {
	h, _, err := unix.NameToHandleAt(unix.AT_FDCWD, "/etc", 0)
	if err != nil {
		return fmt.Errorf("name_to_handle_at: %w", err)
	}
	mfd, err := unix.Open("/", unix.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer unix.Close(mfd)
	fd, err := unix.OpenByHandleAt(mfd, h, unix.O_RDONLY|unix.O_DIRECTORY)
	if err != nil {
		return err
	}
	return unix.Close(fd)
}

// reached tells a mount of NULL paths that the kernel looked at (it fails
// with EFAULT, harmlessly) from one a filter refused (EPERM, ENOSYS): the
// former is "ok".
func reached(err error) error {
	if err == unix.EPERM || err == unix.ENOSYS {
		return errors.New("refused")
	}
	return nil
}

// errnoOf turns the raw result of an i386 system call into an error.
func errnoOf(r uintptr) error {
	if v := int32(r); v < 0 && v > -4096 {
		return unix.Errno(-v)
	}
	return nil
}

// int80 makes an i386 system call through int 0x80 with every argument 0.
func int80(trap uintptr) uintptr
