package steps

import (
	"bytes"
	"context"
	"crypto/md5"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gofrs/flock"

	"github.com/imsbuild/imsbuild/builders/overlay"
	"github.com/imsbuild/imsbuild/builders/sandbox"
	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/cache/local"
	"github.com/imsbuild/imsbuild/ims"
	"github.com/imsbuild/imsbuild/internal/testutil"
	"github.com/imsbuild/imsbuild/spec"
)

// TestMain lets the native sandbox re-execute the test binary.
func TestMain(m *testing.M) {
	sandbox.MaybeRunInit()
	os.Exit(m.Run())
}

// requireOverlay fails or skips (as for a missing tool, IMSBUILD_TEST_REQUIRE
// naming "overlay" or "all") unless this host can mount a parent.
func requireOverlay(t *testing.T) {
	t.Helper()
	testutil.RequireRoot(t)
	testutil.RequireTool(t, "mksquashfs")
	_, err := overlay.Mount("/nonexistent", filepath.Join(t.TempDir(), "probe"))
	if err == nil || strings.Contains(err.Error(), "no such file") {
		return // got as far as the file
	}
	req := os.Getenv("IMSBUILD_TEST_REQUIRE")
	if req == "all" || slices.Contains(strings.FieldsFunc(req, func(r rune) bool { return r == ',' || r == ' ' }), "overlay") {
		t.Fatalf("overlay is required (IMSBUILD_TEST_REQUIRE): %v", err)
	}
	t.Skip(err)
}

type overlayEnv struct {
	store   *local.Cache
	results map[string]*cache.ActionResult
	sb      sandbox.Sandbox
	// noTrees hides the local cache's tree cache from the steps: the
	// parent's squashfs is mounted instead.
	noTrees bool
	// parentLog is the log of the parent's import.
	parentLog string
}

// plainStore is a local cache as a store without a tree cache.
type plainStore struct{ *local.Cache }

func newOverlayEnv(t *testing.T, backend string) *overlayEnv {
	t.Helper()
	store, err := local.Open(filepath.Join(t.TempDir(), "cache"))
	if err != nil {
		t.Fatal(err)
	}
	sb, err := sandbox.Open(backend)
	if err != nil {
		testutil.RequireTool(t, backend)
		t.Fatal(err)
	}
	return &overlayEnv{store: store, results: map[string]*cache.ActionResult{}, sb: sb}
}

// build runs op in a fresh work dir and returns the result, the log and
// the work dir (left in place, for the checks of what is under it).
func (e *overlayEnv) build(ctx context.Context, t *testing.T, op *Image) (*cache.ActionResult, string, string, error) {
	t.Helper()
	return e.buildIn(ctx, t, op, "work")
}

// buildIn is build in a work dir called name.
func (e *overlayEnv) buildIn(ctx context.Context, t *testing.T, op *Image, name string) (*cache.ActionResult, string, string, error) {
	t.Helper()
	work := filepath.Join(t.TempDir(), name)
	if err := os.Mkdir(work, 0o755); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	var store cache.Store = e.store
	if e.noTrees {
		store = plainStore{e.store}
	}
	res, err := op.Build(ctx, Env{
		Work: work, Log: &log, Store: store,
		Sandbox: func() (sandbox.Sandbox, error) { return e.sb, nil },
		Result:  func(id string) *cache.ActionResult { return e.results[id] },
	})
	return res, log.String(), work, err
}

// parent imports a busybox root with what a customize may delete, replace
// or change through one name of a hard link.
func (e *overlayEnv) parent(t *testing.T) cache.Digest {
	t.Helper()
	return e.parentWith(t, nil, nil)
}

