package sbom

import "path"

// docDir holds each deb's copyright file, usr/share/doc/<package>/copyright.
const docDir = "usr/share/doc"

// Paths returns what Scan may read below an image root, as shell patterns
// relative to it (a directory stands for everything below it), so that a
// caller holding a packed image can extract only these and scan the
// result. A symlink among them is followed by Scan within the root, so its
// target must be extracted too: the os-release files and both rpm database
// directories are listed for that; a package's doc directory may be a
// symlink to another's (DocDir), whose entries the caller extracts as well.
func Paths() []string {
	p := []string{dpkgStatus, path.Join(docDir, "*", "copyright"), "etc/os-release", "usr/lib/os-release"}
	seen := map[string]bool{}
	for _, db := range rpmDBs {
		if d := path.Dir(db); !seen[d] {
			seen[d] = true
			p = append(p, d)
		}
	}
	return p
}

// DocDir returns the directory of the deb copyright files Scan reads; its
// entries may be symlinks to one another (see Paths).
func DocDir() string { return docDir }
