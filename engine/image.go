package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/imsbuild/imsbuild/builders/steps"
	"github.com/imsbuild/imsbuild/cache"
)

func digestOf(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// runImage builds an image step, or takes it from the cache; a kiwi image
// runs its prepare sub-step first.
func (e *Engine) runImage(ctx context.Context, s *Step) (cached bool, err error) {
	ops, err := e.opsOf(s, true)
	if err != nil {
		return false, err
	}
	defer ops.handover.Drop()
	if err := e.remoteAllowed(s); err != nil {
		return false, err
	}
	if ops.prepare != nil {
		if err := e.runPrepare(ctx, s, ops.prepare); err != nil {
			return false, err
		}
		if e.pastOnly(s) {
			return true, nil
		}
	}
	pre, err := e.preimage(ctx, ops.image)
	if err != nil {
		return false, err
	}
	return e.runCached(ctx, s.ID, pre, s.ID+".log", e.cacheable(s), func(log io.Writer) (*cache.ActionResult, error) {
		return e.build(ctx, s.ID, ops.image, log)
	})
}

// runCached gives step id a result for preimage pre: from the action cache
// when there and cacheable, else by build, whose output goes to the log
// file logName (kept) and to log events. The result is stored (blobs and
// log first, the action record last) and recorded for explain; an
// uncacheable result reaches the CAS but not the action cache. A build
// error comes back as a *StepError with the log's tail.
func (e *Engine) runCached(ctx context.Context, id string, pre *Preimage, logName string, cacheable bool, build func(io.Writer) (*cache.ActionResult, error)) (cached bool, err error) {
	e.seal(pre)
	key, canon, err := pre.Key()
	if err != nil {
		return false, err
	}
	e.setPreimage(id, pre, canon)
	if err := e.checkOnly(id, key, false); err != nil {
		return false, err
	}
	unlock, err := e.ac.Lock(ctx, key)
	if err != nil {
		return false, fmt.Errorf("lock key %s: %w", key[:12], err)
	}
	defer unlock()
	if r, err := e.ac.Get(ctx, key); err == nil && cacheable {
		e.setResult(id, key, r)
		e.setLastKey(ctx, id, key, canon)
		e.emit(Event{Step: id, Status: StatusCached, Key: key})
		return true, nil
	} else if errors.Is(err, cache.ErrCorrupt) {
		// The cache dropped the corrupt blob and every result built on it;
		// the step is built again, which is worth saying.
		e.emit(Event{Step: id, Status: StatusLog, Line: fmt.Sprintf("cached result dropped, building again: %v", err)})
	} else if err != nil && !errors.Is(err, cache.ErrNotFound) {
		return false, fmt.Errorf("action cache: %w", err)
	}
	if err := e.checkOnly(id, key, true); err != nil {
		return false, err
	}

	remote := e.opts.Executor != nil
	e.emit(Event{Step: id, Status: StatusStarted, Key: key, Remote: remote})
	logPath := filepath.Join(e.opts.LogDir, logName)
	lw, err := newStepLog(logPath, e.redact, func(line string) {
		e.emit(Event{Step: id, Status: StatusLog, Line: line})
	})
	if err != nil {
		return false, err
	}
	if remote {
		return false, e.runRemote(ctx, id, key, canon, cacheable, lw, logPath)
	}
	res, buildErr := build(lw)
	lw.Close()
	if buildErr != nil {
		return false, &StepError{Step: id, LogPath: logPath, LogTail: lw.Tail(), Err: buildErr}
	}
	if res.Log, _, err = e.store.PutFile(ctx, logPath); err != nil {
		return false, fmt.Errorf("store log: %w", err)
	}
	res.Step, res.Builder, res.Created = id, BuilderVersion, e.opts.Now().UTC()
	// The action result is written last: a cancelled or failed step leaves
	// blobs at most, never an entry that points at nothing.
	if id == e.only && e.opts.ResultKey != "" {
		// A remote run records where its orchestrator reads (ResultKey).
		if err := e.ac.Put(ctx, e.opts.ResultKey, canon, res); err != nil {
			return false, fmt.Errorf("record result: %w", err)
		}
	} else if cacheable {
		if err := e.ac.Put(ctx, key, canon, res); err != nil {
			return false, fmt.Errorf("record result: %w", err)
		}
		e.setLastKey(ctx, id, key, canon)
	}
	e.setResult(id, key, res)
	return false, nil
}

// build runs op in a private scratch directory, removed whatever happens.
func (e *Engine) build(ctx context.Context, id string, op steps.Op, log io.Writer) (*cache.ActionResult, error) {
	return e.buildIn(ctx, id, op, log, e.store)
}

// buildIn is build with the outputs going to store.
func (e *Engine) buildIn(ctx context.Context, id string, op steps.Op, log io.Writer, store cache.Store) (*cache.ActionResult, error) {
	if err := os.MkdirAll(e.opts.WorkDir, 0o755); err != nil {
		return nil, err
	}
	work, err := os.MkdirTemp(e.opts.WorkDir, strings.ReplaceAll(id, "/", "_")+"-")
	if err != nil {
		return nil, err
	}
	defer removeAll(e.opts.Logger, work)
	return op.Build(ctx, steps.Env{
		Work:    work,
		Log:     log,
		Store:   store,
		Environ: envList(e.allowedEnv()),
		Sandbox: e.sandbox,
		Result:  e.result,
		Logger:  e.opts.Logger,
	})
}

func envList(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// setLastKey records key as id's last key for plan --explain. A failure
// costs only the explanation of the next change, so the build goes on, but
// it is logged.
func (e *Engine) setLastKey(ctx context.Context, id, key string, preimage []byte) {
	if err := e.ac.SetLastKey(ctx, id, key, preimage); err != nil {
		e.opts.Logger.Warn("record last key", "step", id, "key", key, "err", err)
	}
}
