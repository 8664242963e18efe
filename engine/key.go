package engine

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/imsbuild/imsbuild/builders/steps"
)

// BuilderVersion changes when a builder's output for the same inputs would
// change; it is part of every key (the binary's version is not).
const BuilderVersion = "1"

// Preimage is the canonical description of a step that its key hashes. It is
// stored beside the result so that explain can say what changed.
type Preimage struct {
	Type      string               `json:"type"` // imsbuild/<kind>/v1
	Builder   string               `json:"builder"`
	Salt      string               `json:"salt,omitempty"`
	Attrs     map[string]any       `json:"attrs"`  // attrsOf(the op's key struct)
	Inputs    map[string]string    `json:"inputs"` // name → content digest
	Tools     map[string]string    `json:"tools,omitempty"`
	Env       map[string]string    `json:"env,omitempty"`
	Parent    string               `json:"parent,omitempty"` // parent step id, for explain only
	Customize []steps.CustomizeKey `json:"customize,omitempty"`
}

// attrsOf returns the attributes v (an op's key struct) as the map a
// Preimage holds: its JSON has sorted keys, and seal can walk it.
func attrsOf(v any) (map[string]any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode key attributes: %w", err)
	}
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber() // a block size stays the integer it was
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		return nil, fmt.Errorf("encode key attributes: %w", err)
	}
	return m, nil
}

// Key returns the canonical JSON of p and its sha256 hex. encoding/json
// writes struct fields in declaration order and map keys sorted, which makes
// the encoding canonical for this type.
func (p *Preimage) Key() (key string, canonical []byte, err error) {
	b, err := json.Marshal(p)
	if err != nil {
		return "", nil, fmt.Errorf("encode key preimage: %w", err)
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), b, nil
}

// DiffPreimages explains how cur differs from prev (both canonical JSON), as
// sorted human-readable lines like "inputs.customize[0].script changed".
func DiffPreimages(prev, cur []byte) []string {
	var a, b any
	if json.Unmarshal(prev, &a) != nil || json.Unmarshal(cur, &b) != nil {
		return []string{"previous key preimage unreadable"}
	}
	fa, fb := map[string]string{}, map[string]string{}
	flatten("", a, fa)
	flatten("", b, fb)
	var out []string
	for k, v := range fb {
		old, ok := fa[k]
		switch {
		case !ok:
			out = append(out, humanize(k)+" added")
		case old != v:
			out = append(out, humanize(k)+" changed ("+short(old)+" → "+short(v)+")")
		}
	}
	for k := range fa {
		if _, ok := fb[k]; !ok {
			out = append(out, humanize(k)+" removed")
		}
	}
	sort.Strings(out)
	return out
}

// humanize names a preimage path the way a user thinks of it:
// "inputs.repository.debian.metadata" → "repository debian metadata".
func humanize(path string) string {
	if rest, ok := strings.CutPrefix(path, "inputs.repository."); ok {
		if name, ok := strings.CutSuffix(rest, ".metadata"); ok {
			return "repository " + name + " metadata"
		}
	}
	for _, p := range []string{"inputs.", "attrs."} {
		if rest, ok := strings.CutPrefix(path, p); ok {
			return rest
		}
	}
	return path
}

func short(s string) string {
	if strings.HasPrefix(s, "sha256:") && len(s) > 19 {
		return s[:19]
	}
	if len(s) > 40 {
		return s[:37] + "..."
	}
	return s
}

func flatten(prefix string, v any, out map[string]string) {
	switch t := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			flatten(p, t[k], out)
		}
	case []any:
		for i, e := range t {
			flatten(fmt.Sprintf("%s[%d]", prefix, i), e, out)
		}
		if len(t) == 0 {
			out[prefix] = "[]"
		}
	default:
		b, _ := json.Marshal(t)
		out[prefix] = strings.Trim(string(b), `"`)
	}
}
