package lockfile

import "strings"

// Bounds of a lock file. A Debian or SLES node has a few hundred to a few
// thousand packages; these leave room while keeping a hostile file small.
const (
	MaxFileSize     = 32 << 20
	MaxRecipes      = 1000
	MaxRepositories = 1000
	MaxPackages     = 100000

	maxLabel   = 128
	maxName    = 256
	maxVersion = 256
	maxArch    = 64
	maxPath    = 4096
)

const (
	alnum        = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	nameChars    = alnum + "+.-_~"
	versionChars = alnum + ".+-~:_^"
	archChars    = alnum + "_-"
	labelChars   = alnum + "_-"
	hexChars     = "0123456789abcdef"
)

func validToken(s string, max int, chars string) bool {
	if s == "" || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(chars, s[i]) < 0 {
			return false
		}
	}
	return true
}

func isAlnum(c byte) bool { return strings.IndexByte(alnum, c) >= 0 }

// validLabel is a recipe or repository name as the build language allows.
func validLabel(s string) bool { return validToken(s, maxLabel, labelChars) }

func validHex(s string) bool { return len(s) == 64 && validToken(s, 64, hexChars) }

func validDigest(s string) bool {
	h, ok := strings.CutPrefix(s, "sha256:")
	return ok && validHex(h)
}

// validPath is an absolute URL path: printable ASCII without spaces, no
// ".." segment.
func validPath(s string) bool {
	if len(s) > maxPath || !strings.HasPrefix(s, "/") {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f || s[i] == '\\' || s[i] == '"' {
			return false
		}
	}
	for seg := range strings.SplitSeq(s, "/") {
		if seg == ".." {
			return false
		}
	}
	return true
}
