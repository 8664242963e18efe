package engine

import (
	"context"
	"errors"

	"github.com/imsbuild/imsbuild/builders/steps"
	"github.com/imsbuild/imsbuild/cache"
)

// Plan actions.
const (
	ActionCached  = "cached"
	ActionBuild   = "build"
	ActionPublish = "publish"
)

// PlanEntry says what Build would do with a step, and why.
type PlanEntry struct {
	Step    string   `json:"step"`
	Kind    string   `json:"kind"`
	Key     string   `json:"key,omitempty"`
	Action  string   `json:"action"`
	Reasons []string `json:"reasons,omitempty"`
	Deps    []string `json:"deps,omitempty"`
}

// Plan computes keys and looks them up without building anything. With
// explain, a step to build says which inputs differ from the last key
// recorded for it.
func (e *Engine) Plan(ctx context.Context, targets []string, explain bool) ([]PlanEntry, error) {
	sel, err := e.graph.Select(targets)
	if err != nil {
		return nil, err
	}
	var plan []PlanEntry
	for _, s := range sel {
		pe := PlanEntry{Step: s.ID, Kind: s.Kind}
		for _, d := range s.Deps {
			pe.Deps = append(pe.Deps, d.ID)
		}
		if s.Kind == KindPublish {
			pe.Action = ActionPublish
			plan = append(plan, pe)
			continue
		}
		ops, err := e.opsOf(s, false)
		if err != nil {
			pe.Action = ActionBuild
			pe.Reasons = []string{err.Error()}
			plan = append(plan, pe)
			continue
		}
		if ops.prepare != nil {
			if reasons, ok := e.planPrepare(ctx, s, ops.prepare, explain); !ok {
				pe.Action = ActionBuild
				pe.Reasons = reasons
				plan = append(plan, pe)
				continue
			}
		}
		pre, err := e.preimage(ctx, ops.image)
		switch {
		case errors.Is(err, steps.ErrParentPending) && len(s.Deps) > 0:
			pe.Action = ActionBuild
			pe.Reasons = []string{"parent " + s.Deps[0].ID + " is built first; the key depends on its output"}
			plan = append(plan, pe)
			continue
		case err != nil:
			pe.Action = ActionBuild
			pe.Reasons = []string{err.Error()}
			plan = append(plan, pe)
			continue
		}
		e.seal(pre)
		key, canon, err := pre.Key()
		if err != nil {
			return nil, err
		}
		pe.Key = key
		if !e.cacheable(s) {
			pe.Action = ActionBuild
			pe.Reasons = []string{"interactive: never cached (set cache_interactive = true to cache it)"}
			plan = append(plan, pe)
			continue
		}
		r, err := e.ac.Get(ctx, key)
		switch {
		case err == nil:
			pe.Action = ActionCached
			e.setResult(s.ID, key, r)
		case errors.Is(err, cache.ErrNotFound):
			pe.Action = ActionBuild
			if explain {
				pe.Reasons = e.explain(ctx, s.ID, key, canon)
			}
		default:
			return nil, err
		}
		plan = append(plan, pe)
	}
	return plan, nil
}

func (e *Engine) explain(ctx context.Context, step, key string, canon []byte) []string {
	lastKey, lastPre, err := e.ac.LastKey(ctx, step)
	switch {
	case errors.Is(err, cache.ErrNotFound):
		return []string{"no earlier build of " + step + " in this cache"}
	case err != nil:
		return []string{"last key unreadable: " + err.Error()}
	case lastKey == key:
		return []string{"same key as the last build, but its result is no longer in the cache"}
	}
	d := DiffPreimages(lastPre, canon)
	if len(d) == 0 {
		return []string{"key changed (key schema)"}
	}
	return d
}

// planPrepare looks up the kiwi prepare of s; ok means it is cached (and
// its result is known for the image key), else reasons say why kiwi runs.
func (e *Engine) planPrepare(ctx context.Context, s *Step, op steps.Op, explain bool) (reasons []string, ok bool) {
	pre, err := e.preimage(ctx, op)
	if err != nil {
		return []string{"kiwi prepare: " + err.Error()}, false
	}
	e.seal(pre)
	key, canon, err := pre.Key()
	if err != nil {
		return []string{err.Error()}, false
	}
	r, err := e.ac.Get(ctx, key)
	if err == nil {
		e.setResult(prepareID(s), key, r)
		return nil, true
	}
	reasons = []string{"kiwi prepare runs (key " + key[:12] + ")"}
	if explain {
		for _, r := range e.explain(ctx, prepareID(s), key, canon) {
			reasons = append(reasons, "kiwi prepare: "+r)
		}
	}
	return reasons, false
}
