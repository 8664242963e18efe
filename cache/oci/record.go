package oci

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"

	"github.com/imsbuild/imsbuild/cache/internal/record"
)

// actionRecord is the config blob of an action manifest: cache/local's
// record plus the whole key, which the tag may hold only a prefix of.
type actionRecord struct {
	Key string `json:"key"`
	record.Action
}

// decodeAction decodes and checks the action record of key.
func decodeAction(data []byte, key string) (*actionRecord, error) {
	var rec actionRecord
	if err := record.Unmarshal(data, &rec); err != nil {
		return nil, err
	}
	if err := rec.Check(); err != nil {
		return nil, err
	}
	if rec.Key != key {
		return nil, fmt.Errorf("%w: the tag holds key %q", record.ErrUndecodable, rec.Key)
	}
	return &rec, nil
}

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
