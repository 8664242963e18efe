package sandbox

// NewNativeInUserNS returns the native backend as it runs in an
// unprivileged container (root without CAP_SYS_ADMIN), on a host that
// has the capability, so that tests can run it anywhere.
func NewNativeInUserNS() *Native { return &Native{exe: "/proc/self/exe", userNS: true} }
