package main

// Publishing benchmarks: publish/s3 against `aws s3 cp` on a local
// versitygw, publish/oci against `crane push` on a local docker-registry,
// the same 1 GiB incompressible artifact for all of them:
//
//	go run ./bench -only s3,oci
//
// IMSBUILD_BENCH_S3_PART_MB and IMSBUILD_BENCH_S3_CONCURRENCY override the
// publish/s3 defaults, to try other settings.

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/cache/local"
	"github.com/imsbuild/imsbuild/engine"
	"github.com/imsbuild/imsbuild/ims"
	"github.com/imsbuild/imsbuild/internal/s3client"
	"github.com/imsbuild/imsbuild/internal/threadpin"
	"github.com/imsbuild/imsbuild/internal/toolpath"
	"github.com/imsbuild/imsbuild/publish"
	"github.com/imsbuild/imsbuild/publish/oci"
	s3pub "github.com/imsbuild/imsbuild/publish/s3"
)

const (
	artifactSize = 1 << 30
	// s3ChildEnv holds the s3Child spec of a re-executed bench binary that
	// only publishes, so that its peak RSS is the publisher's.
	s3ChildEnv = "IMSBUILD_BENCH_S3_CHILD"

	s3Access = "imsbuildbench"
	s3Secret = "imsbuildbench-secret"
	s3Region = "us-east-1"
	s3Bucket = "boot-images"
)

// artifact is the benchmark's rootfs blob in a local cache.
type artifact struct {
	CacheDir string
	Path     string // the blob file, for the raw tools
	Output   cache.Output
}

// s3Child is what a re-executed bench binary publishes.
type s3Child struct {
	Artifact    artifact
	Endpoint    string
	ImageID     string
	PartSize    int64
	Concurrency int
}

