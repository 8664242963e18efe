package engine

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/imsbuild/imsbuild/builders/sandbox"
	"github.com/imsbuild/imsbuild/builders/steps"
	"github.com/imsbuild/imsbuild/spec"
)

const secret = "s3cr3t-value"

func TestStepLogRedacts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "logs", "x.log")
	var lines []string
	l, err := newStepLog(path, spec.NewRedactor([]string{secret}), func(s string) { lines = append(lines, s) })
	if err != nil {
		t.Fatal(err)
	}
	// The value arrives split across writes, as pipes deliver it.
	for _, w := range []string{"token s3cr", "3t-value ok\nsecond ", "line\nlast " + secret} {
		if _, err := l.Write([]byte(w)); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(path)
	want := "token (sensitive value) ok\nsecond line\nlast (sensitive value)"
	if string(got) != want {
		t.Errorf("log file = %q, want %q", got, want)
	}
	if strings.Join(lines, "\n") != want || l.Tail() != want {
		t.Errorf("lines = %q, tail %q; want %q", lines, l.Tail(), want)
	}
	if fi, _ := os.Stat(path); fi.Mode() != 0o600 {
		t.Errorf("log mode = %v, want 0600", fi.Mode())
	}
}

func TestSealPreimage(t *testing.T) {
	env := map[string]string{"TOKEN": secret, "PLAIN": "visible"}
	newEngine := func(key string) *Engine {
		return &Engine{cfg: &spec.Config{Sensitive: []string{"echo " + secret, secret, "7"}}, opts: Options{HMACKey: []byte(key)}}
	}
	preimage := func(e *Engine) []byte {
		p := &Preimage{
			Type: "imsbuild/customize/v1",
			Attrs: map[string]any{
				"kernel_parameters": "console=ttyS0 token=" + secret,
				"squashfs":          map[string]any{"exclude": []string{secret, "tmp"}, "level": 7},
				"name":              "n7",
				"arch":              "7",
			},
			Customize: []steps.CustomizeKey{{Env: env, Script: e.textDigest("echo " + secret)}},
		}
		e.seal(p)
		_, canon, err := p.Key()
		if err != nil {
			t.Fatal(err)
		}
		return canon
	}
	a := preimage(newEngine("key-a"))
	if bytes.Contains(a, []byte(secret)) {
		t.Errorf("preimage %s holds the secret", a)
	}
	for _, want := range []string{`"PLAIN":"visible"`, `"TOKEN":"hmac-sha256:`, `"name":"n7"`, `"level":7`, `"tmp"`, `"arch":"hmac-sha256:`} {
		if !bytes.Contains(a, []byte(want)) {
			t.Errorf("preimage %s lacks %s", a, want)
		}
	}
	if env["TOKEN"] != secret {
		t.Errorf("seal changed the spec's env: %v", env)
	}
	if b := preimage(newEngine("key-a")); !bytes.Equal(a, b) {
		t.Errorf("preimages differ under one key:\n%s\n%s", a, b)
	}
	if b := preimage(newEngine("key-b")); bytes.Equal(a, b) {
		t.Error("preimages equal under two keys")
	}
	plain := &Engine{cfg: &spec.Config{}}
	if got, want := plain.textDigest("echo "+secret), digestOf("echo "+secret); got != want {
		t.Errorf("textDigest without sensitive values = %s, want the sha256 %s", got, want)
	}
}

// spySandbox runs scripts in a real sandbox and records where their
// files were.
type spySandbox struct {
	sandbox.Sandbox
	mu   sync.Mutex
	dirs []string
}

func (s *spySandbox) Run(ctx context.Context, sp sandbox.Spec) error {
	s.mu.Lock()
	for _, b := range sp.Binds {
		s.dirs = append(s.dirs, b.Source)
	}
	s.mu.Unlock()
	return s.Sandbox.Run(ctx, sp)
}

// TestBuildKeepsSensitiveValues builds an image whose inline script holds
// a sensitive value: the script file lives in the work dir, the events
// and the log mask the value, and no cache file holds it.
func TestBuildKeepsSensitiveValues(t *testing.T) {
	f := newFixture(t)
	f.cfg.Images["compute"].Customize[0].Inline = "echo token " + secret + "\n"
	f.cfg.Sensitive = []string{secret}
	if _, err := New(f.cfg, f.cache, f.cache.Actions(), Options{}); err == nil {
		t.Fatal("New() without an HMAC key = nil error, want one")
	}
	spy := &spySandbox{}
	rec := &recorder{}
	work := filepath.Join(f.cache.Dir(), "work", "test")
	e, err := New(f.cfg, f.cache, f.cache.Actions(), Options{
		HMACKey: []byte("k"), WorkDir: work, Events: rec.add,
		NewSandbox: func() (sandbox.Sandbox, error) {
			sb, err := sandbox.New()
			spy.Sandbox = sb
			return spy, err
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Build(t.Context(), []string{"image.compute"}); err != nil {
		t.Fatalf("Build() = %v", err)
	}
	if len(spy.dirs) == 0 {
		t.Fatal("no script ran")
	}
	for _, d := range spy.dirs {
		if !strings.HasPrefix(d, work+"/") {
			t.Errorf("script dir %s, want one in the work dir %s", d, work)
		}
	}
	var logged bool
	for _, ev := range rec.events {
		logged = logged || ev.Line == "token "+spec.Redacted
		if strings.Contains(ev.Line+ev.Error, secret) {
			t.Errorf("event %+v shows the secret", ev)
		}
	}
	if !logged {
		t.Errorf("events %+v, want the line \"token (sensitive value)\"", rec.events)
	}
	filepath.WalkDir(f.cache.Dir(), func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if b, _ := os.ReadFile(p); bytes.Contains(b, []byte(secret)) {
				t.Errorf("%s holds the secret", p)
			}
		}
		return nil
	})
}
