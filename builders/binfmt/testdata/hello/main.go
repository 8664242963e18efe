// hello prints the architecture it was built for and the machine's uname.
package main

import (
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

func main() {
	var u unix.Utsname
	_ = unix.Uname(&u)
	fmt.Println(runtime.GOARCH, unix.ByteSliceToString(u.Machine[:]))
}