func benchS3(ctx context.Context, scratch string) {
	if spec := os.Getenv(s3ChildEnv); spec != "" {
		check(runS3Child(ctx, spec))
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	a := loadArtifact(ctx, scratch)
	store, err := local.Open(a.CacheDir)
	check(err)
	awsBin := lookTool("aws", "/usr/bin/aws")
	srv, err := startVersitygw(ctx, filepath.Join(scratch, "versitygw"))
	check(err)
	defer srv.stop()
	endpoint := "http://" + srv.addr
	client := awss3.New(awss3.Options{
		BaseEndpoint: aws.String(endpoint),
		Region:       s3Region,
		UsePathStyle: true,
		Credentials:  credentials.NewStaticCredentialsProvider(s3Access, s3Secret, ""),
	})
	_, err = client.CreateBucket(ctx, &awss3.CreateBucketInput{Bucket: aws.String(s3Bucket)})
	check(err)
	remove := func(keys ...string) {
		for _, k := range keys {
			_, err := client.DeleteObject(ctx, &awss3.DeleteObjectInput{Bucket: aws.String(s3Bucket), Key: aws.String(k)})
			check(err)
		}
	}
	child := s3Child{Artifact: a, Endpoint: endpoint, PartSize: envInt("IMSBUILD_BENCH_S3_PART_MB") << 20,
		Concurrency: int(envInt("IMSBUILD_BENCH_S3_CONCURRENCY"))}
	cfg := child.config()
	fmt.Printf("s3: versitygw on %s, %s (%s), part size %d MiB × concurrency %d, load %s\n",
		srv.addr, awsBin, toolVersion(awsBin, "--version"), orDefault(cfg.PartSize, s3pub.DefaultPartSize)>>20,
		orDefault(int64(cfg.Concurrency), s3pub.DefaultConcurrency), loadAvg())

	// Peak RSS: the same publish in a child process (untimed; bench main
	// may drop the page cache there, so warm the artifact again after it).
	child.ImageID = "rss"
	childRun, err := runChild(ctx, child)
	check(err)
	remove(objectKey(cfg, child.ImageID, ims.ArtifactRootfs), objectKey(cfg, child.ImageID, ims.ManifestFile))
	check(warm(a.Path))

	awsEnv := append(os.Environ(),
		"AWS_ACCESS_KEY_ID="+s3Access, "AWS_SECRET_ACCESS_KEY="+s3Secret, "AWS_DEFAULT_REGION="+s3Region,
		"AWS_CONFIG_FILE="+filepath.Join(scratch, "aws-config"), "AWS_SHARED_CREDENTIALS_FILE="+filepath.Join(scratch, "aws-credentials"),
		"AWS_EC2_METADATA_DISABLED=true", "AWS_PAGER=")
	i := 0
	all := interleave(pairRuns,
		func() sample {
			i++
			img := benchImage(a, fmt.Sprintf("ours-%d", i))
			s, err := timeFunc(func() error { return publishS3(ctx, store, cfg, img) })
			check(err)
			remove(objectKey(cfg, img.ID, ims.ArtifactRootfs), objectKey(cfg, img.ID, ims.ManifestFile))
			return s
		},
		func() sample {
			key := fmt.Sprintf("aws-%d/rootfs", i)
			cmd := exec.CommandContext(ctx, awsBin, "s3", "cp", a.Path, "s3://"+s3Bucket+"/"+key,
				"--endpoint-url", endpoint, "--no-progress", "--only-show-errors")
			cmd.Env = awsEnv
			s, err := timeCmd(cmd)
			check(err)
			remove(key)
			return s
		})
	ours, raw := all[0].median(), all[1].median()

	img := benchImage(a, "republish")
	check(publishS3(ctx, store, cfg, img))
	republish := median(pairRuns, func() { check(publishS3(ctx, store, cfg, img)) })

	c := fromSamples(all[0], all[1])
	fmt.Printf("s3 upload 1 GiB: imsbuild %.0f MB/s, aws s3 cp %.0f MB/s, ratio %.2f (%s; goal ≥ 1.2); peak RSS %d MB (goal < 200)\n",
		mbps(ours.wall), mbps(raw.wall), c.speedup(), c.spread(true), childRun.rssKB>>10)
	fmt.Printf("s3 detail: imsbuild %v; aws s3 cp %v, peak RSS %d MB; child process publish %v\n",
		all[0], all[1], all[1].maxRSS()>>10, childRun.wall.Round(time.Millisecond))
	fmt.Printf("s3 republish of an unchanged image: %v (goal < 1s)\n", republish.Round(time.Millisecond))
}

func benchOCI(ctx context.Context, scratch string) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Minute)
	defer cancel()
	a := loadArtifact(ctx, scratch)
	store, err := local.Open(a.CacheDir)
	check(err)
	craneBin := lookTool("crane", "")
	reg, err := startServer(ctx, filepath.Join(scratch, "registry"), lookTool("docker-registry", ""),
		func(addr, dir string) []string {
			cfg := filepath.Join(filepath.Dir(dir), "config.yml")
			check(os.WriteFile(cfg, []byte(registryConfig(addr, dir)), 0o644))
			return []string{"serve", cfg}
		}, "/v2/", func(r *http.Response) bool { return r.StatusCode == http.StatusOK })
	check(err)
	defer reg.stop()
	dir := filepath.Join(scratch, "publish", "layout")
	check(writeLayout(dir, a))
	fmt.Printf("oci: docker-registry on %s, %s %s, load %s\n", reg.addr, craneBin, toolVersion(craneBin, "version"), loadAvg())
	check(warm(a.Path))

	// Every push goes to a repository of its own, so that no push finds
	// the blob already there.
	i, j := 0, 0
	var regCPU [2]time.Duration // the registry's CPU time during the pushes of each side
	all := interleave(pairRuns,
		func() sample {
			i++
			img := benchImage(a, fmt.Sprintf("oci-%d", i))
			defer reg.addCPU(&regCPU[0])()
			s, err := timeFunc(func() error {
				p, err := oci.New(oci.Config{Repository: fmt.Sprintf("%s/bench/imsbuild-%d", reg.addr, i), Tags: []string{"v1"}, Insecure: true})
				if err != nil {
					return err
				}
				return p.Publish(ctx, engine.PublishBlobs(store), []publish.Image{img})
			})
			check(err)
			return s
		},
		func() sample {
			j++
			defer reg.addCPU(&regCPU[1])()
			cmd := exec.CommandContext(ctx, craneBin, "push", "--insecure", dir, fmt.Sprintf("%s/bench/crane-%d:v1", reg.addr, j))
			s, err := timeCmd(cmd)
			check(err)
			return s
		})
	ours, raw := all[0].median(), all[1].median()
	c := fromSamples(all[0], all[1])
	fmt.Printf("oci push 1 GiB: imsbuild %.0f MB/s, crane push %.0f MB/s, ratio %.2f (%s; goal ≥ 1.2)\n",
		mbps(ours.wall), mbps(raw.wall), c.speedup(), c.spread(true))
	fmt.Printf("oci push detail: imsbuild %v; crane push %v; docker-registry CPU per push: %v for imsbuild's, %v for crane's\n",
		all[0], all[1], (regCPU[0] / time.Duration(pairRuns)).Round(10*time.Millisecond), (regCPU[1] / time.Duration(pairRuns)).Round(10*time.Millisecond))

	// Pulls of the same blob: oci.Pull of an imsbuild push (what an
	// `import = "oci://…"` does) vs `crane pull --format oci` of a crane
	// push, each into an empty directory; both verify the digest.
	pulled := filepath.Join(scratch, "pulled")
	all = interleave(pairRuns,
		func() sample {
			emptyDir(pulled)
			s, err := timeFunc(func() error {
				_, err := oci.Pull(ctx, fmt.Sprintf("%s/bench/imsbuild-1:v1", reg.addr), pulled, true)
				return err
			})
			check(err)
			return s
		},
		func() sample {
			emptyDir(pulled)
			cmd := exec.CommandContext(ctx, craneBin, "pull", "--insecure", "--format", "oci", fmt.Sprintf("%s/bench/crane-1:v1", reg.addr), pulled)
			s, err := timeCmd(cmd)
			check(err)
			return s
		})
	os.RemoveAll(pulled)
	ours, raw = all[0].median(), all[1].median()
	c = fromSamples(all[0], all[1])
	fmt.Printf("oci pull 1 GiB: imsbuild %.0f MB/s, crane pull %.0f MB/s, ratio %.2f (%s; goal ≥ 1.0)\n",
		mbps(ours.wall), mbps(raw.wall), c.speedup(), c.spread(true))
	fmt.Printf("oci pull detail: imsbuild %v; crane pull %v\n", all[0], all[1])
}

