package engine

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/gofrs/flock"

	"github.com/imsbuild/imsbuild/builders/steps"
)

// AcquireWorkDir makes a scratch directory for this process under base and
// removes the scratch directories of earlier processes that died (kill -9)
// without cleaning up: each directory is held by a lock file while in use.
// Cleanup failures go to log.
func AcquireWorkDir(base string, log *slog.Logger) (dir string, release func(), err error) {
	if err := os.MkdirAll(base, 0o755); err != nil {
		return "", nil, fmt.Errorf("work dir: %w", err)
	}
	reapStale(base, log)
	// The lock exists and is held before the directory does, so a reaper
	// never sees our directory unlocked.
	f, err := os.CreateTemp(base, "run-*.lock")
	if err != nil {
		return "", nil, fmt.Errorf("work dir: %w", err)
	}
	f.Close()
	lock := flock.New(f.Name())
	if err := lock.Lock(); err != nil {
		os.Remove(f.Name())
		return "", nil, fmt.Errorf("lock work dir: %w", err)
	}
	dir = strings.TrimSuffix(f.Name(), ".lock")
	if err := os.Mkdir(dir, 0o755); err != nil {
		lock.Unlock()
		os.Remove(f.Name())
		return "", nil, fmt.Errorf("work dir: %w", err)
	}
	return dir, func() {
		removeAll(log, dir)
		os.Remove(lock.Path())
		lock.Unlock()
	}, nil
}

// reapStale removes run-* directories whose lock no live process holds.
func reapStale(base string, log *slog.Logger) {
	entries, _ := os.ReadDir(base)
	for _, ent := range entries {
		name := ent.Name()
		if !ent.IsDir() || !strings.HasPrefix(name, "run-") {
			continue
		}
		dir := filepath.Join(base, name)
		lock := flock.New(dir + ".lock")
		ok, err := lock.TryLock()
		if err != nil || !ok {
			continue
		}
		// A customize of the dead process may have left its parent
		// mounted in dir: removing through the mount would fail.
		if err := steps.ReleaseMounts(dir); err != nil {
			log.Warn("cleanup", "path", dir, "err", err)
		}
		removeAll(log, dir)
		os.Remove(lock.Path())
		lock.Unlock()
	}
}
