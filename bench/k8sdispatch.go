package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"strconv"
	"time"

	"golang.org/x/sync/errgroup"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes/fake"
	k8stesting "k8s.io/client-go/testing"

	"github.com/imsbuild/imsbuild/executor"
	"github.com/imsbuild/imsbuild/executor/kubernetes"
)

var k8sSteps, k8sJobs int

// benchK8sDispatch measures what the Kubernetes executor costs the
// orchestrator per step: create the Job (and its Secret), see it finish
// through the informers, return. The cluster is client-go's fake
// clientset whose Jobs are born Complete, so only the orchestrator's side
// is timed (issue 14: < 5 ms per step for a 1,000-step graph).
func benchK8sDispatch(ctx context.Context, steps, jobs int) {
	// NewSimpleClientset: NewClientset's field-managed tracker builds a
	// REST mapper on every call, which is most of the CPU and not the
	// orchestrator's.
	cs := fake.NewSimpleClientset() //nolint:staticcheck // see above

	cs.PrependReactor("create", "jobs", func(a k8stesting.Action) (bool, runtime.Object, error) {
		j := a.(k8stesting.CreateAction).GetObject().(*batchv1.Job)
		j.Status.Conditions = []batchv1.JobCondition{{Type: batchv1.JobComplete, Status: corev1.ConditionTrue}}
		return false, nil, nil
	})
	e, err := kubernetes.New(cs, kubernetes.Config{Namespace: "bench", Image: "builder:bench"})
	check(err)
	defer e.Close()
	cpu0 := cpuTime()
	start := time.Now()
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(jobs)
	for i := range steps {
		sum := sha256.Sum256([]byte(strconv.Itoa(i)))
		s := executor.Step{
			BuildID: "bench", Step: fmt.Sprintf("image.i%d", i), Key: hex.EncodeToString(sum[:]),
			Args:      []string{"internal", "run-step", "--step", fmt.Sprintf("image.i%d", i)},
			Env:       map[string]string{"TMPDIR": "/var/tmp"},
			SecretEnv: map[string]string{"AWS_SECRET_ACCESS_KEY": "bench"},
			Log:       io.Discard,
		}
		g.Go(func() error { return e.Run(gctx, s) })
	}
	check(g.Wait())
	d, cpu := time.Since(start), cpuTime()-cpu0
	fmt.Printf("k8s-dispatch: %d steps, %d at once, fake clientset: %v wall, %.2f ms/step wall, %.2f ms/step CPU (fake API server included; goal < 5 ms), load %s\n",
		steps, jobs, d.Round(time.Millisecond), float64(d.Microseconds())/1000/float64(steps),
		float64(cpu.Microseconds())/1000/float64(steps), loadAvg())
}