// parentWith is parent with more files (name → content) and exclude
// patterns for its pack.
func (e *overlayEnv) parentWith(t *testing.T, more map[string]string, exclude []string) cache.Digest {
	t.Helper()
	root := testutil.BusyboxRoot(t, false)
	files := map[string]string{"etc/gone": "x", "var/lib/dir/f": "y", "opt/f2d": "z", "opt/d2f/g": "w", "etc/linked": "one\n"}
	maps.Copy(files, more)
	for name, content := range files {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Link(filepath.Join(root, "etc/linked"), filepath.Join(root, "opt/linked")); err != nil {
		t.Fatal(err)
	}
	img := &spec.Image{Name: "base", Import: root}
	img.Squashfs.Exclude = exclude
	res, log, _, err := e.build(t.Context(), t, &Image{Kind: KindImport, Image: img})
	if err != nil {
		t.Fatalf("import: %v\n%s", err, log)
	}
	e.parentLog = log
	e.results["image.base"] = res
	return res.Outputs[ims.ArtifactRootfs].Digest
}

func child(blocks ...spec.Customize) *Image {
	return &Image{Kind: KindCustomize, Parent: "image.base", Image: &spec.Image{Name: "c", From: "base", Customize: blocks}}
}

// customizeBlocks delete a file and a directory, turn a file into a
// directory and a directory into a file, write through one name of a hard
// link and make a setuid file: jailed, and non-jailed through IMAGE_ROOT.
var customizeBlocks = []spec.Customize{
	{Jail: true, Inline: `rm /etc/gone; rm -r /var/lib/dir; rm /opt/f2d; mkdir -p /opt/f2d/sub; echo d > /opt/f2d/sub/f
rm -r /opt/d2f; echo f > /opt/d2f; echo two >> /etc/linked; echo s > /bin/suid; chmod 4755 /bin/suid`},
	{Jail: false, Inline: `echo host > "$IMAGE_ROOT/etc/from-host"; rm "$IMAGE_ROOT/etc/os-release"`},
}

// loopsOn returns the loop devices whose backing file is p.
func loopsOn(p string) []string {
	files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	var out []string
	for _, f := range files {
		if b, err := os.ReadFile(f); err == nil && strings.TrimSpace(string(b)) == p {
			out = append(out, f)
		}
	}
	return out
}

func assertUnmounted(t *testing.T, work string, store *local.Cache, parent cache.Digest) {
	t.Helper()
	if m, err := overlay.Mounts(work); err != nil || len(m) > 0 {
		t.Errorf("mounts left under %s: %v %v", work, m, err)
	}
	// A mount namespace that another test's sandbox made meanwhile holds
	// a copy of the overlay, and so the loop device, until it has pivoted
	// away from the host's mounts: wait for that, not longer.
	deadline := time.Now().Add(20 * time.Second)
	for len(loopsOn(store.BlobPath(parent))) > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if l := loopsOn(store.BlobPath(parent)); len(l) > 0 {
		t.Errorf("loop devices left on the parent: %v", l)
	}
	if got := "sha256:" + testutil.FileSHA256(t, store.BlobPath(parent)); got != string(parent) {
		t.Errorf("the parent blob changed: %s, want %s", got, parent)
	}
	// The parent's tree (if any) is free again: no step holds its lock.
	l := flock.New(filepath.Join(store.Dir(), "trees", parent.Hex()+".lock"))
	if ok, err := l.TryLock(); err != nil || !ok {
		t.Errorf("the parent's tree is still locked (%v, %v)", ok, err)
	}
	l.Close()
	os.Remove(l.Path()) // made by the check when there was no tree
}

// assertTreeIntact fails unless the cache holds the parent's tree complete
// (unchanged by the customizes built on it).
func assertTreeIntact(t *testing.T, store *local.Cache, parent cache.Digest) {
	t.Helper()
	_, release, filled, err := store.UseTree(t.Context(), parent, func(string) error { return nil })
	if err != nil || filled {
		t.Fatalf("UseTree() of the parent = filled %v, %v; want its tree complete, as it was", filled, err)
	}
	release()
}

// The same customize built on the mounted parent and on the unpacked one
// gives the same rootfs, with every sandbox backend, and leaves the parent
// as it was and nothing mounted.
func TestCustomizeOverlayMatchesUnpack(t *testing.T) {
	requireOverlay(t)
	for _, backend := range []string{sandbox.BackendBwrap, sandbox.BackendNative, sandbox.BackendRunc} {
		t.Run(backend, func(t *testing.T) {
			e := newOverlayEnv(t, backend)
			parent := e.parent(t)
			blocks := append([]spec.Customize(nil), customizeBlocks...)
			if backend == sandbox.BackendRunc {
				blocks = blocks[:1] // a non-jailed step needs a builder image with runc
			}
			// Files copied over a file of the parent and into a new
			// place, with a mode and an owner.
			src := filepath.Join(t.TempDir(), "motd")
			if err := os.WriteFile(src, []byte("copied\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			blocks = append(blocks, spec.Customize{Jail: true, Files: []spec.FileCopy{
				{Dest: "/etc/passwd", Source: src, Mode: 0o600, HasMode: true},
				{Dest: "/opt/new/motd", Source: src, Owner: "0:5"},
			}})
			op := child(blocks...)
			mounted, log, work, err := e.build(t.Context(), t, op)
			if err != nil {
				t.Fatalf("customize on the overlay: %v\n%s", err, log)
			}
			if !strings.Contains(log, "under an overlay, on its tree") {
				t.Fatalf("log:\n%s\nwant the parent's tree under the overlay", log)
			}
			assertUnmounted(t, work, e.store, parent)
			assertTreeIntact(t, e.store, parent)
			e.noTrees = true
			onSquashfs, log, work, err := e.build(t.Context(), t, op)
			if err != nil {
				t.Fatalf("customize on the mounted squashfs: %v\n%s", err, log)
			}
			if !strings.Contains(log, "under an overlay, on its squashfs") {
				t.Fatalf("log:\n%s\nwant the parent's squashfs under the overlay", log)
			}
			assertUnmounted(t, work, e.store, parent)
			e.noTrees = false
			op.UnpackParent = true
			unpacked, log, _, err := e.build(t.Context(), t, op)
			if err != nil {
				t.Fatalf("customize on the unpacked root: %v\n%s", err, log)
			}
			if !strings.Contains(log, "unpacking image.base rootfs") {
				t.Fatalf("log:\n%s\nwant the parent unpacked", log)
			}
			for _, name := range []string{ims.ArtifactRootfs, ims.SBOMFile} {
				if g, w := mounted.Outputs[name].Digest, unpacked.Outputs[name].Digest; g != w {
					t.Errorf("%s on the tree = %s, unpacked = %s; want equal", name, g, w)
				}
				if g, w := onSquashfs.Outputs[name].Digest, unpacked.Outputs[name].Digest; g != w {
					t.Errorf("%s on the squashfs = %s, unpacked = %s; want equal", name, g, w)
				}
				// IMS's md5, hashed beside the sha256 while the blob is
				// synced, is the stored blob's.
				for way, res := range map[string]*cache.ActionResult{"tree": mounted, "squashfs": onSquashfs, "unpacked": unpacked} {
					out := res.Outputs[name]
					b, err := os.ReadFile(e.store.BlobPath(out.Digest))
					if err != nil {
						t.Fatal(err)
					}
					if g, w := out.MD5, fmt.Sprintf("%x", md5.Sum(b)); g != w {
						t.Errorf("md5 of %s (%s) = %s, the blob's = %s; want equal", name, way, g, w)
					}
				}
			}
			if mounted.Outputs[ims.ArtifactRootfs].Digest == parent {
				t.Fatal("the child's rootfs is the parent's: customize changed nothing")
			}
		})
	}
}