// loadArtifact returns the 1 GiB artifact under scratch, generating it the
// first time: incompressible bytes put into a local cache, md5 computed.
func loadArtifact(ctx context.Context, scratch string) artifact {
	dir := filepath.Join(scratch, "publish")
	meta := filepath.Join(dir, "artifact.json")
	var a artifact
	if b, err := os.ReadFile(meta); err == nil {
		check(json.Unmarshal(b, &a))
		return a
	}
	c, err := local.Open(filepath.Join(dir, "cache"))
	check(err)
	fmt.Printf("generating a %d MiB artifact...\n", artifactSize>>20)
	h := md5.New()
	var seed [32]byte
	src := io.LimitReader(rand.NewChaCha8(seed), artifactSize)
	d, n, err := c.Put(ctx, io.TeeReader(src, h), "")
	check(err)
	a = artifact{
		CacheDir: c.Dir(),
		Path:     c.BlobPath(d),
		Output:   cache.Output{Digest: d, Size: n, MediaType: ims.MediaTypeRootfs, MD5: hex.EncodeToString(h.Sum(nil))},
	}
	b, err := json.Marshal(a)
	check(err)
	check(os.WriteFile(meta, b, 0o644))
	return a
}

// benchImage is a fake built image whose rootfs is a.
func benchImage(a artifact, id string) publish.Image {
	return publish.Image{
		Label: "bench", Name: "bench", Arch: "x86_64", ID: id,
		Key:     strings.Repeat("0", 64),
		Created: time.Unix(0, 0),
		Outputs: engine.PublishArtifacts(map[string]cache.Output{ims.ArtifactRootfs: a.Output}),
	}
}

