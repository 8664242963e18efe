package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/cache/local"
	"github.com/imsbuild/imsbuild/cache/pkgproxy"
	"github.com/imsbuild/imsbuild/internal/testutil"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "imsbuild-cli-")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "imsbuild")
	out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
	if err != nil {
		os.Stderr.Write(out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

type result struct {
	code           int
	stdout, stderr string
}

func imsbuild(t *testing.T, dir string, args ...string) result {
	t.Helper()
	return imsbuildEnv(t, dir, nil, args...)
}

// imsbuildEnv runs the binary in dir with extra environment variables.
func imsbuildEnv(t *testing.T, dir string, env []string, args ...string) result {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), binary, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{code, so.String(), se.String()}
}

// copyExample copies examples/NAME into a new temp dir, without what a
// build there left (out/, .imsbuild/), and returns the copy.
func copyExample(t *testing.T, name string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	if out, err := exec.Command("cp", "-a", filepath.Join("../../examples", name), dir).CombinedOutput(); err != nil {
		t.Fatalf("copy example %s: %v\n%s", name, err, out)
	}
	for _, p := range []string{"out", ".imsbuild"} {
		os.RemoveAll(filepath.Join(dir, p))
	}
	return dir
}

// example copies examples/busybox into a temp dir with its root made.
func example(t *testing.T) string {
	t.Helper()
	testutil.RequireRoot(t)
	for _, tool := range []string{"mksquashfs", "unsquashfs", "bwrap", "busybox"} {
		testutil.RequireTool(t, tool)
	}
	dir := copyExample(t, "busybox")
	os.RemoveAll(filepath.Join(dir, "roots"))
	if out, err := exec.Command(filepath.Join(dir, "make-root.sh"), filepath.Join(dir, "roots/busybox")).CombinedOutput(); err != nil {
		t.Fatalf("make-root.sh: %v\n%s", err, out)
	}
	return dir
}

// events parses --json output into step → last status (log lines ignored).
func events(t *testing.T, stdout string) map[string]string {
	t.Helper()
	m := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(stdout))
	for sc.Scan() {
		var ev struct {
			Step, Status, Key string
			DurationMS        int64 `json:"duration_ms"`
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			t.Fatalf("--json line %q: %v", sc.Text(), err)
		}
		if ev.Step == "" || ev.Status == "" {
			t.Fatalf("--json event without step or status: %s", sc.Text())
		}
		switch ev.Status {
		case "log", "planned", "started":
		default:
			m[ev.Step] = ev.Status
		}
	}
	return m
}

