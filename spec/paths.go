package spec

import (
	"path/filepath"
	"strings"
)

// environ is Options.Environ as a map; a later entry wins over an earlier one.
func environ(env []string) map[string]string {
	m := make(map[string]string, len(env))
	for _, kv := range env {
		if k, v, ok := strings.Cut(kv, "="); ok && k != "" {
			m[k] = v
		}
	}
	return m
}

// isURL reports whether s is a URL (s3://, ims://, oci://, http://, ...)
// rather than a path.
func isURL(s string) bool {
	scheme, _, ok := strings.Cut(s, "://")
	if !ok || scheme == "" {
		return false
	}
	for _, r := range scheme {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '+' || r == '-' || r == '.') {
			return false
		}
	}
	return true
}

// resolver turns the paths written in build files into absolute paths.
type resolver struct {
	dir  string // absolute build directory
	home string // $HOME from Options.Environ, for a leading ~
}

// abs resolves p: a leading "~" expands to $HOME, a relative path is joined
// to the build directory, and the result is cleaned.
func (r resolver) abs(p string) string {
	if p == "~" || strings.HasPrefix(p, "~/") {
		p = filepath.Join(r.home, p[1:])
	}
	if filepath.IsAbs(p) {
		return filepath.Clean(p)
	}
	return filepath.Join(r.dir, p)
}

// absOrURL keeps URLs as they are and resolves paths with abs.
func (r resolver) absOrURL(p string) string {
	if isURL(p) {
		return p
	}
	return r.abs(p)
}
