// Package local is the local-directory cache backend: blobs under
// blobs/sha256/<2 hex>/<64 hex>, action results under actions/<key>.json.
package local

import (
	"errors"
)

// Cache is a local CAS and action cache rooted at a directory.
type Cache struct{ dir string }

// Open opens (creating) the cache at dir.
func Open(dir string) (*Cache, error) { return nil, errors.New("cache local: not implemented") }