func (c s3Child) config() s3pub.Config {
	return s3pub.Config{Bucket: s3Bucket, Config: s3client.Config{
		Endpoint: c.Endpoint, Region: s3Region, PathStyle: true,
		PartSize: c.PartSize, Concurrency: c.Concurrency,
		Credentials: credentials.NewStaticCredentialsProvider(s3Access, s3Secret, ""),
	}}
}

// publishS3 publishes img as the CLI would: a new publisher, one Publish.
func publishS3(ctx context.Context, store cache.Store, cfg s3pub.Config, img publish.Image) error {
	p, err := s3pub.New(ctx, cfg)
	if err != nil {
		return err
	}
	return p.Publish(ctx, engine.PublishBlobs(store), []publish.Image{img})
}

func objectKey(cfg s3pub.Config, id, name string) string { return cfg.Prefix + id + "/" + name }

// runChild re-executes the bench binary to publish c alone; the sample has
// its peak RSS (VmHWM at exit).
func runChild(ctx context.Context, c s3Child) (sample, error) {
	self, err := os.Executable()
	if err != nil {
		return sample{}, err
	}
	spec, err := json.Marshal(c)
	if err != nil {
		return sample{}, err
	}
	cmd := exec.CommandContext(ctx, self, "-only", "s3", "-size", "0", "-files", "1")
	cmd.Env = append(os.Environ(), s3ChildEnv+"="+string(spec))
	s, err := timeCmd(cmd)
	if err != nil {
		return sample{}, fmt.Errorf("publish child: %w", err)
	}
	return s, nil
}

func runS3Child(ctx context.Context, spec string) error {
	var c s3Child
	if err := json.Unmarshal([]byte(spec), &c); err != nil {
		return fmt.Errorf("%s: %w", s3ChildEnv, err)
	}
	store, err := local.Open(c.Artifact.CacheDir)
	if err != nil {
		return err
	}
	if err := publishS3(ctx, store, c.config(), benchImage(c.Artifact, c.ImageID)); err != nil {
		return err
	}
	hwm, err := readHWM("/proc/self/status")
	if err != nil {
		return err
	}
	fmt.Printf("%s%d\n", hwmLine, hwm)
	return nil
}

// sample is one timed run.
type sample struct {
	wall, cpu time.Duration // cpu: user+system of all threads
	rssKB     int64         // peak RSS of a child process
}

// samples are the runs of one contender, in the order they ran.
type samples []sample

// median returns the median wall time and the median CPU time.
func (ss samples) median() sample {
	walls, cpus := make([]time.Duration, len(ss)), make([]time.Duration, len(ss))
	for i, s := range ss {
		walls[i], cpus[i] = s.wall, s.cpu
	}
	slices.Sort(walls)
	slices.Sort(cpus)
	return sample{wall: walls[len(ss)/2], cpu: cpus[len(ss)/2]}
}

func (ss samples) maxRSS() int64 {
	var m int64
	for _, s := range ss {
		m = max(m, s.rssKB)
	}
	return m
}

// String lists the runs' wall times, then the median CPU time.
func (ss samples) String() string {
	var b strings.Builder
	for _, s := range ss {
		fmt.Fprintf(&b, "%v ", s.wall.Round(10*time.Millisecond))
	}
	fmt.Fprintf(&b, "(CPU %v)", ss.median().cpu.Round(10*time.Millisecond))
	return b.String()
}

// timeFunc runs f in this process.
func timeFunc(f func() error) (sample, error) {
	cpu0, start := cpuTime(), time.Now()
	err := f()
	return sample{wall: time.Since(start), cpu: cpuTime() - cpu0}, err
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// timeCmd runs cmd; its output is shown only when it fails. The peak RSS
// is the last VmHWM read while it ran (polled: ru_maxrss would include this
// process's RSS, as Go starts children with vfork semantics).
func timeCmd(cmd *exec.Cmd) (sample, error) {
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return sample{}, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	status := fmt.Sprintf("/proc/%d/status", cmd.Process.Pid)
	var hwm int64
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		if n, err := readHWM(status); err == nil {
			hwm = max(hwm, n)
		}
		select {
		case err := <-done:
			s := sample{wall: time.Since(start), rssKB: hwm}
			if err != nil {
				return s, fmt.Errorf("%s: %w\n%s", strings.Join(cmd.Args, " "), err, out.Bytes())
			}
			s.cpu = cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
			if n, ok := strings.CutPrefix(lastLine(out.String()), hwmLine); ok {
				s.rssKB, _ = strconv.ParseInt(n, 10, 64) // exact, from the child itself
			}
			return s, nil
		case <-tick.C:
		}
	}
}

