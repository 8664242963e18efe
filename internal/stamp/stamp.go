// Package stamp is the rule by which imsbuild trusts a file to be unchanged
// since its content was last read, without reading it again: its Stamp
// (device, inode, size, mtime, ctime) is the same as then, and that stat
// was Settled, taken at least RacyWindow after the file's last change
// (git's racy-index rule, widened for filesystems with coarse timestamps).
// Any write changes mtime and ctime, and ctime cannot be set back, so a
// same-size rewrite cannot hide; a replacement changes the inode.
//
// internal/treehash's stat cache and cache/local's verified records share
// it.
package stamp

import (
	"io/fs"
	"syscall"
	"time"
)

// RacyWindow is how long after a file's last change a stat must have been
// taken to be trusted later: a write in the same timestamp tick as the stat
// would leave the stat unchanged.
const RacyWindow = 2 * time.Second

// Stamp identifies one state of a file. Times are Unix nanoseconds.
type Stamp struct {
	Dev, Ino           uint64
	Size, Mtime, Ctime int64
}

// Of returns the stamp of fi, or false where the platform gives no inode
// and ctime.
func Of(fi fs.FileInfo) (Stamp, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return Stamp{}, false
	}
	return Stamp{Dev: uint64(st.Dev), Ino: uint64(st.Ino), Size: fi.Size(), Mtime: st.Mtim.Nano(), Ctime: st.Ctim.Nano()}, true
}

// Settled reports whether a stat of s taken at taken (Unix nanoseconds) is
// far enough after the file's last change to be trusted later.
func (s Stamp) Settled(taken int64) bool {
	return taken-s.changed() >= int64(RacyWindow)
}

// SettledAt returns the first time (Unix nanoseconds) at which a stat of s
// is Settled. A caller that has just written the file itself, and so knows
// its bytes, may record it as taken then: only a write by someone else in
// the very timestamp tick of its own could hide.
func (s Stamp) SettledAt() int64 {
	return s.changed() + int64(RacyWindow)
}

func (s Stamp) changed() int64 { return max(s.Mtime, s.Ctime) }
