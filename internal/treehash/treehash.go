// Package treehash computes Merkle digests of directory trees over sorted
// relative paths, file modes, symlink targets and contents — never mtimes —
// with a stat cache so unchanged files are not rehashed.
package treehash

import (
	"context"
	"errors"
)

// StatCache remembers file digests by (path, size, mtime, ctime, inode).
type StatCache struct{}

// OpenStatCache loads the stat cache stored at path (missing is empty).
func OpenStatCache(path string) (*StatCache, error) { return &StatCache{}, nil }

// Save writes the cache back atomically when it changed.
func (c *StatCache) Save() error { return nil }

// Dir returns the digest ("sha256:…") of the tree rooted at root.
func Dir(ctx context.Context, root string, sc *StatCache) (string, error) {
	return "", errors.New("treehash: not implemented")
}

// File returns the sha256 digest ("sha256:…") of a file's content.
func File(ctx context.Context, path string, sc *StatCache) (string, error) {
	return "", errors.New("treehash: not implemented")
}
