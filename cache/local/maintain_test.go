package local

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gofrs/flock"
	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/imsbuild/imsbuild/cache"
)

// putAction records an action for key whose outputs are the given blobs.
func putAction(t *testing.T, c *Cache, key string, created time.Time, blobs ...cache.Digest) {
	t.Helper()
	res := &cache.ActionResult{Step: "step-" + key, Created: created, Outputs: map[string]cache.Output{}}
	for i, d := range blobs {
		res.Outputs[string(rune('a'+i))] = cache.Output{Digest: d}
	}
	if err := c.Actions().Put(t.Context(), key, []byte(`{}`), res); err != nil {
		t.Fatal(err)
	}
}

// setUsed sets the last-used time of an action.
func setUsed(t *testing.T, c *Cache, key string, at time.Time) {
	t.Helper()
	if err := os.Chtimes(filepath.Join(c.Dir(), "actions", key+".json"), at, at); err != nil {
		t.Fatal(err)
	}
}

func damage(t *testing.T, c *Cache, d cache.Digest) {
	t.Helper()
	p := c.BlobPath(d)
	if err := os.Chmod(p, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("XXXX"), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestVerify(t *testing.T) {
	c := newCache(t)
	now := time.Now()
	good, bad, gone := putString(t, c, "good"), putString(t, c, "bad!"), putString(t, c, "gone")
	putAction(t, c, "ok", now, good)
	putAction(t, c, "usesbad", now, good, bad)
	putAction(t, c, "usesgone", now, gone)
	damage(t, c, bad)
	if err := os.Remove(c.BlobPath(gone)); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(c.Dir(), "actions", "junk.json"), []byte("{"), 0o644); err != nil {
		t.Fatal(err)
	}

	rep, err := c.Verify(t.Context(), VerifyOptions{})
	if err != nil {
		t.Fatalf("Verify() = %v", err)
	}
	if rep.OK() || rep.Blobs != 2 || rep.Actions != 4 || rep.Bytes != 8 || rep.Repaired {
		t.Errorf("Verify() = %+v, want 2 blobs, 8 bytes, 4 actions, not OK", rep)
	}
	if diff := cmp.Diff([]cache.Digest{bad}, rep.CorruptBlobs); diff != "" {
		t.Errorf("Corrupt (-want +got):\n%s", diff)
	}
	var broken []string
	for _, b := range rep.BrokenActions {
		broken = append(broken, b.Key)
		if b.Reason == "" || b.String() != b.Key+": "+b.Reason {
			t.Errorf("broken action %s has no reason", b.Key)
		}
	}
	slices.Sort(broken)
	if diff := cmp.Diff([]string{"junk", "usesbad", "usesgone"}, broken); diff != "" {
		t.Errorf("Broken (-want +got):\n%s", diff)
	}
	// Without repair nothing changed.
	if _, err := os.Stat(c.BlobPath(bad)); err != nil {
		t.Errorf("Verify(repair=false) removed a blob: %v", err)
	}

	rep, err = c.Verify(t.Context(), VerifyOptions{Repair: true})
	if err != nil || !rep.Repaired || len(rep.CorruptBlobs) != 1 || len(rep.BrokenActions) != 3 {
		t.Fatalf("Verify(repair) = %+v, %v", rep, err)
	}
	rep, err = c.Verify(t.Context(), VerifyOptions{})
	if err != nil || !rep.OK() || rep.Blobs != 1 || rep.Actions != 1 {
		t.Errorf("Verify() after repair = %+v, %v; want OK with 1 blob and 1 action", rep, err)
	}
	if _, err := c.Actions().Get(t.Context(), "ok"); err != nil {
		t.Errorf("Get(ok) after repair = %v", err)
	}
}

func TestVerifyCancelled(t *testing.T) {
	c := newCache(t)
	putString(t, c, "x")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if _, err := c.Verify(ctx, VerifyOptions{}); !errors.Is(err, context.Canceled) {
		t.Errorf("Verify(cancelled) = %v, want Canceled", err)
	}
}

func TestPrune(t *testing.T) {
	// Every blob is 10 bytes; "now" is a day after the blobs were written,
	// so the grace period protects none of them unless a test says so.
	now := time.Now().Add(24 * time.Hour)
	blob := func(s string) string { return strings.Repeat(s, 10) }
	type act struct {
		key   string
		age   time.Duration // created this long before now
		used  time.Duration // last used this long before now
		blobs []string
	}
	tests := []struct {
		name        string
		acts        []act
		extra       []string // unreferenced blobs
		opts        PruneOptions
		wantActions []string
		wantBlobs   []string
		wantFreed   int64
	}{
		{
			name:        "gc only: unreferenced blobs go",
			acts:        []act{{key: "a", blobs: []string{"1", "2"}}},
			extra:       []string{"3", "4"},
			wantActions: []string{"a"}, wantBlobs: []string{"1", "2"}, wantFreed: 20,
		},
		{
			name: "max age by creation",
			acts: []act{
				{key: "old", age: 10 * 24 * time.Hour, blobs: []string{"1", "2"}},
				{key: "new", age: time.Hour, used: 20 * 24 * time.Hour, blobs: []string{"2", "3"}},
			},
			opts:        PruneOptions{MaxAge: 7 * 24 * time.Hour},
			wantActions: []string{"new"}, wantBlobs: []string{"2", "3"}, wantFreed: 10,
		},
		{
			name: "max size drops least recently used",
			acts: []act{
				{key: "lru", used: 3 * time.Hour, blobs: []string{"1", "2"}},
				{key: "mid", used: 2 * time.Hour, blobs: []string{"2", "3"}},
				{key: "mru", used: time.Hour, blobs: []string{"4"}},
			},
			opts:        PruneOptions{MaxSize: 30},
			wantActions: []string{"mid", "mru"}, wantBlobs: []string{"2", "3", "4"}, wantFreed: 10,
		},
		{
			name: "max size: shared blobs count once",
			acts: []act{
				{key: "lru", used: 3 * time.Hour, blobs: []string{"1"}},
				{key: "mid", used: 2 * time.Hour, blobs: []string{"1", "2"}},
				{key: "mru", used: time.Hour, blobs: []string{"2"}},
			},
			opts:        PruneOptions{MaxSize: 20},
			wantActions: []string{"lru", "mid", "mru"}, wantBlobs: []string{"1", "2"},
		},
		{
			name: "max size smaller than the newest action empties the cache",
			acts: []act{
				{key: "a", used: time.Hour, blobs: []string{"1", "2"}},
			},
			opts:      PruneOptions{MaxSize: 5},
			wantFreed: 20,
		},
		{
			name:        "grace keeps young unreferenced blobs",
			acts:        []act{{key: "a", blobs: []string{"1"}}},
			extra:       []string{"2"},
			opts:        PruneOptions{Now: time.Now(), Grace: time.Hour},
			wantActions: []string{"a"}, wantBlobs: []string{"1", "2"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newCache(t)
			digests := map[cache.Digest]string{}
			put := func(s string) cache.Digest {
				d := putString(t, c, blob(s))
				digests[d] = s
				return d
			}
			for _, s := range tc.extra {
				put(s)
			}
			for _, a := range tc.acts {
				var ds []cache.Digest
				for _, s := range a.blobs {
					ds = append(ds, put(s))
				}
				putAction(t, c, a.key, now.Add(-a.age), ds...)
				setUsed(t, c, a.key, now.Add(-a.used))
			}
			if err := os.WriteFile(filepath.Join(c.Dir(), "actions", "junk.json"), []byte("{"), 0o644); err != nil {
				t.Fatal(err)
			}
			opts := tc.opts
			if opts.Now.IsZero() {
				opts.Now = now
			}
			rep, err := c.Prune(t.Context(), opts)
			if err != nil {
				t.Fatalf("Prune() = %v", err)
			}
			var gotActions []string
			entries, err := c.List(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			for _, e := range entries {
				gotActions = append(gotActions, e.Key)
			}
			slices.Sort(gotActions)
			if diff := cmp.Diff(tc.wantActions, gotActions); diff != "" {
				t.Errorf("actions left (-want +got):\n%s", diff)
			}
			blobs, err := c.scanBlobs(t.Context())
			if err != nil {
				t.Fatal(err)
			}
			var gotBlobs []string
			for _, b := range blobs {
				gotBlobs = append(gotBlobs, digests[b.digest])
			}
			slices.Sort(gotBlobs)
			if diff := cmp.Diff(tc.wantBlobs, gotBlobs); diff != "" {
				t.Errorf("blobs left (-want +got):\n%s", diff)
			}
			if rep.FreedBytes != tc.wantFreed || rep.RemainingBlobs != len(tc.wantBlobs) || rep.RemainingActions != len(tc.wantActions) ||
				rep.RemainingBytes != int64(10*len(tc.wantBlobs)) || rep.RemovedActions != len(tc.acts)+1-len(tc.wantActions) {
				t.Errorf("Prune() = %+v; want freed %d, %d blobs, %d actions", rep, tc.wantFreed, len(tc.wantBlobs), len(tc.wantActions))
			}
			// Whatever is left is intact and every kept action is a hit.
			if vr, err := c.Verify(t.Context(), VerifyOptions{}); err != nil || !vr.OK() {
				t.Errorf("Verify() after Prune() = %+v, %v", vr, err)
			}
			for _, k := range tc.wantActions {
				if _, err := c.Actions().Get(t.Context(), k); err != nil {
					t.Errorf("Get(%s) after Prune() = %v", k, err)
				}
			}
		})
	}
}

func TestPruneCleansTmp(t *testing.T) {
	c := newCache(t)
	stale := filepath.Join(c.Dir(), "tmp", ".tmp-crashed")
	fresh := filepath.Join(c.Dir(), "tmp", ".tmp-writing")
	for _, p := range []string{stale, fresh} {
		if err := os.WriteFile(p, []byte("partial"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	old := time.Now().Add(-2 * DefaultGrace)
	if err := os.Chtimes(stale, old, old); err != nil {
		t.Fatal(err)
	}
	rep, err := c.Prune(t.Context(), PruneOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Errorf("stale temp file kept: %v", err)
	}
	if _, err := os.Stat(fresh); err != nil {
		t.Errorf("fresh temp file removed: %v", err)
	}
	if rep.RemovedTempFiles != 1 {
		t.Errorf("Prune().RemovedTempFiles = %d, want 1", rep.RemovedTempFiles)
	}
}

func TestPruneRemovesLocks(t *testing.T) {
	c := newCache(t)
	ac := c.Actions()
	lockPath := func(key string) string { return filepath.Join(c.Dir(), "locks", key+".lock") }
	lock := func(key string) func() {
		t.Helper()
		unlock, err := ac.Lock(t.Context(), key)
		if err != nil {
			t.Fatal(err)
		}
		return unlock
	}
	// "kept" stays cached, "pruned" is removed by MaxAge, "built" never
	// had a result (a failed build): the last two locks are garbage.
	now := time.Now()
	d := putString(t, c, "output")
	for key, created := range map[string]time.Time{"kept": now, "pruned": now.Add(-48 * time.Hour)} {
		unlock := lock(key)
		putAction(t, c, key, created, d)
		unlock()
	}
	lock("built")()
	// Held while Prune runs: by Lock (its own descriptor), and by a bare
	// flock on a separate descriptor, as another process would.
	unlockHeld := lock("held")
	defer unlockHeld()
	f, err := os.OpenFile(lockPath("raw"), os.O_CREATE|os.O_RDONLY, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	// Not per-key lock files: never touched.
	if err := os.WriteFile(filepath.Join(c.Dir(), "locks", "notes"), nil, 0o644); err != nil {
		t.Fatal(err)
	}

	rep, err := c.Prune(t.Context(), PruneOptions{MaxAge: 24 * time.Hour})
	if err != nil {
		t.Fatalf("Prune() = %v", err)
	}
	if rep.RemovedLocks != 2 || rep.RemovedActions != 1 {
		t.Errorf("Prune() = %+v, want 2 locks and 1 action removed", rep)
	}
	for name, want := range map[string]bool{
		"kept.lock": true, "pruned.lock": false, "built.lock": false, "held.lock": true, "raw.lock": true,
		".gc": true, "notes": true,
	} {
		_, err := os.Stat(filepath.Join(c.Dir(), "locks", name))
		if got := err == nil; got != want {
			t.Errorf("locks/%s exists = %v (%v), want %v", name, got, err, want)
		}
	}
	// The held locks still exclude.
	for _, key := range []string{"held", "raw"} {
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		if _, err := ac.Lock(ctx, key); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Lock(%s) while held = %v, want DeadlineExceeded", key, err)
		}
		cancel()
	}

	// Released, they go too; the cached key's lock still stays.
	unlockHeld()
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	rep, err = c.Prune(t.Context(), PruneOptions{})
	if err != nil || rep.RemovedLocks != 2 {
		t.Errorf("second Prune() = %+v, %v; want 2 locks removed", rep, err)
	}
	if _, err := os.Stat(lockPath("kept")); err != nil {
		t.Errorf("lock of a cached key removed: %v", err)
	}
	// A removed lock file comes back on demand.
	lock("built")()
	if _, err := os.Stat(lockPath("built")); err != nil {
		t.Errorf("Lock() after Prune() made no lock file: %v", err)
	}
}

// TestStillLinked is the check lockFile makes after locking, step by step:
// the locked file is the one at the path until Prune unlinks it, and a new
// file at the path is another lock.
func TestStillLinked(t *testing.T) {
	path := filepath.Join(t.TempDir(), "k.lock")
	l := flock.New(path)
	if ok, err := l.TryLock(); !ok || err != nil {
		t.Fatalf("TryLock() = %v, %v", ok, err)
	}
	defer l.Close()
	check := func(when string, want bool) {
		t.Helper()
		if got, err := stillLinked(l, path); got != want || err != nil {
			t.Errorf("stillLinked() %s = %v, %v; want %v", when, got, err, want)
		}
	}
	check("while linked", true)
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	check("after removal", false)
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	check("after re-creation", false)
}

// TestLockExcludesDuringPrune runs lockers of one uncached key against a
// Prune loop that removes the key's lock file whenever it is free: a locker
// that opened the file before it was removed must not take a lock that the
// next locker, on a new file, does not see.
func TestLockExcludesDuringPrune(t *testing.T) {
	c := newCache(t)
	const key, workers, rounds = "contended", 8, 500
	var inside atomic.Int32
	var overlaps, removed atomic.Int64
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	done := make(chan struct{})
	pruned := make(chan error, 1)
	go func() {
		for {
			select {
			case <-done:
				pruned <- nil
				return
			default:
			}
			rep, err := c.Prune(ctx, PruneOptions{})
			if err != nil {
				pruned <- err
				return
			}
			removed.Add(int64(rep.RemovedLocks))
		}
	}()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range rounds {
				unlock, err := c.Actions().Lock(ctx, key)
				if err != nil {
					t.Error(err)
					return
				}
				if inside.Add(1) != 1 {
					overlaps.Add(1)
				}
				runtime.Gosched()
				inside.Add(-1)
				unlock()
			}
		})
	}
	wg.Wait()
	close(done)
	if err := <-pruned; err != nil {
		t.Fatalf("Prune() = %v", err)
	}
	if n := overlaps.Load(); n > 0 {
		t.Errorf("%d times two lockers held %s at once", n, key)
	}
	if removed.Load() == 0 {
		t.Errorf("Prune() never removed the free lock file; the test proves nothing")
	}
	t.Logf("%d lock files removed during %d locks", removed.Load(), workers*rounds)
}

func TestPruneExcludesWriters(t *testing.T) {
	c := newCache(t)
	// A writer (shared lock) in flight: Prune waits.
	unlock, err := c.gcShared(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if _, err := c.Prune(ctx, PruneOptions{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Prune() during a write = %v, want DeadlineExceeded", err)
	}
	unlock()

	// Prune in progress (exclusive lock, here from another Cache value as a
	// second process would): writers wait.
	other, err := Open(c.Dir())
	if err != nil {
		t.Fatal(err)
	}
	unlock, err = other.gcExclusive(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	ctx2, cancel2 := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel2()
	if _, _, err := c.Put(ctx2, strings.NewReader("x"), ""); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Put() during Prune = %v, want DeadlineExceeded", err)
	}
	if err := c.Actions().Put(ctx2, "k", nil, &cache.ActionResult{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("action Put() during Prune = %v, want DeadlineExceeded", err)
	}
	if err := c.Actions().SetLastKey(ctx2, "s", "k", []byte(`{}`)); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("SetLastKey() during Prune = %v, want DeadlineExceeded", err)
	}
	unlock()
	if _, _, err := c.Put(t.Context(), strings.NewReader("x"), ""); err != nil {
		t.Errorf("Put() after Prune = %v", err)
	}
}
