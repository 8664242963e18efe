package jobs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/google/uuid"

	"github.com/imsbuild/imsbuild/ims/server/blob"
	"github.com/imsbuild/imsbuild/ims/server/servertest"
	"github.com/imsbuild/imsbuild/ims/server/store"
)

// newTestRunner returns a runner over a fresh store whose jobs run fn
// instead of kiwi or SSH.
func newTestRunner(t *testing.T, dir string, maxJobs int, fn func(ctx context.Context, j *jobRun) error) (*Runner, *store.Store) {
	t.Helper()
	st, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	r, err := New(Config{
		Store: st, Blobs: blob.New(s3.New(s3.Options{})), CacheDir: filepath.Join(dir, "cache"),
		MaxJobs: maxJobs, SSHHost: "127.0.0.1", Logger: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	r.run = fn
	t.Cleanup(func() { _ = r.Close() })
	return r, st
}

func newJob(jobType string, ssh bool) store.Job {
	j := store.Job{ID: uuid.NewString(), JobType: jobType, Status: "creating", SSHContainers: []store.SSHContainer{}}
	if ssh {
		j.SSHContainers = []store.SSHContainer{{Name: "customize", Status: "pending"}}
	}
	return j
}

// waitStatus polls until job id has status want.
func waitStatus(t *testing.T, st *store.Store, id, want string) store.Job {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		j, ok := st.Jobs.Get(id)
		if ok && j.Status == want {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s: status %q (found %v), want %q", id, j.Status, ok, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestQueue: at most MaxJobs run; the others wait in creating and start in
// order as slots free up; the job function's statuses reach the store and
// its outcome becomes success or error.
func TestQueue(t *testing.T) {
	var mu sync.Mutex
	var order []string
	release := map[string]chan error{}
	var running, peak atomic.Int32
	r, st := newTestRunner(t, t.TempDir(), 2, func(ctx context.Context, j *jobRun) error {
		n := running.Add(1)
		defer running.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		mu.Lock()
		order = append(order, j.job.ID)
		ch := release[j.job.ID]
		mu.Unlock()
		if err := j.setStatus("building_image"); err != nil {
			return err
		}
		return <-ch
	})
	var ids []string
	for i := range 5 {
		j := newJob("create", false)
		mu.Lock()
		release[j.ID] = make(chan error, 1)
		mu.Unlock()
		if _, err := r.Start(t.Context(), j); err != nil {
			t.Fatalf("Start %d: %v", i, err)
		}
		ids = append(ids, j.ID)
	}
	waitStatus(t, st, ids[0], "building_image")
	waitStatus(t, st, ids[1], "building_image")
	for _, id := range ids[2:] {
		if j, _ := st.Jobs.Get(id); j.Status != "creating" {
			t.Errorf("queued job %s has status %s, want creating", id, j.Status)
		}
	}
	// Free one slot at a time: two freed at once let two queued jobs
	// start together, in either order.
	release[ids[0]] <- nil
	waitStatus(t, st, ids[0], "success")
	waitStatus(t, st, ids[2], "building_image")
	release[ids[1]] <- errors.New("kiwi broke")
	waitStatus(t, st, ids[1], "error")
	waitStatus(t, st, ids[3], "building_image")
	if j, _ := st.Jobs.Get(ids[4]); j.Status != "creating" {
		t.Errorf("queued job %s has status %s with both slots taken, want creating", ids[4], j.Status)
	}
	for _, id := range ids[2:] {
		release[id] <- nil
	}
	for _, id := range ids[2:] {
		waitStatus(t, st, id, "success")
	}
	if p := peak.Load(); p != 2 {
		t.Errorf("peak running jobs = %d, want 2", p)
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(order[2:]) != fmt.Sprint(ids[2:]) {
		t.Errorf("queued jobs started in order %v, want %v", order[2:], ids[2:])
	}
	rc, err := r.Log(ids[1])
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, _ := io.ReadAll(rc)
	if !strings.Contains(string(b), "status building_image") || !strings.Contains(string(b), "job failed: kiwi broke") {
		t.Errorf("log of the failed job:\n%s", b)
	}
}

// TestCancel: Cancel of a running job ends its context and returns only
// once its cleanup is done, and leaves a deleted record deleted; Cancel of
// a queued job means it never runs.
func TestCancel(t *testing.T) {
	var cleaned atomic.Bool
	started := make(chan string, 4)
	var ran sync.Map
	r, st := newTestRunner(t, t.TempDir(), 1, func(ctx context.Context, j *jobRun) error {
		ran.Store(j.job.ID, true)
		started <- j.job.ID
		<-ctx.Done()
		time.Sleep(50 * time.Millisecond) // cleanup takes a while
		cleaned.Store(true)
		return ctx.Err()
	})
	a, b, c := newJob("create", false), newJob("create", false), newJob("create", false)
	for _, j := range []store.Job{a, b, c} {
		if _, err := r.Start(t.Context(), j); err != nil {
			t.Fatal(err)
		}
	}
	if id := <-started; id != a.ID {
		t.Fatalf("first job to run = %s, want %s", id, a.ID)
	}
	r.Cancel(b.ID) // queued
	if err := st.Jobs.Remove(b.ID); err != nil {
		t.Fatal(err)
	}
	r.Cancel(a.ID) // running
	if !cleaned.Load() {
		t.Error("Cancel returned before the job cleaned up")
	}
	if err := st.Jobs.Remove(a.ID); err != nil {
		t.Fatal(err)
	}
	if id := <-started; id != c.ID {
		t.Errorf("next job to run = %s, want %s (the cancelled queued job must not run)", id, c.ID)
	}
	if _, ok := ran.Load(b.ID); ok {
		t.Error("the cancelled queued job ran")
	}
	if _, ok := st.Jobs.Get(a.ID); ok {
		t.Error("the cancelled job's record came back")
	}
	r.Cancel(uuid.NewString()) // unknown: no effect
}

// TestRestart: jobs a dead server left unfinished are error after New, and
// their logs say why; finished jobs keep their status.
func TestRestart(t *testing.T) {
	dir := t.TempDir()
	st, err := store.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{}
	for status, after := range map[string]string{"building_image": "error", "creating": "error", "waiting_on_user": "error", "success": "success", "error": "error"} {
		j := newJob("create", status == "waiting_on_user")
		j.Status = status
		if err := st.Jobs.Put(j); err != nil {
			t.Fatal(err)
		}
		want[j.ID] = after
	}
	st.Close()
	r, st := newTestRunner(t, dir, 1, nil)
	for id, status := range want {
		j, _ := st.Jobs.Get(id)
		if j.Status != status {
			t.Errorf("job %s after restart: status %s, want %s", id, j.Status, status)
		}
		for _, c := range j.SSHContainers { // IMS never changes it
			if c.Status != "pending" {
				t.Errorf("job %s after restart: ssh container status %s, want pending", id, c.Status)
			}
		}
		rc, err := r.Log(id)
		if status == "error" && err == nil {
			b, _ := io.ReadAll(rc)
			rc.Close()
			if !strings.Contains(string(b), "server stopped") {
				t.Errorf("log of orphaned job %s = %q", id, b)
			}
		}
	}
}

// TestSSHPorts: jobs with SSH containers get distinct ports of the range,
// in connection_info; a full range refuses the job without storing it; a
// finished job's port is free again.
func TestSSHPorts(t *testing.T) {
	done := make(chan struct{})
	r, st := newTestRunner(t, t.TempDir(), 5, func(ctx context.Context, j *jobRun) error {
		select {
		case <-done:
		case <-ctx.Done():
		}
		return nil
	})
	lo := servertest.FreePorts(t, 2)
	r.cfg.SSHPortFirst, r.cfg.SSHPortLast = lo, lo+1
	a, err := r.Start(t.Context(), newJob("customize", true))
	if err != nil {
		t.Fatal(err)
	}
	b, err := r.Start(t.Context(), newJob("customize", true))
	if err != nil {
		t.Fatal(err)
	}
	pa := a.SSHContainers[0].ConnectionInfo["customer_access"]
	pb := b.SSHContainers[0].ConnectionInfo["cluster.local"]
	if pa.Host != "127.0.0.1" || pa.Port == pb.Port || pa.Port < lo || pa.Port > lo+1 || pb.Port < lo || pb.Port > lo+1 {
		t.Errorf("connection_info %v and %v, want distinct ports of %d-%d on 127.0.0.1", pa, pb, lo, lo+1)
	}
	if got, want := (&jobRun{sshHost: "127.0.0.1", sshPort: pa.Port}).sshListen(), "127.0.0.1:"+strconv.Itoa(pa.Port); got != want {
		t.Errorf("sshListen = %s, want %s", got, want)
	}
	if got := (&jobRun{sshHost: "ims.example.com", sshPort: 2222}).sshListen(); got != ":2222" {
		t.Errorf("sshListen of a host name = %s, want :2222", got)
	}
	if stored, _ := st.Jobs.Get(a.ID); stored.SSHContainers[0].ConnectionInfo["customer_access"] != pa {
		t.Errorf("stored connection_info = %v, want %v", stored.SSHContainers[0].ConnectionInfo, pa)
	}
	c := newJob("customize", true)
	if _, err := r.Start(t.Context(), c); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("third job on two ports: err = %v", err)
	}
	if _, ok := st.Jobs.Get(c.ID); ok {
		t.Error("a refused job was stored")
	}
	if _, err := r.Start(t.Context(), newJob("create", false)); err != nil {
		t.Errorf("a job without SSH needs no port: %v", err)
	}
	close(done)
	waitStatus(t, st, a.ID, "success")
	waitStatus(t, st, b.ID, "success")
	// execute releases the port right after setting the status.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := r.Start(t.Context(), newJob("customize", true)); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("ports not released: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestClose: jobs still running or queued when the server stops end in
// error.
func TestClose(t *testing.T) {
	started := make(chan struct{})
	r, st := newTestRunner(t, t.TempDir(), 1, func(ctx context.Context, j *jobRun) error {
		close(started)
		<-ctx.Done()
		return ctx.Err()
	})
	a, b := newJob("create", false), newJob("create", false)
	for _, j := range []store.Job{a, b} {
		if _, err := r.Start(t.Context(), j); err != nil {
			t.Fatal(err)
		}
	}
	<-started
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{a.ID, b.ID} {
		if j, _ := st.Jobs.Get(id); j.Status != "error" {
			t.Errorf("job %s after Close: %s, want error", id, j.Status)
		}
	}
	if _, err := r.Start(t.Context(), newJob("create", false)); err == nil {
		t.Error("Start after Close succeeded")
	}
}

func TestLogIDs(t *testing.T) {
	r, _ := newTestRunner(t, t.TempDir(), 1, nil)
	for _, id := range []string{"../v2.1_images.json", "", "x", strings.Repeat("a", 36), "../../../../../../etc/passwd"} {
		if _, err := r.Log(id); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("Log(%q) = %v, want not exist", id, err)
		}
	}
}
