package local

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/imsbuild/imsbuild/cache"
)

// buildOnce is what the engine does for one step: lock the key, look it up,
// and on a miss build (here: store a blob naming the builder) and record.
// It reports whether this caller built.
func buildOnce(ctx context.Context, dir, key, who string) (built bool, res *cache.ActionResult, err error) {
	c, err := Open(dir)
	if err != nil {
		return false, nil, err
	}
	ac := c.Actions()
	unlock, err := ac.Lock(ctx, key)
	if err != nil {
		return false, nil, err
	}
	defer unlock()
	if res, err := ac.Get(ctx, key); err == nil {
		return false, res, nil
	} else if !errors.Is(err, cache.ErrNotFound) {
		return false, nil, err
	}
	time.Sleep(20 * time.Millisecond) // the "build": widens the race window
	d, n, err := c.Put(ctx, strings.NewReader("built by "+who), "")
	if err != nil {
		return false, nil, err
	}
	res = &cache.ActionResult{Step: "s", Builder: who, Outputs: map[string]cache.Output{"rootfs": {Digest: d, Size: n}}}
	if err := ac.Put(ctx, key, []byte(`{"step":"s"}`), res); err != nil {
		return false, nil, err
	}
	return true, res, nil
}

func TestConcurrentSameKeyGoroutines(t *testing.T) {
	dir := t.TempDir()
	key := strings.Repeat("e", 64)
	const n = 6
	var wg sync.WaitGroup
	results := make([]*cache.ActionResult, n)
	builds := make([]bool, n)
	for i := range n {
		wg.Go(func() {
			built, res, err := buildOnce(t.Context(), dir, key, fmt.Sprintf("g%d", i))
			if err != nil {
				t.Error(err)
			}
			builds[i], results[i] = built, res
		})
	}
	wg.Wait()
	count := 0
	for i := range n {
		if builds[i] {
			count++
		}
		if results[i] == nil || results[i].Builder != results[0].Builder {
			t.Errorf("worker %d saw %+v, worker 0 saw %+v", i, results[i], results[0])
		}
	}
	if count != 1 {
		t.Errorf("%d workers built the key, want exactly 1", count)
	}
}

// TestHelperProcess is a child of TestConcurrentSameKeyProcesses.
func TestHelperProcess(t *testing.T) {
	dir := os.Getenv("IMSBUILD_CACHE_HELPER_DIR")
	if dir == "" {
		t.Skip("helper process only")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	built, res, err := buildOnce(ctx, dir, os.Getenv("IMSBUILD_CACHE_HELPER_KEY"), fmt.Sprintf("pid%d", os.Getpid()))
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("RESULT built=%v builder=%s\n", built, res.Builder)
}

func TestConcurrentSameKeyProcesses(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	dir := t.TempDir()
	key := strings.Repeat("d", 64)
	const n = 4
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	cmds := make([]*exec.Cmd, n)
	outs := make([]strings.Builder, n)
	for i := range n {
		cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHelperProcess$", "-test.v")
		cmd.Env = append(os.Environ(), "IMSBUILD_CACHE_HELPER_DIR="+dir, "IMSBUILD_CACHE_HELPER_KEY="+key)
		cmd.Stdout, cmd.Stderr = &outs[i], &outs[i]
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds[i] = cmd
	}
	builders := map[string]bool{}
	built := 0
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("helper %d: %v\n%s", i, err, outs[i].String())
		}
		var b bool
		var who string
		for line := range strings.Lines(outs[i].String()) {
			if _, err := fmt.Sscanf(line, "RESULT built=%t builder=%s", &b, &who); err == nil {
				break
			}
		}
		if who == "" {
			t.Fatalf("helper %d printed no result:\n%s", i, outs[i].String())
		}
		builders[who] = true
		if b {
			built++
		}
	}
	if built != 1 || len(builders) != 1 {
		t.Errorf("%d processes built, results from builders %v; want 1 build seen by all", built, builders)
	}
	c, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Actions().Get(t.Context(), key)
	if err != nil || !builders[res.Builder] {
		t.Errorf("final Get() = %+v, %v; want the result of %v", res, err, builders)
	}
	if rep, err := c.Verify(t.Context(), VerifyOptions{}); err != nil || !rep.OK() || rep.Blobs != 1 {
		t.Errorf("Verify() = %+v, %v; want one intact blob", rep, err)
	}
}
