package steps

import (
	"log/slog"
	"os"
	"path/filepath"
	"sync"
)

// Handover keeps the root a kiwi prepare just made for its image step,
// which then packs it instead of unpacking the stored copy (same tree,
// seconds saved). The root moves out of the prepare's work directory into
// one of its own under the work base; Take or Drop removes it.
type Handover struct {
	base string // where the handed-over root waits
	log  *slog.Logger

	mu  sync.Mutex
	dir string
}

// NewHandover returns an empty handover whose root waits under base.
func NewHandover(base string, log *slog.Logger) *Handover {
	return &Handover{base: base, log: log}
}

// give keeps root; on any failure the image step just unpacks the stored
// copy.
func (h *Handover) give(root string) {
	if h == nil {
		return
	}
	dir, err := os.MkdirTemp(h.base, "prepared-")
	if err != nil {
		return
	}
	if err := os.Rename(root, filepath.Join(dir, "root")); err != nil {
		removeAll(h.log, dir)
		return
	}
	h.mu.Lock()
	old := h.dir
	h.dir = dir
	h.mu.Unlock()
	if old != "" {
		removeAll(h.log, old)
	}
}

// take moves the handed-over root to root (an empty directory) and reports
// whether it did; if not, root is still there, empty.
func (h *Handover) take(root string) bool {
	dir := h.pop()
	if dir == "" {
		return false
	}
	defer removeAll(h.log, dir)
	if os.Remove(root) != nil {
		return false
	}
	if os.Rename(filepath.Join(dir, "root"), root) != nil {
		_ = os.Mkdir(root, 0o755) // back to the empty dir the caller made
		return false
	}
	return true
}

// Drop removes a root handed over and not taken.
func (h *Handover) Drop() {
	if dir := h.pop(); dir != "" {
		removeAll(h.log, dir)
	}
}

func (h *Handover) pop() string {
	if h == nil {
		return ""
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	dir := h.dir
	h.dir = ""
	return dir
}

// removeAll removes path; a failure is logged (a busy mount point makes
// RemoveAll fail; say so, never hide it).
func removeAll(log *slog.Logger, path string) {
	if err := os.RemoveAll(path); err != nil && log != nil {
		log.Warn("cleanup", "path", path, "err", err)
	}
}
