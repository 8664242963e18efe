package s3

import (
	"context"
	"fmt"
	"sync"
)

// keyLocks are per-key mutexes that a waiter can give up on when its
// context ends. Entries are removed when no one holds or waits for them.
type keyLocks struct {
	mu sync.Mutex
	m  map[string]*keyLock
}

type keyLock struct {
	ch   chan struct{} // holds a token while the lock is taken
	refs int
}

func newKeyLocks() *keyLocks { return &keyLocks{m: map[string]*keyLock{}} }

// lock takes key's lock, waiting until it is free or ctx is done.
func (l *keyLocks) lock(ctx context.Context, key string) (func(), error) {
	l.mu.Lock()
	k := l.m[key]
	if k == nil {
		k = &keyLock{ch: make(chan struct{}, 1)}
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

func (l *keyLocks) release(key string, k *keyLock) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if k.refs--; k.refs == 0 {
		delete(l.m, key)
	}
}