// Cancelling a customize whose script still runs (SIGINT cancels the
// build's context) unmounts the overlay and frees the loop device.
func TestCustomizeOverlayCancel(t *testing.T) {
	requireOverlay(t)
	e := newOverlayEnv(t, sandbox.BackendAuto)
	parent := e.parent(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() {
		for ctx.Err() == nil && len(testutil.ProcessesMatching(t, "sleep 3917")) == 0 {
			time.Sleep(20 * time.Millisecond)
		}
		cancel()
	}()
	_, log, work, err := e.build(ctx, t, child(spec.Customize{Jail: true, Inline: "touch /etc/started; sleep 3917"}))
	if err == nil || ctx.Err() == nil {
		t.Fatalf("Build() = %v, want cancelled\n%s", err, log)
	}
	if !strings.Contains(log, "under an overlay") {
		t.Fatalf("log:\n%s\nwant the parent mounted", log)
	}
	assertUnmounted(t, work, e.store, parent)
	if p := testutil.ProcessesMatching(t, "sleep 3917"); len(p) > 0 {
		t.Fatalf("processes left: %v", p)
	}
}

// A failing script fails the step and still leaves nothing mounted.
func TestCustomizeOverlayFailure(t *testing.T) {
	requireOverlay(t)
	e := newOverlayEnv(t, sandbox.BackendAuto)
	parent := e.parent(t)
	_, log, work, err := e.build(t.Context(), t, child(spec.Customize{Jail: true, Inline: "rm -rf /etc; exit 3"}))
	if err == nil {
		t.Fatalf("Build() = nil, want the script's failure\n%s", log)
	}
	assertUnmounted(t, work, e.store, parent)
}

// A parent imported as published (an oci:// or s3:// import kept as it
// was, without the SBOM every packed image has) is unpacked, not handed to
// the kernel's squashfs driver: into the tree cache where there is one,
// else into the step's scratch directory.
func TestCustomizeUnpacksPublishedParent(t *testing.T) {
	requireOverlay(t)
	e := newOverlayEnv(t, sandbox.BackendAuto)
	parent := e.parent(t)
	delete(e.results["image.base"].Outputs, ims.SBOMFile)
	e.noTrees = true
	unpacked, log, _, err := e.build(t.Context(), t, child(customizeBlocks[0]))
	if err != nil {
		t.Fatalf("Build() = %v\n%s", err, log)
	}
	if !strings.Contains(log, "imported as published") || !strings.Contains(log, "unpacking image.base rootfs") || strings.Contains(log, "under an overlay") {
		t.Fatalf("log:\n%s\nwant the parent unpacked, not mounted", log)
	}
	e.noTrees = false
	onTree, log, work, err := e.build(t.Context(), t, child(customizeBlocks[0]))
	if err != nil {
		t.Fatalf("Build() = %v\n%s", err, log)
	}
	if !strings.Contains(log, "on its tree") || strings.Contains(log, "on its squashfs") {
		t.Fatalf("log:\n%s\nwant the parent's tree (kept by the import) under the overlay", log)
	}
	assertUnmounted(t, work, e.store, parent) // and no loop device on it
	if g, w := onTree.Outputs[ims.ArtifactRootfs].Digest, unpacked.Outputs[ims.ArtifactRootfs].Digest; g != w {
		t.Fatalf("rootfs on the tree = %s, unpacked = %s; want equal", g, w)
	}
}

// The children of a parent use its tree as it is (kept by the parent's
// import); a tree that is gone (pruned) or damaged meanwhile is unpacked
// into the tree cache again; all build what the unpack path builds.
func TestCustomizeTreeCache(t *testing.T) {
	requireOverlay(t)
	e := newOverlayEnv(t, sandbox.BackendAuto)
	parent := e.parent(t)
	want := map[int]cache.Digest{}
	for i, block := range customizeBlocks {
		op := child(block)
		op.UnpackParent = true
		res, log, _, err := e.build(t.Context(), t, op)
		if err != nil {
			t.Fatalf("Build() = %v\n%s", err, log)
		}
		want[i] = res.Outputs[ims.ArtifactRootfs].Digest
	}
	build := func(i int, wantLog string) {
		t.Helper()
		res, log, work, err := e.build(t.Context(), t, child(customizeBlocks[i]))
		if err != nil {
			t.Fatalf("Build() = %v\n%s", err, log)
		}
		if !strings.Contains(log, wantLog) {
			t.Fatalf("log:\n%s\nwant %q", log, wantLog)
		}
		if g := res.Outputs[ims.ArtifactRootfs].Digest; g != want[i] {
			t.Fatalf("rootfs of customize %d on the tree = %s, unpacked = %s; want equal", i, g, want[i])
		}
		assertUnmounted(t, work, e.store, parent)
		assertTreeIntact(t, e.store, parent)
	}
	build(0, "on its tree in the cache (cached)")
	build(1, "on its tree in the cache (cached)")

	tree := filepath.Join(e.store.Dir(), "trees", parent.Hex(), "root")
	if err := os.RemoveAll(filepath.Dir(tree)); err != nil {
		t.Fatal(err)
	}
	build(0, "unpacking image.base rootfs "+string(parent)+" into the tree cache")
	build(1, "on its tree in the cache (cached)")
	// A file of the tree truncated: the tree is not used, but unpacked
	// again.
	if err := os.Truncate(filepath.Join(tree, "etc/linked"), 1); err != nil {
		t.Fatal(err)
	}
	build(1, "into the tree cache")
	// The marker deleted (a crash before it was written): likewise.
	if err := os.Remove(filepath.Join(filepath.Dir(tree), "complete")); err != nil {
		t.Fatal(err)
	}
	build(0, "into the tree cache")

	// Two children at once without a tree: one unpacks it, both use it.
	if err := os.RemoveAll(filepath.Dir(tree)); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	logs, works := make([]string, 2), make([]string, 2)
	for i := range logs {
		wg.Go(func() {
			res, log, work, err := e.buildIn(t.Context(), t, child(customizeBlocks[i]), fmt.Sprintf("work%d", i))
			logs[i], works[i] = log, work
			if err != nil {
				t.Errorf("Build() = %v\n%s", err, log)
				return
			}
			if g := res.Outputs[ims.ArtifactRootfs].Digest; g != want[i] {
				t.Errorf("rootfs of customize %d = %s, unpacked = %s; want equal", i, g, want[i])
			}
		})
	}
	wg.Wait()
	for _, work := range works {
		assertUnmounted(t, work, e.store, parent)
	}
	if n := strings.Count(logs[0]+logs[1], "into the tree cache"); n != 1 {
		t.Fatalf("%d unpacks for two children at once, want 1:\n%s\n%s", n, logs[0], logs[1])
	}
}

// Where the parent cannot be mounted (here: a work dir whose name the
// overlay's options cannot carry) the step unpacks it, says why, and
// builds the same rootfs.
func TestCustomizeFallsBackToUnpack(t *testing.T) {
	requireOverlay(t)
	e := newOverlayEnv(t, sandbox.BackendAuto)
	e.parent(t)
	mounted, log, _, err := e.build(t.Context(), t, child(customizeBlocks[0]))
	if err != nil || !strings.Contains(log, "under an overlay") {
		t.Fatalf("Build() = %v\n%s\nwant the parent mounted", err, log)
	}
	unpacked, log, _, err := e.buildIn(t.Context(), t, child(customizeBlocks[0]), "wo,rk")
	if err != nil {
		t.Fatalf("Build() = %v\n%s", err, log)
	}
	if !strings.Contains(log, "cannot mount image.base rootfs") || !strings.Contains(log, "comma") || !strings.Contains(log, "unpacking it instead") {
		t.Fatalf("log:\n%s\nwant why the parent is unpacked", log)
	}
	if g, w := unpacked.Outputs[ims.ArtifactRootfs].Digest, mounted.Outputs[ims.ArtifactRootfs].Digest; g != w {
		t.Fatalf("rootfs unpacked = %s, mounted = %s; want equal", g, w)
	}
}

// An imported root is kept as the tree of the rootfs it packed: the first
// child mounts it without unpacking anything, and builds what it builds on
// the unpacked parent, though pack left entries out of the rootfs and set
// every time to the epoch (a script here writes what it sees of both).
func TestCustomizeOnKeptTree(t *testing.T) {
	requireOverlay(t)
	e := newOverlayEnv(t, sandbox.BackendAuto)
	parent := e.parentWith(t, map[string]string{
		"tmp/x": "excluded by default", "run/lock/y": "excluded by default", "image/z": "excluded by default",
		"srv/drop/me": "excluded by the image", "srv/keep": "kept",
	}, []string{"srv/drop"})
	if !strings.Contains(e.parentLog, "root kept as the tree of rootfs "+string(parent)) {
		t.Fatalf("import log:\n%s\nwant the root kept", e.parentLog)
	}
	op := child(spec.Customize{Jail: true, Inline: `set -e
for p in /etc /etc/passwd /run /srv /srv/keep /bin/sh; do stat -c '%n %Y %a %u %s' $p >> /listing; done
ls -a /run /srv /image >> /listing 2>&1 || true
cat /listing`}) // not / nor /tmp, which the sandbox changes
	onKept, log, work, err := e.build(t.Context(), t, op)
	if err != nil {
		t.Fatalf("Build() = %v\n%s", err, log)
	}
	if !strings.Contains(log, "on its tree in the cache (cached)") || strings.Contains(log, "unpacking") {
		t.Fatalf("log:\n%s\nwant the kept tree used, nothing unpacked", log)
	}
	assertUnmounted(t, work, e.store, parent)
	assertTreeIntact(t, e.store, parent)
	op.UnpackParent = true
	unpacked, ulog, _, err := e.build(t.Context(), t, op)
	if err != nil {
		t.Fatalf("Build() = %v\n%s", err, ulog)
	}
	if g, w := onKept.Outputs[ims.ArtifactRootfs].Digest, unpacked.Outputs[ims.ArtifactRootfs].Digest; g != w {
		t.Fatalf("rootfs on the kept tree = %s, unpacked = %s; want equal\nkept:\n%s\nunpacked:\n%s", g, w, log, ulog)
	}
}
