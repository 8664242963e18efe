package engine

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/semaphore"
)

// Build runs the steps needed for targets (all when empty): independent
// steps in parallel up to Jobs, each after its dependencies. The first
// failure stops scheduling new steps unless KeepGoing. A cancelled ctx kills
// running steps; Build then returns an error wrapping ctx.Err().
func (e *Engine) Build(ctx context.Context, targets []string) error {
	defer e.closePackageProxy()
	steps, err := e.graph.Select(targets)
	if e.opts.Check {
		steps, err = e.selectCheck(targets)
	}
	if err != nil {
		return err
	}
	for _, s := range steps {
		e.emit(Event{Step: s.ID, Status: StatusPlanned})
	}
	done := make(map[*Step]chan struct{}, len(steps))
	for _, s := range steps {
		done[s] = make(chan struct{})
	}
	var (
		mu      sync.Mutex
		failed  = map[*Step]bool{}
		errs    []error
		stop    atomic.Bool
		sem     = semaphore.NewWeighted(int64(e.opts.Jobs))
		g       errgroup.Group
		isBad   = func(s *Step) bool { mu.Lock(); defer mu.Unlock(); return failed[s] }
		markBad = func(s *Step, err error) {
			mu.Lock()
			defer mu.Unlock()
			failed[s] = true
			if err != nil {
				errs = append(errs, err)
			}
		}
	)
	for _, s := range steps {
		g.Go(func() error {
			defer close(done[s])
			for _, d := range s.Deps {
				<-done[d]
			}
			skip := func(reason string) error {
				markBad(s, nil)
				e.emit(Event{Step: s.ID, Status: StatusSkipped, Reason: reason})
				return nil
			}
			for _, d := range s.Deps {
				if isBad(d) {
					return skip(d.ID + " did not complete")
				}
			}
			if err := sem.Acquire(ctx, 1); err != nil {
				return skip("cancelled")
			}
			defer sem.Release(1)
			switch {
			case ctx.Err() != nil:
				return skip("cancelled")
			case stop.Load():
				return skip("build stopped after a failure")
			}
			start := time.Now()
			cached, bytes, err := e.runStep(ctx, s)
			ev := Event{Step: s.ID, Key: e.key(s.ID), DurationMS: time.Since(start).Milliseconds(), Bytes: bytes}
			if err != nil && onlyDiffs(err) {
				// Reported by the check; not a failure: dependents are
				// checked against the cached result.
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
				return nil
			}
			if err != nil {
				if _, notBuilt := errors.AsType[*NotBuiltError](err); !e.opts.KeepGoing && !notBuilt {
					stop.Store(true)
				}
				markBad(s, err)
				ev.Status, ev.Error = StatusFailed, err.Error()
				ev.Remote = e.opts.Executor != nil && s.Kind != KindPublish
				if ctx.Err() != nil { // killed by the cancellation, whatever err says
					ev.Status = StatusCancelled
				}
				var se *StepError
				if errors.As(err, &se) {
					ev.LogPath = se.LogPath
				}
				e.emit(ev)
				return nil
			}
			if !cached {
				ev.Status, ev.Remote = StatusDone, e.opts.Executor != nil && s.Kind != KindPublish
				e.emit(ev)
			}
			return nil
		})
	}
	_ = g.Wait()
	if ctx.Err() != nil {
		return fmt.Errorf("build cancelled: %w", ctx.Err())
	}
	return errors.Join(errs...)
}

// runStep runs one step and reports whether it came from the cache (or
// reported its own outcome, as a check does) and how many bytes it produced.
func (e *Engine) runStep(ctx context.Context, s *Step) (cached bool, bytes int64, err error) {
	if e.opts.Check {
		return true, 0, e.checkStep(ctx, s)
	}
	if s.Kind == KindPublish {
		return false, 0, e.runPublish(ctx, s)
	}
	cached, err = e.runImage(ctx, s)
	if err != nil {
		return false, 0, err
	}
	if e.opts.Signer != nil {
		if err := e.signProvenance(ctx, s); err != nil {
			return false, 0, err
		}
	}
	if r := e.result(s.ID); r != nil { // nil after a BuildStep of s's prepare
		for _, o := range r.Outputs {
			bytes += o.Size
		}
	}
	return cached, bytes, nil
}

// onlyDiffs reports an error made of *DiffErrors only (a check's findings).
func onlyDiffs(err error) bool {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		for _, e := range j.Unwrap() {
			if !onlyDiffs(e) {
				return false
			}
		}
		return true
	}
	_, ok := err.(*DiffError)
	return ok
}
