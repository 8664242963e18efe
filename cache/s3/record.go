package s3

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/imsbuild/imsbuild/cache"
)

// The records below are byte-compatible with cache/local's files.

// actionRecord is the object actions/<key>.json.
type actionRecord struct {
	Result cache.ActionResult `json:"result"`
	preimage
}

// stepRecord is the object steps/<step>-<hash>.json.
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

// stepName is the file name cache/local gives step: a readable prefix plus
// a hash of the whole name, so distinct steps never share a file.
func stepName(step string) (string, error) {
	if step == "" {
		return "", errors.New("step name is empty")
	}
	safe := strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '-' || r == '_' || r == '.' {
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
