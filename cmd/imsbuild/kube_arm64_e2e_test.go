//go:build kubernetes

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/imsbuild/imsbuild/builders/binfmt"
	"github.com/imsbuild/imsbuild/internal/k8stest"
	"github.com/imsbuild/imsbuild/internal/testutil"
)

// kubeArm64Build is an aarch64 image imported from the busybox root with
// an arm64 probe in it (/archprobe: its GOARCH and uname -m), customized
// by a script that runs the probe and keeps its output in the image; and
// the plain import as an aarch64 image, whose step pod is unprivileged.
const kubeArm64Build = `
image "arm" {
  name   = "busybox-arm64-probe"
  arch   = "aarch64"
  import = "./roots/busybox"
  customize {
    inline = "/archprobe > /etc/archprobe"
  }
}

image "plain" {
  name   = "busybox-arm64-plain"
  arch   = "aarch64"
  import = "./roots/busybox"
}

publish "dir" "local" {
  images = [image.arm, image.plain]
  path   = "out"
}
`

// kubeArm64Example is examples/busybox made into kubeArm64Build, with
// extra appended.
func kubeArm64Example(t *testing.T, probe, extra string) string {
	t.Helper()
	dir := example(t)
	testutil.CopyExecutable(t, probe, filepath.Join(dir, "roots/busybox/archprobe"))
	if err := os.WriteFile(filepath.Join(dir, "build.ims.hcl"), []byte(kubeArm64Build+extra), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestKubernetesEmulatedAarch64: with the Kubernetes executor and a
// cluster of one amd64 node, an aarch64 image's customize step runs as a
// Job on the amd64 node (node selector kubernetes.io/arch=amd64, the pod
// privileged), where the pod's imsbuild runs the script's arm64 program
// under the node's qemu (binfmt_misc handler with the fix-binary flag);
// an aarch64 import goes there too, unprivileged. The orchestrator and
// the pods key the steps alike, naming the emulator the kernel runs, so
// the steps' keys and the published files are those of a local build of
// the same file.
func TestKubernetesEmulatedAarch64(t *testing.T) {
	e := k8stest.Cluster(t)
	if binfmt.HostArch() != "x86_64" {
		t.Skipf("emulates aarch64 on an x86_64 node; this is %s", binfmt.HostArch())
	}
	testutil.RequireQemuUser(t, "aarch64")
	e.LoadImage(t, testutil.RequireEnv(t, k8stest.BuilderImageEnv, "kubernetes"))
	env, url := kubeCache(t, "arm64")
	probe := testutil.BuildStaticFor(t, "../../builders/sandbox/testdata/archprobe", "arm64")
	wantPrivileged := map[string]bool{"image.arm": true, "image.plain": false}

	local := kubeArm64Example(t, probe, "")
	r := imsbuild(t, local, "build", "--json", ".")
	if r.code != 0 {
		t.Fatalf("local build exit %d:\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	localKeys := map[string]string{}
	for _, ev := range kubeEvents(t, r.stdout) {
		if ev.Key != "" {
			localKeys[ev.Step] = ev.Key
		}
	}

	dir := kubeArm64Example(t, probe, kubeBlock(e))
	start := time.Now()
	r = imsbuildEnv(t, dir, env, "build", "--json", "--kubeconfig", e.Kubeconfig, "--cache-to", url, ".")
	if r.code != 0 {
		t.Fatalf("kubernetes build exit %d:\n%s\n%s", r.code, tail(r.stdout, 40), r.stderr)
	}
	kubeTime := time.Since(start)
	done := map[string]kubeEvent{}
	for _, ev := range kubeEvents(t, r.stdout) {
		if _, ok := wantPrivileged[ev.Step]; !ok {
			continue
		}
		if ev.Status == "done" {
			done[ev.Step] = ev
		}
		if (ev.Status == "started" || ev.Status == "done") && !ev.Remote {
			t.Errorf("%s %s in the orchestrator, want in a Job", ev.Step, ev.Status)
		}
	}

	jobs := stepJobs(t, e)
	for step, want := range wantPrivileged {
		if k := done[step].Key; k == "" || k != localKeys[step] {
			t.Errorf("%s: the Kubernetes build's key %q, the local build's %q: want one key", step, k, localKeys[step])
		}
		j, ok := jobs[step]
		if !ok {
			t.Errorf("no Job for %s", step)
			continue
		}
		if _, err := e.WaitJob(t.Context(), j.Name, time.Minute); err != nil {
			t.Error(err)
		}
		pod, ok := jobPod(t, e, step, j.Name)
		if !ok {
			continue
		}
		if got := pod.Spec.NodeSelector[corev1.LabelArchStable]; got != "amd64" {
			t.Errorf("%s's pod: node selector %v, want kubernetes.io/arch amd64 (the cluster has no arm64 node)", step, pod.Spec.NodeSelector)
		}
		sc := pod.Spec.Containers[0].SecurityContext
		if got := privileged(sc); got != want {
			t.Errorf("%s's pod privileged = %v, want %v", step, got, want)
		}
	}
	// The node (this host) has a handler with the fix-binary flag: the
	// customize pod uses it, and registers none (node-global) of its own.
	b, _ := os.ReadFile(filepath.Join(dir, ".imsbuild/cache/logs/image.arm.log"))
	if log := string(b); !strings.Contains(log, "aarch64 binaries run emulated by") || strings.Contains(log, "registered binfmt_misc handler") {
		t.Errorf("the customize step's log does not say it ran emulated by the node's handler:\n%s", tail(log, 20))
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, "binfmt_misc") {
			t.Logf("step log: %s", line)
		}
	}

	// Each image's rootfs, its SBOM and manifest (an import has no
	// kernel); the customized one has the probe's output.
	got, want := bootImages(t, dir), bootImages(t, local)
	if len(want) != 6 || !equal(got, want) {
		t.Errorf("published boot images = %v, want the local build's %v", got, want)
	}
	var probed []string
	for rel := range got {
		if filepath.Base(rel) != "rootfs" {
			continue
		}
		out, _ := exec.Command("unsquashfs", "-cat", filepath.Join(dir, "out", "boot-images", rel), "etc/archprobe").Output()
		probed = append(probed, string(out))
	}
	sort.Strings(probed)
	if len(probed) != 2 || probed[0] != "" || probed[1] != "arm64 aarch64\n" {
		t.Errorf("/etc/archprobe of the two rootfs = %q, want none and the arm64 probe's \"arm64 aarch64\"", probed)
	}
	t.Logf("Kubernetes build %v (the customize step's Job %v, the import's %v)", kubeTime.Round(time.Millisecond),
		time.Duration(done["image.arm"].DurationMS)*time.Millisecond, time.Duration(done["image.plain"].DurationMS)*time.Millisecond)
}
