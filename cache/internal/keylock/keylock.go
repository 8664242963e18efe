package keylock

import (
	"context"
	"fmt"
	"sync"
)

// Map holds one mutex per key. Entries are removed when no one holds or
// waits for them. The zero value is not usable; call New.
type Map struct {
	mu sync.Mutex
	m  map[string]*entry
}

type entry struct {
	ch   chan struct{} // holds a token while the lock is taken
	refs int
}

// New returns an empty Map.
func New() *Map { return &Map{m: map[string]*entry{}} }

// Lock takes key's lock, waiting until it is free or ctx is done. The
// returned unlock may be called more than once.
func (l *Map) Lock(ctx context.Context, key string) (unlock func(), err error) {
	l.mu.Lock()
	k := l.m[key]
	if k == nil {
		k = &entry{ch: make(chan struct{}, 1)}
		l.m[key] = k
	}
	k.refs++
	l.mu.Unlock()
	select {
	case k.ch <- struct{}{}:
		var once sync.Once
		return func() {
			once.Do(func() {
				<-k.ch
				l.release(key, k)
			})
		}, nil
	case <-ctx.Done():
		l.release(key, k)
		return nil, fmt.Errorf("lock %s: %w", key, context.Cause(ctx))
	}
}

func (l *Map) release(key string, k *entry) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if k.refs--; k.refs == 0 {
		delete(l.m, key)
	}
}

// Len returns the number of keys held or waited for.
func (l *Map) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}
