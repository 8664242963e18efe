package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"

	"github.com/imsbuild/imsbuild/internal/atomicfile"
)

// toolCache remembers tool versions by the identity of the tool's binary
// (path, size, mtime, inode), so a no-op build does not exec every tool to
// ask its version. A changed binary is asked again.
type toolCache struct {
	path string
	mu   sync.Mutex
}

type toolEntry struct {
	ID      string `json:"id"`
	Version string `json:"version"`
}

func (t *toolCache) version(ctx context.Context, name string, probe func(context.Context) (string, error)) (string, error) {
	bin, err := exec.LookPath(name)
	if err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	if bin, err = filepath.EvalSymlinks(bin); err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	fi, err := os.Stat(bin)
	if err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	var ino uint64
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		ino = st.Ino
	}
	id := fmt.Sprintf("%s|%d|%d|%d", bin, fi.Size(), fi.ModTime().UnixNano(), ino)

	t.mu.Lock()
	defer t.mu.Unlock()
	entries := map[string]toolEntry{}
	if t.path != "" {
		if b, err := os.ReadFile(t.path); err == nil {
			_ = json.Unmarshal(b, &entries) // unreadable means empty
		}
	}
	if e, ok := entries[name]; ok && e.ID == id {
		return e.Version, nil
	}
	v, err := probe(ctx)
	if err != nil {
		return "", err
	}
	if t.path != "" {
		entries[name] = toolEntry{ID: id, Version: v}
		if b, err := json.Marshal(entries); err == nil {
			_ = os.MkdirAll(filepath.Dir(t.path), 0o755)
			_ = atomicfile.WriteFile(t.path, b, 0o644) // a lost write only costs a probe
		}
	}
	return v, nil
}
