// Package caps reads the calling thread's capabilities.
package caps

import "golang.org/x/sys/unix"

// Effective reports whether capability c (unix.CAP_…) is in the calling
// thread's effective set; false when it cannot be read.
func Effective(c int) bool {
	hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
	var data [2]unix.CapUserData
	if err := unix.Capget(&hdr, &data[0]); err != nil {
		return false
	}
	return data[c/32].Effective&(1<<(c%32)) != 0
}

// CanMount reports whether this process may mount: root with
// CAP_SYS_ADMIN. Root in an unprivileged container (a Kubernetes pod that
// is not privileged) has no CAP_SYS_ADMIN.
func CanMount() bool {
	return unix.Geteuid() == 0 && Effective(unix.CAP_SYS_ADMIN)
}
