package steps

import (
	"context"
	"errors"
	"io"
	"log/slog"

	"github.com/imsbuild/imsbuild/builders/sandbox"
	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/internal/treehash"
)

// Kinds of image steps.
const (
	KindImport    = "import"
	KindCustomize = "customize"
	KindKiwi      = "kiwi"
)

// Op is one kind of step. Key describes what decides the step's result;
// Build makes it. Both may be called for a step whose key the engine then
// finds cached (Key only), and Build only after Key succeeded.
type Op interface {
	Key(ctx context.Context, k KeyEnv) (*Key, error)
	Build(ctx context.Context, env Env) (*cache.ActionResult, error)
}

// ErrParentPending means a key cannot be known yet: a step this one builds
// on has no result so far.
var ErrParentPending = errors.New("parent not built yet")

// Key is what an op says decides its result. The engine adds the builder
// version, the cache salt and the allowlisted environment, seals sensitive
// values and hashes it; the JSON names are the key preimage's.
type Key struct {
	Type      string            // imsbuild/<kind>/v<N>: N changes when the same inputs would build something else
	Attrs     any               // the kind's key struct (keyattrs.go)
	Inputs    map[string]string // name → content digest
	Tools     map[string]string // tool → version, for tools whose output enters the result
	Parent    string            // the step built on, for explain only
	Customize []CustomizeKey
}

// KeyEnv is what the engine gives Key.
type KeyEnv struct {
	StatCache *treehash.StatCache
	// TextDigest digests a text that enters a key (an inline script, a CA
	// certificate): its sha256, or an HMAC when it holds a sensitive value.
	TextDigest func(string) string
	// ToolVersion returns the version of tool name (probe asks the tool),
	// remembered across steps and builds.
	ToolVersion func(ctx context.Context, name string, probe func(context.Context) (string, error)) (string, error)
	// Once returns f's value for name, computed once per build however
	// many steps ask (an import's digest).
	Once func(name string, f func() (string, error)) (string, error)
	// Result returns the result of step id, nil when it has none yet.
	Result func(id string) *cache.ActionResult
	// Emulated reports whether a step of arch runs its programs under
	// emulation where it will build: an executor may send an aarch64
	// step to an arm64 machine (executor.ArchRouter). Nil means this
	// host builds it (binfmt.Emulated), as without an executor.
	Emulated func(ctx context.Context, arch string) (bool, error)
}

// Env is what the engine gives Build.
type Env struct {
	Work    string    // the step's private, empty scratch directory; removed after
	Log     io.Writer // the step's log (a file and events)
	Store   cache.Store
	Environ []string // the allowlisted environment, KEY=value, sorted
	// Sandbox returns the build's sandbox for confined commands, made on
	// first use.
	Sandbox func() (sandbox.Sandbox, error)
	// Result returns the result of step id, nil when it has none.
	Result func(id string) *cache.ActionResult
	Logger *slog.Logger // cleanup failures
}

// quiet returns the writer of log for output too verbose for the console
// (the engine's step log has one), or nil when log has none.
func quiet(log io.Writer) io.Writer {
	if q, ok := log.(interface{ Quiet() io.Writer }); ok {
		return q.Quiet()
	}
	return nil
}
