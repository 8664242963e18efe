package kubernetes

import (
	"context"
	"fmt"
	"io"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/imsbuild/imsbuild/executor"
	"github.com/imsbuild/imsbuild/internal/tail"
)

// tailLines is how many log lines a JobError carries.
const tailLines = 20

// logs follows the logs of a Job's pods (the first and each retry) into
// the step's log, one writer at a time, keeping the tail for errors.
type logs struct {
	e      *Executor
	ctx    context.Context
	cancel context.CancelFunc
	tail   *tail.Lines

	mu  sync.Mutex // serializes writes to out
	out io.Writer
	// marker, when not nil, receives the SSH marker lines of a pod's
	// log (executor.SSHMarker), which never reach out.
	marker func(pod string, ep executor.SSHEndpoint, err error)
	// stored, when not nil, receives the keys of a pod's stored marker
	// lines (executor.StoredMarker), which never reach out either.
	stored  func(key string)
	started map[string]bool
	wg      sync.WaitGroup
}

func newLogs(e *Executor, out io.Writer) *logs {
	if out == nil {
		out = io.Discard
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &logs{e: e, ctx: ctx, cancel: cancel, tail: tail.New(tailLines), out: out, started: map[string]bool{}}
}

// follow streams pod's log once per pod; a retried pod is a new pod.
func (l *logs) follow(pod string) {
	if l.started[pod] {
		return
	}
	retry := len(l.started) > 0
	l.started[pod] = true
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		if retry {
			_, _ = l.write(fmt.Appendf(nil, "imsbuild: the step runs again in pod %s\n", pod))
		}
		rc, err := l.e.logStream(l.ctx, pod)
		if err != nil {
			l.e.log.Warn("follow pod log", "pod", pod, "err", err)
			return
		}
		defer rc.Close()
		var m executor.Markers
		if l.marker != nil {
			m.SSH = func(ep executor.SSHEndpoint, err error) { l.marker(pod, ep, err) }
		}
		if l.stored != nil {
			m.Stored = func(key string, err error) {
				if err == nil {
					l.stored(key)
				}
			}
		}
		w := executor.NewFilter(writerFunc(l.write), m)
		defer w.Flush()
		buf := make([]byte, 32<<10)
		for {
			n, err := rc.Read(buf)
			if n > 0 {
				_, _ = w.Write(buf[:n])
			}
			if err != nil {
				return
			}
		}
	}()
}

func (l *logs) write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, _ = l.out.Write(p)
	_, _ = l.tail.Write(p)
	return len(p), nil
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// wait waits up to d for the streams to end (the pods have exited, so
// their logs end soon), then stops them.
func (l *logs) wait(d time.Duration) {
	done := make(chan struct{})
	go func() { l.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(d):
		l.e.log.Warn("pod logs still streaming after the job finished", "wait", d)
	}
	l.stop()
}

func (l *logs) stop() {
	l.cancel()
	l.wg.Wait()
}

// podLog streams the log of pod's step container until the pod ends.
func (e *Executor) podLog(ctx context.Context, pod string) (io.ReadCloser, error) {
	req := e.client.CoreV1().Pods(e.cfg.Namespace).GetLogs(pod, &corev1.PodLogOptions{Container: Container, Follow: true})
	return req.Stream(ctx)
}
