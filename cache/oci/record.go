package oci

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/imsbuild/imsbuild/cache"
)

// The records below are the JSON of cache/local's files (duplicated in
// cache/s3), stored as manifest config blobs.

// actionRecord is the config blob of an action manifest: cache/local's
// record plus the whole key, which the tag may hold only a prefix of.
type actionRecord struct {
	Key    string             `json:"key"`
	Result cache.ActionResult `json:"result"`
	preimage
}

// stepRecord is the config blob of a step manifest.
type stepRecord struct {
	Step string `json:"step"`
	Key  string `json:"key"`
	preimage
}

// preimage keeps the canonical JSON a key hashes, byte for byte: inline when
// it is compact JSON (what keys are made of), else base64.
type preimage struct {
	Preimage      json.RawMessage `json:"preimage,omitempty"`
	PreimageBytes []byte          `json:"preimageBytes,omitempty"`
}

func newPreimage(b []byte) preimage {
	var buf bytes.Buffer
	if len(b) > 0 && json.Compact(&buf, b) == nil && bytes.Equal(buf.Bytes(), b) {
		return preimage{Preimage: slices.Clone(b)}
	}
	return preimage{PreimageBytes: slices.Clone(b)}
}

func (p preimage) bytes() []byte {
	if p.Preimage != nil {
		return p.Preimage
	}
	return p.PreimageBytes
}

// marshal encodes v without HTML escaping, so preimages stay byte-exact.
func marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// errUndecodable marks a record that cannot be decoded; it is a miss.
var errUndecodable = errors.New("undecodable cache record")

// decodeAction decodes and checks an action record.
func decodeAction(data []byte) (*actionRecord, error) {
	var rec actionRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		return nil, fmt.Errorf("%w: %v", errUndecodable, err)
	}
	for name, o := range rec.Result.Outputs {
		if !o.Digest.Valid() {
			return nil, fmt.Errorf("%w: output %s: invalid digest %q", errUndecodable, name, o.Digest)
		}
	}
	if rec.Result.Log != "" && !rec.Result.Log.Valid() {
		return nil, fmt.Errorf("%w: invalid log digest %q", errUndecodable, rec.Result.Log)
	}
	return &rec, nil
}

// refs returns the blobs res refers to, sorted, without duplicates.
func refs(res *cache.ActionResult) []cache.Digest {
	ds := make([]cache.Digest, 0, len(res.Outputs)+1)
	for _, o := range res.Outputs {
		ds = append(ds, o.Digest)
	}
	if res.Log != "" {
		ds = append(ds, res.Log)
	}
	slices.Sort(ds)
	return slices.Compact(ds)
}

// checkKey rejects keys that are not plain file names.
func checkKey(key string) error {
	if key == "" || len(key) > 200 || key[0] == '.' {
		return fmt.Errorf("invalid action key %q", key)
	}
	for _, r := range key {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '-' || r == '_' || r == '.') {
			return fmt.Errorf("invalid action key %q", key)
		}
	}
	return nil
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
