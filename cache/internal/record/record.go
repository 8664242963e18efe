package record

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/imsbuild/imsbuild/cache"
)

// ErrUndecodable marks a record that cannot be decoded; backends treat it as
// a miss.
var ErrUndecodable = errors.New("undecodable cache record")

// MaxSize bounds a record read into memory; a backend reports a larger one
// as ErrUndecodable.
const MaxSize = 16 << 20

// Action is an action record: the result of a key and the key's preimage.
// Key is set only where a record's name does not hold the whole key
// (cache/oci tags); local and S3 records leave it out.
type Action struct {
	Key    string             `json:"key,omitempty"`
	Result cache.ActionResult `json:"result"`
	preimage
}

// Step is a step record: the key last recorded for a step, with its
// preimage, for explain.
type Step struct {
	Step string `json:"step"`
	Key  string `json:"key"`
	preimage
}

// preimage keeps the canonical JSON a key hashes, byte for byte: inline when
// it is compact JSON (what keys are made of), else base64. Its fields are
// promoted into Action and Step.
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

// Bytes returns the preimage exactly as it was recorded.
func (p preimage) Bytes() []byte {
	if p.Preimage != nil {
		return p.Preimage
	}
	return p.PreimageBytes
}

// NewAction returns the record of res (copied) and preimage. A zero
// res.Created becomes the current time in UTC.
func NewAction(res *cache.ActionResult, preimage []byte) Action {
	a := Action{Result: *res, preimage: newPreimage(preimage)}
	if a.Result.Created.IsZero() {
		a.Result.Created = time.Now().UTC()
	}
	return a
}

// NewStep returns the record of key (with its preimage) as step's last key.
func NewStep(step, key string, preimage []byte) Step {
	return Step{Step: step, Key: key, preimage: newPreimage(preimage)}
}

// Marshal encodes a record without HTML escaping, so preimages stay
// byte-exact.
func Marshal(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Unmarshal decodes a record into v; a failure wraps ErrUndecodable.
func Unmarshal(data []byte, v any) error {
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%w: %v", ErrUndecodable, err)
	}
	return nil
}

// DecodeAction decodes and checks the action record of key. A record that
// names another key is ErrUndecodable.
func DecodeAction(data []byte, key string) (*Action, error) {
	var a Action
	if err := Unmarshal(data, &a); err != nil {
		return nil, err
	}
	if err := a.Check(); err != nil {
		return nil, err
	}
	if a.Key != "" && a.Key != key {
		return nil, fmt.Errorf("%w: the record holds key %q", ErrUndecodable, a.Key)
	}
	return &a, nil
}

// Check reports, wrapping ErrUndecodable, an output or log digest of a that
// is not well formed.
func (a *Action) Check() error {
	for name, o := range a.Result.Outputs {
		if !o.Digest.Valid() {
			return fmt.Errorf("%w: output %s: invalid digest %q", ErrUndecodable, name, o.Digest)
		}
	}
	if a.Result.Log != "" && !a.Result.Log.Valid() {
		return fmt.Errorf("%w: invalid log digest %q", ErrUndecodable, a.Result.Log)
	}
	return nil
}

// DecodeStep decodes the step record of step and returns its key and
// preimage. A record that does not decode, names another step or has no
// key is ErrUndecodable.
func DecodeStep(data []byte, step string) (key string, preimage []byte, err error) {
	var s Step
	if err := json.Unmarshal(data, &s); err != nil || s.Step != step || s.Key == "" {
		return "", nil, ErrUndecodable
	}
	return s.Key, s.Bytes(), nil
}

// Refs returns the blobs res refers to, sorted, without duplicates.
func Refs(res *cache.ActionResult) []cache.Digest {
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
