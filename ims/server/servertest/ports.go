package servertest

import (
	"net"
	"os"
	"strconv"
	"testing"
)

// FreePorts returns the first of n consecutive ports free on 127.0.0.1,
// for a server's --ssh-port-range. The search starts at a place that
// depends on the process, so that test binaries running at once tend to
// pick different ranges.
func FreePorts(t testing.TB, n int) int {
	t.Helper()
	for lo := 20000 + os.Getpid()%20000; lo < 60000; lo += n {
		if portsFree(lo, n) {
			return lo
		}
	}
	t.Fatal("no free port range")
	return 0
}

// portsFree reports whether n ports from lo are free on 127.0.0.1.
func portsFree(lo, n int) bool {
	for p := lo; p < lo+n; p++ {
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(p)))
		if err != nil {
			return false
		}
		l.Close()
	}
	return true
}
