package oci

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
)

// Tag prefixes: an action manifest is tagged key-<key>, a step record
// step-<sha256 of the step name>. Tags hold at most 128 characters.
const (
	keyTagPrefix  = "key-"
	stepTagPrefix = "step-"
	maxTagKey     = 64
)

// keyTag returns the tag of key's action manifest: its first 64 characters.
// The config repeats the whole key, so longer keys that share a tag are told
// apart (the newest wins the tag).
func keyTag(key string) string {
	if len(key) > maxTagKey {
		key = key[:maxTagKey]
	}
	return keyTagPrefix + key
}

// stepTag returns the tag of step's last-key manifest.
func stepTag(step string) (string, error) {
	if step == "" {
		return "", errors.New("step name is empty")
	}
	sum := sha256.Sum256([]byte(step))
	return stepTagPrefix + hex.EncodeToString(sum[:]), nil
}
