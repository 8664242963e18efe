// Command archprobe is built for another architecture than the host's (the
// emulation tests build it for arm64) and run under qemu through
// binfmt_misc. It prints the architecture it was built for and the
// machine's uname; with the argument "unshare" it instead tries to make a
// mount namespace, which a confined sandbox refuses, and prints
// "unshare: ok" or the error (exit status 1).
package main

import (
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "unshare" {
		if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
			fmt.Printf("unshare: %v\n", err)
			os.Exit(1)
		}
		fmt.Println("unshare: ok")
		return
	}
	var u unix.Utsname
	_ = unix.Uname(&u)
	fmt.Println(runtime.GOARCH, unix.ByteSliceToString(u.Machine[:]))
}
