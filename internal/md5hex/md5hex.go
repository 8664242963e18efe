package md5hex

import (
	"crypto/md5"
	"encoding/hex"
	"io"
)

// Of returns the hex md5 of b.
func Of(b []byte) string {
	s := md5.Sum(b)
	return hex.EncodeToString(s[:])
}

// OfReader returns the hex md5 of what r holds until EOF.
func OfReader(r io.Reader) (string, error) {
	h := md5.New()
	if _, err := io.Copy(h, r); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
