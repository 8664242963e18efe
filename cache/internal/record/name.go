package record

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// CheckKey rejects action keys that are not plain file names.
func CheckKey(key string) error {
	if key == "" || len(key) > 200 || key[0] == '.' {
		return fmt.Errorf("invalid action key %q", key)
	}
	for _, r := range key {
		if !plain(r) {
			return fmt.Errorf("invalid action key %q", key)
		}
	}
	return nil
}

// StepFile returns the file name of step's record: a readable prefix plus a
// hash of the whole name, so distinct steps never share a file.
func StepFile(step string) (string, error) {
	if step == "" {
		return "", errors.New("step name is empty")
	}
	safe := strings.Map(func(r rune) rune {
		if plain(r) {
			return r
		}
		return '_'
	}, step)
	if len(safe) > 80 {
		safe = safe[:80]
	}
	sum := sha256.Sum256([]byte(step))
	return safe + "-" + hex.EncodeToString(sum[:6]) + ".json", nil
}

// plain reports whether r may stand in a file name as it is.
func plain(r rune) bool {
	return r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '-' || r == '_' || r == '.'
}