// hwmLine prefixes the VmHWM (KiB) a publish child prints as it ends.
const hwmLine = "publish child VmHWM kB: "

// readHWM returns VmHWM in KiB from a /proc/<pid>/status file.
func readHWM(status string) (int64, error) {
	b, err := os.ReadFile(status)
	if err != nil {
		return 0, err
	}
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			return strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		}
	}
	return 0, fmt.Errorf("%s: no VmHWM", status)
}

func lastLine(s string) string {
	s = strings.TrimRight(s, "\n")
	return s[strings.LastIndexByte(s, '\n')+1:]
}

// interleave runs each f in turn, n rounds, so that changes of the machine's
// load hit all of them alike, and returns the samples of each. Every round
// starts one later (A B, B A, …), so that no contender always runs first.
func interleave(n int, fs ...func() sample) []samples {
	all := make([]samples, len(fs))
	for i := range n {
		for k := range fs {
			j := (i + k) % len(fs)
			all[j] = append(all[j], fs[j]())
		}
	}
	return all
}

func mbps(d time.Duration) float64 { return artifactSize / 1e6 / d.Seconds() }

// warm reads path once so that every timed run finds it in the page cache.
func warm(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(io.Discard, f)
	return err
}

// lookTool returns the preferred path when it exists, else name on PATH or
// in $GOPATH/bin.
func lookTool(name, preferred string) string {
	if preferred != "" {
		if _, err := os.Stat(preferred); err == nil {
			return preferred
		}
	}
	p, err := toolpath.Look(name)
	check(err)
	return p
}

