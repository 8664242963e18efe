package spec

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// maxID is the largest uid or gid; (uid_t)-1 means "no change" to chown.
const maxID = 1<<32 - 2

// ParseMode parses an octal mode such as "0644", "644" or "4755" (at most
// 07777). The set-user-ID, set-group-ID and sticky bits become
// os.ModeSetuid, os.ModeSetgid and os.ModeSticky.
func ParseMode(s string) (os.FileMode, error) {
	if s == "" || strings.Trim(s, "01234567") != "" {
		return 0, fmt.Errorf("%q is not an octal mode like \"0644\", \"644\" or \"4755\"", s)
	}
	n, err := strconv.ParseUint(s, 8, 32)
	if err != nil || n > 0o7777 {
		return 0, fmt.Errorf("mode %q is out of range; a mode is at most \"7777\"", s)
	}
	m := os.FileMode(n & 0o777)
	if n&0o4000 != 0 {
		m |= os.ModeSetuid
	}
	if n&0o2000 != 0 {
		m |= os.ModeSetgid
	}
	if n&0o1000 != 0 {
		m |= os.ModeSticky
	}
	return m, nil
}

// FormatMode is the inverse of ParseMode: four octal digits, like "4755".
func FormatMode(m os.FileMode) string {
	n := uint32(m & os.ModePerm)
	if m&os.ModeSetuid != 0 {
		n |= 0o4000
	}
	if m&os.ModeSetgid != 0 {
		n |= 0o2000
	}
	if m&os.ModeSticky != 0 {
		n |= 0o1000
	}
	return fmt.Sprintf("%04o", n)
}

// ParseOwner splits an owner "user", "user:group", "uid" or "uid:gid" into
// its user and group ("" when absent). Each part is a number (a uid or gid)
// or a user or group name like "root", "_ssh" or "nobody".
func ParseOwner(s string) (user, group string, err error) {
	user, group, hasGroup := strings.Cut(s, ":")
	if !validIDPart(user) || hasGroup && !validIDPart(group) {
		return "", "", fmt.Errorf("%q is not an owner like \"root\", \"root:root\", \"0\" or \"0:0\"", s)
	}
	return user, group, nil
}

// validIDPart reports whether s is a uid/gid or a user/group name.
func validIDPart(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	if s[0] >= '0' && s[0] <= '9' {
		n, err := strconv.ParseUint(s, 10, 32)
		return err == nil && n <= maxID
	}
	for i, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r == '_':
		case i > 0 && (r >= '0' && r <= '9' || r == '-' || r == '.'):
		case r == '$' && i == len(s)-1 && i > 0:
		default:
			return false
		}
	}
	return true
}
