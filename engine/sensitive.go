package engine

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strings"

	"github.com/imsbuild/imsbuild/builders/steps"
	"github.com/imsbuild/imsbuild/spec"
)

// hmacPrefix starts the text that stands for a sensitive value in a key
// preimage.
const hmacPrefix = "hmac-sha256:"

// A key preimage must change when a sensitive value does, yet must not
// hold it: action records and step records are uploaded to remote caches
// with --cache-to, and even a sha256 of an inline script that interpolates
// a token can be brute-forced by whoever has the build files. So a text
// that contains a sensitive value enters the preimage as an HMAC under
// Options.HMACKey, a random secret of the local cache (local.Cache.HMACKey)
// that never leaves it.
//
// Deriving the key from the cache salt instead would let runners with
// different local caches share those steps through a remote cache, but the
// salt is in the build files, so the HMAC would protect nothing. The price
// of the random key: two runners compute different keys for a step with
// sensitive inputs, so each builds it once; steps without sensitive inputs
// share keys as before. Runners that must share such steps can be given
// the same key file.

// sensitive reports whether s holds a sensitive value: one at least
// spec.MinSensitiveLen bytes long anywhere in s, or a shorter one as the
// whole of s (a sensitive "7" must not turn every text with a 7 into an HMAC).
func (e *Engine) sensitive(s string) bool {
	for _, v := range e.cfg.Sensitive {
		if s == v || len(v) >= spec.MinSensitiveLen && strings.Contains(s, v) {
			return true
		}
	}
	return false
}

func (e *Engine) hmacOf(s string) string {
	m := hmac.New(sha256.New, e.opts.HMACKey)
	m.Write([]byte(s))
	return hmacPrefix + hex.EncodeToString(m.Sum(nil))
}

// sealText returns s, or its HMAC when it holds a sensitive value.
func (e *Engine) sealText(s string) string {
	if e.sensitive(s) {
		return e.hmacOf(s)
	}
	return s
}

// textDigest is the digest of a text that enters a key (an inline script,
// a CA certificate): its sha256, or its HMAC when it holds a sensitive value.
func (e *Engine) textDigest(s string) string {
	if e.sensitive(s) {
		return e.hmacOf(s)
	}
	return digestOf(s)
}

// seal replaces every text of p that holds a sensitive value, map keys
// included, by its HMAC. It builds new maps and slices: p's may be the
// spec's own (a customize block's env), which the build still needs.
func (e *Engine) seal(p *Preimage) {
	if len(e.cfg.Sensitive) == 0 {
		return
	}
	p.Salt = e.sealText(p.Salt)
	p.Attrs, _ = e.sealAny(p.Attrs).(map[string]any)
	p.Inputs = e.sealMap(p.Inputs)
	p.Tools = e.sealMap(p.Tools)
	p.Env = e.sealMap(p.Env)
	p.Parent = e.sealText(p.Parent)
	cs := make([]steps.CustomizeKey, len(p.Customize))
	for i, c := range p.Customize {
		c.Script = e.sealText(c.Script)
		c.Files = e.sealMap(c.Files)
		c.Env = e.sealMap(c.Env)
		c.Builder = e.sealText(c.Builder)
		cs[i] = c
	}
	if p.Customize != nil {
		p.Customize = cs
	}
}

func (e *Engine) sealMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[e.sealText(k)] = e.sealText(v)
	}
	return out
}

// sealAny seals the texts of an attribute value; numbers and booleans
// stay as they are (a sensitive number is sealed where it became text).
func (e *Engine) sealAny(v any) any {
	switch t := v.(type) {
	case string:
		return e.sealText(t)
	case []string:
		out := make([]string, len(t))
		for i, s := range t {
			out[i] = e.sealText(s)
		}
		if t == nil {
			return t
		}
		return out
	case map[string]string:
		return e.sealMap(t)
	case []any:
		out := make([]any, len(t))
		for i, x := range t {
			out[i] = e.sealAny(x)
		}
		return out
	case map[string]any:
		if t == nil {
			return t
		}
		out := make(map[string]any, len(t))
		for k, x := range t {
			out[e.sealText(k)] = e.sealAny(x)
		}
		return out
	}
	return v
}

// Redact replaces every sensitive value in s by "(sensitive value)", for
// text the engine did not write itself (errors printed by the CLI).
func (e *Engine) Redact(s string) string { return e.redact(s) }
