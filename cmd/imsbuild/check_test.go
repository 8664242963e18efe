package main

import (
	"bufio"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/imsbuild/imsbuild/engine"
)

// cacheFiles lists the action records and blobs of the example's cache
// (name → content digest), to tell that a check left the cache as it was
// (a lookup may touch a record's time, for pruning).
func cacheFiles(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, sub := range []string{"actions", "blobs"} {
		root := filepath.Join(dir, ".imsbuild/cache", sub)
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			m[strings.TrimPrefix(p, root)] = fmt.Sprintf("%x", sha256.Sum256(b))
			return nil
		})
		if err != nil && !os.IsNotExist(err) {
			t.Fatal(err)
		}
	}
	return m
}

// checkEvent returns the last --json event of step with status.
func checkEvent(t *testing.T, stdout, step string, status engine.Status) *engine.Event {
	t.Helper()
	var found *engine.Event
	sc := bufio.NewScanner(strings.NewReader(stdout))
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var ev engine.Event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("--json line %q: %v", sc.Text(), err)
		}
		if ev.Step == step && ev.Status == status {
			found = &ev
		}
	}
	return found
}

// TestBuildCheck runs build --check on the busybox example with the real
// tools: nothing cached is exit 2 and builds nothing; an unchanged build is
// identical (exit 0); a customize script that writes the time and random
// modes makes the rebuild differ (exit 1), naming the file whose content
// differs and the files whose mode changed; the cache stays as it was.
func TestBuildCheck(t *testing.T) {
	dir := example(t)
	r := imsbuild(t, dir, "build", "--check", "--json", ".")
	if got := events(t, r.stdout); r.code != 2 || got["image.base"] != "failed" || got["image.compute"] != "skipped" {
		t.Fatalf("check before any build: exit %d, %v; want 2, base failed (not yet built)\n%s%s", r.code, got, r.stdout, r.stderr)
	}
	if ev := checkEvent(t, r.stdout, "image.base", engine.StatusFailed); ev == nil || !strings.Contains(ev.Error, "not yet built") {
		t.Errorf("failed event = %+v, want it to say not yet built", ev)
	}
	if n := len(cacheFiles(t, dir)); n != 0 {
		t.Fatalf("check before any build cached %d files", n)
	}

	if r = imsbuild(t, dir, "build", "."); r.code != 0 {
		t.Fatalf("build exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = imsbuild(t, dir, "build", "--check", ".")
	if r.code != 0 || !strings.Contains(r.stdout, "check: 2 identical, 0 differ") || strings.Contains(r.stdout, "publish.") {
		t.Fatalf("check of the example: exit %d, want 0, both identical and nothing published\n%s%s", r.code, r.stdout, r.stderr)
	}

	script := `#!/bin/sh
set -e
date +%s%N > /etc/stamp
mkdir -p /var/m
for i in $(seq 32); do
  echo x > /var/m/$i
  if [ $(( $(od -An -N1 -tu1 /dev/urandom) % 2 )) = 0 ]; then chmod 600 /var/m/$i; fi
done
`
	if err := os.WriteFile(filepath.Join(dir, "scripts/compute.sh"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	if r = imsbuild(t, dir, "build", "."); r.code != 0 {
		t.Fatalf("build exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// busybox's date has no %N: the check must run in a later second.
	for built := time.Now().Unix(); time.Now().Unix() == built; {
		time.Sleep(10 * time.Millisecond)
	}
	before := cacheFiles(t, dir)
	r = imsbuild(t, dir, "build", "--check", "image.compute")
	if r.code != 1 || !strings.Contains(r.stdout, "/etc/stamp: content differs") || !strings.Contains(r.stdout, "image.compute            DIFFERS") ||
		!strings.Contains(r.stdout, "image.base               cached") || !strings.Contains(r.stdout, "check: 0 identical, 1 differ, 1 cached") {
		t.Fatalf("check of a step that writes the time: exit %d, want 1 naming /etc/stamp, the parent from the cache\n%s%s", r.code, r.stdout, r.stderr)
	}
	// 32 files each 0600 or 0644 at random: some differ, with 2^-32 odds of none.
	if !strings.Contains(r.stdout, "mode 0644 → 0600") && !strings.Contains(r.stdout, "mode 0600 → 0644") {
		t.Errorf("check output names no mode change:\n%s", r.stdout)
	}

	r = imsbuild(t, dir, "build", "--check", "--json", ".")
	if r.code != 1 {
		t.Fatalf("check --json exit %d, want 1\n%s%s", r.code, r.stdout, r.stderr)
	}
	if got := events(t, r.stdout); got["image.base"] != "identical" || got["image.compute"] != "differs" {
		t.Errorf("check --json statuses = %v, want base identical, compute differs", got)
	}
	ev := checkEvent(t, r.stdout, "image.compute", engine.StatusDiffers)
	if ev == nil || ev.Check == nil || len(ev.Check.Outputs) == 0 {
		t.Fatalf("differs event = %+v, want the differing outputs", ev)
	}
	root := ev.Check.Outputs[0]
	if root.Name != "rootfs" || root.Diff != engine.DiffContent || root.Old.Digest == root.New.Digest || root.TotalChanges < 2 ||
		len(root.Changes) == 0 || root.Changes[0].Path != "/etc/stamp" || root.Changes[0].What != "content" {
		t.Errorf("rootfs difference = %+v, want /etc/stamp's content first among ≥ 2 changes", root)
	}
	for _, c := range root.Changes[1:] {
		if !strings.HasPrefix(c.Path, "/var/m/") || c.What != "mode" {
			t.Errorf("change %+v, want only mode changes below /var/m besides /etc/stamp", c)
		}
	}

	if after := cacheFiles(t, dir); !equal(before, after) {
		t.Errorf("check changed the cache: %d files before, %d after", len(before), len(after))
	}
	r = imsbuild(t, dir, "plan", ".")
	if r.code != 0 || !strings.Contains(r.stdout, "cached   image.compute") {
		t.Errorf("plan after check: exit %d, want image.compute still cached\n%s%s", r.code, r.stdout, r.stderr)
	}
}

// TestBuildCheckRemoteCache: a fresh runner checks what another one built
// against the remote cache it shared (S3 and OCI): the parent and the
// cached outputs come from the remote, an unchanged base is identical and
// a customize step that writes the time differs, naming the file.
func TestBuildCheckRemoteCache(t *testing.T) {
	if testing.Short() {
		t.Skip("starts S3 and registry servers")
	}
	env, remotes := remoteCaches(t, "check")
	for _, remote := range remotes {
		t.Run(strings.SplitN(remote, ":", 2)[0], func(t *testing.T) {
			stamp := []byte("#!/bin/sh\ndate +%s%N > /etc/stamp\n")
			a := example(t)
			if err := os.WriteFile(filepath.Join(a, "scripts/compute.sh"), stamp, 0o755); err != nil {
				t.Fatal(err)
			}
			r := imsbuildEnv(t, a, env, "build", "--cache-to", remote, ".")
			if r.code != 0 {
				t.Fatalf("runner A exit %d:\n%s\n%s", r.code, r.stdout, r.stderr)
			}
			for built := time.Now().Unix(); time.Now().Unix() == built; { // busybox's date has no %N
				time.Sleep(10 * time.Millisecond)
			}
			b := example(t)
			if err := os.WriteFile(filepath.Join(b, "scripts/compute.sh"), stamp, 0o755); err != nil {
				t.Fatal(err)
			}
			r = imsbuildEnv(t, b, env, "build", "--check", "--cache-from", remote, ".")
			if r.code != 1 || !strings.Contains(r.stdout, "image.base               identical") ||
				!strings.Contains(r.stdout, "/etc/stamp: content differs") || strings.Contains(r.stdout, " 0 blobs downloaded") {
				t.Fatalf("runner B check exit %d, want 1 with base identical, /etc/stamp named and blobs from the remote\n%s\n%s", r.code, r.stdout, r.stderr)
			}
		})
	}
}

// TestBuildCheckUsage: --check takes image targets and runs unattended.
func TestBuildCheckUsage(t *testing.T) {
	dir := example(t)
	for _, args := range [][]string{
		{"build", "--check", ".", "publish.dir.local"},
		{"build", "--check", ".", "image.base/prepare"},
		{"build", "--check", "--interactive", "image.compute", "."},
	} {
		if r := imsbuild(t, dir, args...); r.code != 2 {
			t.Errorf("%v: exit %d, want 2 (usage)\n%s%s", args, r.code, r.stdout, r.stderr)
		}
	}
}