func TestExampleBuildCachedAndExplain(t *testing.T) {
	dir := example(t)
	r := imsbuild(t, dir, "build", "--json", ".")
	if r.code != 0 {
		t.Fatalf("build exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	want := map[string]string{"image.base": "done", "image.compute": "done", "publish.dir.local": "done"}
	if got := events(t, r.stdout); !equal(got, want) {
		t.Fatalf("first build = %v, want %v", got, want)
	}
	r = imsbuild(t, dir, "build", "--json", ".")
	want = map[string]string{"image.base": "cached", "image.compute": "cached", "publish.dir.local": "done"}
	if got := events(t, r.stdout); r.code != 0 || !equal(got, want) {
		t.Fatalf("second build exit %d = %v, want %v", r.code, got, want)
	}
	if err := os.WriteFile(filepath.Join(dir, "scripts/compute.sh"), []byte("#!/bin/sh\necho changed > /etc/changed\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	r = imsbuild(t, dir, "plan", "--explain", ".")
	if r.code != 0 || !strings.Contains(r.stdout, "cached   image.base") ||
		!strings.Contains(r.stdout, "build    image.compute") || !strings.Contains(r.stdout, "customize[1].script changed") {
		t.Fatalf("plan --explain exit %d:\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = imsbuild(t, dir, "build", "--json", ".")
	want = map[string]string{"image.base": "cached", "image.compute": "done", "publish.dir.local": "done"}
	if got := events(t, r.stdout); r.code != 0 || !equal(got, want) {
		t.Fatalf("build after script change exit %d = %v, want %v", r.code, got, want)
	}
	manifests, _ := filepath.Glob(filepath.Join(dir, "out/boot-images/*/manifest.json"))
	records, _ := filepath.Glob(filepath.Join(dir, "out/records/images/*.json"))
	if len(manifests) < 2 || len(records) < 2 {
		t.Fatalf("published manifests %v records %v", manifests, records)
	}
	// Every published image has its SBOM beside it (busybox: no packages).
	for _, m := range manifests {
		b, err := os.ReadFile(filepath.Join(filepath.Dir(m), "sbom.spdx.json"))
		if err != nil || !strings.Contains(string(b), `"spdxVersion":"SPDX-2.3"`) {
			t.Errorf("SBOM beside %s: %.200s, %v; want an SPDX 2.3 document", m, b, err)
		}
	}
}

func TestExitCodes(t *testing.T) {
	bad := t.TempDir()
	if err := os.WriteFile(filepath.Join(bad, "build.ims.hcl"), []byte("image \"x\" {\n  importt = \"./r\"\n}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		args     []string
		code     int
		contains string
	}{
		{"version", []string{"version"}, 0, "imsbuild "},
		{"unknown flag", []string{"build", "--nope"}, 2, "unknown flag"},
		{"bad hcl", []string{"validate", bad}, 2, "build.ims.hcl:2:3"},
		{"bad hcl build", []string{"build", bad}, 2, "build.ims.hcl:2:3"},
		{"help teaches", []string{"build", "--help"}, 0, "--keep-going"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := imsbuild(t, t.TempDir(), tc.args...)
			if r.code != tc.code || !strings.Contains(r.stdout+r.stderr, tc.contains) {
				t.Fatalf("imsbuild %v = exit %d, want %d with %q\nstdout: %s\nstderr: %s", tc.args, r.code, tc.code, tc.contains, r.stdout, r.stderr)
			}
		})
	}
}

// startBuild runs a build whose compute step sleeps, and returns once that step runs.
func startBuild(t *testing.T, dir string) (*exec.Cmd, *testutil.SyncBuffer) {
	t.Helper()
	return startBuildArgs(t, dir, `"line":"sleeping"`, "build", "--json", ".")
}

// startBuildArgs is startBuild with the arguments, and the output that
// shows the compute step sleeping.
func startBuildArgs(t *testing.T, dir, sleeping string, args ...string) (*exec.Cmd, *testutil.SyncBuffer) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "scripts/compute.sh"), []byte("#!/bin/sh\necho sleeping\nsleep 3022\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(binary, args...)
	cmd.Dir = dir
	var out testutil.SyncBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(out.String(), sleeping) {
		if time.Now().After(deadline) {
			t.Fatalf("compute step never started:\n%s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return cmd, &out
}

func TestSIGINTExits130AndLeavesNothing(t *testing.T) {
	dir := example(t)
	cmd, out := startBuild(t, dir)
	cmd.Process.Signal(syscall.SIGINT)
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 130 {
		t.Fatalf("exit = %v, want 130\n%s", err, out)
	}
	if got := events(t, out.String())["image.compute"]; got != "cancelled" {
		t.Errorf("image.compute status = %q, want cancelled\n%s", got, out)
	}
	if p := testutil.ProcessesMatching(t, "sleep 3022"); len(p) > 0 {
		t.Fatalf("processes left: %v", p)
	}
	work, _ := os.ReadDir(filepath.Join(dir, ".imsbuild/cache/work"))
	if len(work) != 0 {
		t.Fatalf("work dir left: %v", work)
	}
}

// A step that SIGTERM cancels says so in the plain output, not "FAILED …
// context canceled".
func TestSIGTERMPlainOutputSaysCancelled(t *testing.T) {
	dir := example(t)
	cmd, out := startBuildArgs(t, dir, "| sleeping", "build", ".")
	cmd.Process.Signal(syscall.SIGTERM)
	err := cmd.Wait()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 130 {
		t.Fatalf("exit = %v, want 130\n%s", err, out)
	}
	if !regexp.MustCompile(`(?m)^\S+ image\.compute +cancelled$`).MatchString(out.String()) || strings.Contains(out.String(), "FAILED") {
		t.Errorf("output:\n%s\nwant image.compute cancelled and no FAILED", out)
	}
	if !strings.Contains(out.String(), ", 1 cancelled in ") {
		t.Errorf("output:\n%s\nwant a summary with 1 cancelled", out)
	}
}

func TestKill9ThenRebuildReusesCompletedSteps(t *testing.T) {
	dir := example(t)
	cmd, _ := startBuild(t, dir)
	cmd.Process.Kill()
	cmd.Wait()
	// The sandboxed script dies with its parent (no orphan keeps running).
	deadline := time.Now().Add(10 * time.Second)
	for len(testutil.ProcessesMatching(t, "sleep 3022")) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("sandbox outlived kill -9: %v", testutil.ProcessesMatching(t, "sleep 3022"))
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := os.WriteFile(filepath.Join(dir, "scripts/compute.sh"), []byte("#!/bin/sh\necho fixed\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	r := imsbuild(t, dir, "build", "--json", ".")
	want := map[string]string{"image.base": "cached", "image.compute": "done", "publish.dir.local": "done"}
	if got := events(t, r.stdout); r.code != 0 || !equal(got, want) {
		t.Fatalf("rebuild after kill -9: exit %d = %v, want %v\n%s", r.code, got, want, r.stderr)
	}
	r = imsbuild(t, dir, "cache", "verify", ".")
	if r.code != 0 {
		t.Fatalf("cache verify after kill -9: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	work, _ := filepath.Glob(filepath.Join(dir, ".imsbuild/cache/work/run-*"))
	if len(work) != 0 {
		t.Fatalf("stale work dirs not reaped: %v", work)
	}
}

func equal(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// Packages downloaded through the package cache are one line of `cache ls`
// (a kiwi build adds hundreds); --packages and --json list each.
func TestCacheLsSumsUpPackages(t *testing.T) {
	dir := example(t)
	if r := imsbuild(t, dir, "build", "."); r.code != 0 {
		t.Fatalf("build: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	c, err := local.Open(filepath.Join(dir, ".imsbuild/cache"))
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		d, n, err := c.Put(t.Context(), strings.NewReader(fmt.Sprintf("package %d", i)), "")
		if err != nil {
			t.Fatal(err)
		}
		res := &cache.ActionResult{Step: pkgproxy.Step, Builder: pkgproxy.Step, Created: time.Now(),
			Outputs: map[string]cache.Output{"package": {Digest: d, Size: n}}}
		if err := c.Actions().Put(t.Context(), fmt.Sprintf("%064x", i+1), []byte("{}"), res); err != nil {
			t.Fatal(err)
		}
	}
	r := imsbuild(t, dir, "cache", "ls", ".")
	if r.code != 0 || strings.Count(r.stdout, "pkgproxy") != 0 || !strings.Contains(r.stdout, "3 packages") || !strings.Contains(r.stdout, "image.compute") {
		t.Fatalf("cache ls: exit %d\n%s%s\nwant the images and one line of 3 packages", r.code, r.stdout, r.stderr)
	}
	if r := imsbuild(t, dir, "cache", "ls", "--packages", "."); strings.Count(r.stdout, "pkgproxy") != 3 {
		t.Errorf("cache ls --packages:\n%s\nwant 3 pkgproxy lines", r.stdout)
	}
	if r := imsbuild(t, dir, "cache", "ls", "--json", "."); strings.Count(r.stdout, `"step":"pkgproxy"`) != 3 {
		t.Errorf("cache ls --json:\n%s\nwant 3 pkgproxy objects", r.stdout)
	}
}