func toolVersion(bin string, args ...string) string {
	out, err := exec.Command(bin, args...).CombinedOutput()
	if err != nil {
		return "version unknown"
	}
	v, _, _ := strings.Cut(strings.TrimSpace(string(out)), " ")
	return v
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func envInt(name string) int64 {
	v := os.Getenv(name)
	if v == "" {
		return 0
	}
	n, err := strconv.ParseInt(v, 10, 64)
	check(err)
	return n
}

func orDefault(v, def int64) int64 {
	if v == 0 {
		return def
	}
	return v
}

// server is a local S3 server or registry started by the benchmark.
type server struct {
	addr string // 127.0.0.1:port
	cmd  *exec.Cmd
	done chan struct{}
	log  string
}

// startServer runs bin with args(addr, dataDir) on a free loopback port and
// waits until GET path answers as ready wants. A port taken between picking
// and binding it is retried.
// startVersitygw starts versitygw on loopback with the bench's
// credentials, its data under dir.
func startVersitygw(ctx context.Context, dir string) (*server, error) {
	return startServer(ctx, dir, lookTool("versitygw", ""),
		func(addr, data string) []string {
			return []string{"--access", s3Access, "--secret", s3Secret, "--region", s3Region,
				"--port", addr, "--quiet", "posix", data}
		}, "/", func(*http.Response) bool { return true })
}

func startServer(ctx context.Context, dir, bin string, args func(addr, data string) []string, path string, ready func(*http.Response) bool) (*server, error) {
	data := filepath.Join(dir, "data")
	if err := os.MkdirAll(data, 0o755); err != nil {
		return nil, err
	}
	var errs []error
	for range 3 {
		s, err := tryStart(ctx, dir, bin, args, data, path, ready)
		if err == nil {
			return s, nil
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("start %s: %w", bin, errors.Join(errs...))
}

func tryStart(ctx context.Context, dir, bin string, args func(addr, data string) []string, data, path string, ready func(*http.Response) bool) (*server, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()
	s := &server{addr: addr, log: filepath.Join(dir, "server.log"), done: make(chan struct{})}
	logf, err := os.Create(s.log)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	s.cmd = exec.Command(bin, args(addr, data)...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "REGISTRY_") { // would override the registry's config
			s.cmd.Env = append(s.cmd.Env, kv)
		}
	}
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	release, err := threadpin.Start(s.cmd) // see threadpin: Pdeathsig is per thread
	if err != nil {
		return nil, err
	}
	go func() { _ = s.cmd.Wait(); release(); close(s.done) }()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	client := &http.Client{Timeout: time.Second}
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if resp, err := client.Get("http://" + addr + path); err == nil {
			ok := ready(resp)
			resp.Body.Close()
			if ok {
				return s, nil
			}
		}
		select {
		case <-s.done:
			b, _ := os.ReadFile(s.log)
			return nil, fmt.Errorf("exited on start: %s", bytes.TrimSpace(b))
		case <-ctx.Done():
			s.stop()
			return nil, fmt.Errorf("no answer on %s: %w", addr, ctx.Err())
		case <-tick.C:
		}
	}
}

// addCPU starts measuring the server's CPU time (user+system); the
// function it returns adds the time since to *d.
func (s *server) addCPU(d *time.Duration) func() {
	start := procCPU(s.cmd.Process.Pid)
	return func() { *d += procCPU(s.cmd.Process.Pid) - start }
}

// procCPU is the user+system time of process pid (all its threads).
func procCPU(pid int) time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	check(err)
	// The command name, in parentheses, may hold spaces: count after it.
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	utime, err := strconv.ParseInt(f[11], 10, 64)
	check(err)
	stime, err := strconv.ParseInt(f[12], 10, 64)
	check(err)
	return time.Duration(utime+stime) * time.Second / 100 // USER_HZ
}

func (s *server) stop() {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(10 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// registryConfig is a minimal distribution 2.8 configuration.
func registryConfig(addr, root string) string {
	return fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  maintenance:
    uploadpurging:
      enabled: false
http:
  addr: %s
`, root, addr)
}

// writeLayout writes, once, an OCI layout holding an image whose one layer
// is the artifact's blob, for `crane push DIR`. (A docker tarball would not
// do: crane gzips uncompressed tarball layers while pushing.) The blob is
// hard-linked into the layout when possible, so both pushes read the same
// file from the page cache.
func writeLayout(dir string, a artifact) error {
	if _, err := os.Stat(filepath.Join(dir, "index.json")); err == nil {
		return nil
	}
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	blobs := filepath.Join(dir, "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		return err
	}
	_ = os.Link(a.Path, filepath.Join(blobs, a.Output.Digest.Hex()))
	h, err := v1.NewHash(string(a.Output.Digest))
	if err != nil {
		return err
	}
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	img, err := mutate.AppendLayers(base, &fileLayer{path: a.Path, hash: h, size: a.Output.Size})
	if err != nil {
		return err
	}
	return p.AppendImage(img)
}

// fileLayer is a v1.Layer whose bytes, stored as they are, come from a file.
type fileLayer struct {
	path string
	hash v1.Hash
	size int64
}

func (l *fileLayer) Digest() (v1.Hash, error)             { return l.hash, nil }
func (l *fileLayer) DiffID() (v1.Hash, error)             { return l.hash, nil }
func (l *fileLayer) Size() (int64, error)                 { return l.size, nil }
func (l *fileLayer) MediaType() (types.MediaType, error)  { return ims.MediaTypeRootfs, nil }
func (l *fileLayer) Compressed() (io.ReadCloser, error)   { return os.Open(l.path) }
func (l *fileLayer) Uncompressed() (io.ReadCloser, error) { return os.Open(l.path) }

// benchPublish runs the s3 or oci benchmark.
func benchPublish(ctx context.Context, scratch, name string) {
	if name == "s3" {
		benchS3(ctx, scratch)
		return
	}
	benchOCI(ctx, scratch)
}
