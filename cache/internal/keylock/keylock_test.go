package keylock

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestLockExcludes(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	l := New()
	var inside, most atomic.Int32
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			unlock, err := l.Lock(ctx, "k")
			if err != nil {
				t.Error(err)
				return
			}
			n := inside.Add(1)
			for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
			}
			inside.Add(-1)
			unlock()
			unlock() // a second call does nothing
		})
	}
	wg.Wait()
	if most.Load() != 1 {
		t.Errorf("%d holders at once, want 1", most.Load())
	}
	if n := l.Len(); n != 0 {
		t.Errorf("Len() = %d after all unlocked, want 0", n)
	}
}

func TestLockKeysIndependent(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	l := New()
	unlockA, err := l.Lock(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	defer unlockA()
	unlockB, err := l.Lock(ctx, "b")
	if err != nil {
		t.Fatalf("Lock(b) while a is held = %v", err)
	}
	unlockB()
}

func TestLockGivesUp(t *testing.T) {
	l := New()
	unlock, err := l.Lock(t.Context(), "k")
	if err != nil {
		t.Fatal(err)
	}
	cause := errors.New("step cancelled")
	ctx, cancel := context.WithCancelCause(t.Context())
	cancel(cause)
	if _, err := l.Lock(ctx, "k"); !errors.Is(err, cause) {
		t.Errorf("Lock(held, cancelled ctx) = %v, want %v", err, cause)
	}
	if n := l.Len(); n != 1 {
		t.Errorf("Len() = %d after a waiter gave up, want 1 (the holder)", n)
	}
	unlock()
	if n := l.Len(); n != 0 {
		t.Errorf("Len() = %d after unlock, want 0", n)
	}
}
