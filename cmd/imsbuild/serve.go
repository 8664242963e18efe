package main

import (
	"context"
	"crypto"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/hashicorp/hcl/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"

	"github.com/imsbuild/imsbuild/cache/tiered"
	"github.com/imsbuild/imsbuild/executor"
	"github.com/imsbuild/imsbuild/ims/server"
	"github.com/imsbuild/imsbuild/ims/server/blob"
	"github.com/imsbuild/imsbuild/ims/server/jobs"
	"github.com/imsbuild/imsbuild/ims/server/store"
	"github.com/imsbuild/imsbuild/internal/s3client"
	"github.com/imsbuild/imsbuild/spec"
)

// serveFlags are imsbuild serve's flags.
type serveFlags struct {
	listen         string
	dataDir        string
	s3Endpoint     string
	s3Region       string
	s3PathStyle    bool
	s3CABundle     string
	imageBucket    string
	recipeBucket   string
	sshHost        string
	sshPortRange   string
	maxJobs        int
	cacheDir       string
	caCerts        []string
	tokenFile      string
	tlsCert        string
	tlsKey         string
	insecureNoAuth bool
	signingKey     string
	signer         crypto.Signer // read from signingKey by runServe
	executor       string        // --executor: kubernetes, local, none or ""
	executorConfig string        // a build directory whose executor block configures the executor
	kube           kubeFlags
	builderImage   string
	cacheTo        string
}

func newServeCmd() *cobra.Command {
	f := &serveFlags{}
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Serve the IMS REST API (records in IMS's data files, artifacts in S3)",
		Long: `serve runs an IMS-compatible REST service: IMS v3 at /v3, v2 at /v2 and at the
unversioned root, all also under /apis/ims (so craycli and the IMS job tooling can talk to
it), plus /version, /healthz/ready, /healthz/live and /metrics (Prometheus).

Records live in IMS's own data files in --data-dir (v2.1_images.json, v2.2_recipes.json, …),
so a real IMS data directory can be copied in and back. Each change is written atomically
(fsync) before it is answered. One server per data directory.

Artifacts live in S3: --s3-endpoint (credentials from the AWS SDK chain), or, without it, an
embedded versitygw that serves <data-dir>/s3/data on a free 127.0.0.1 port with generated
credentials in <data-dir>/s3/credentials.json (mode 0600). Buckets: boot-images and ims.

Jobs run on the build engine over the cache in --cache-dir (default <data-dir>/cache), so a
second create job of an unchanged recipe is a cache hit: at most --max-jobs at once, the
others wait in status creating. A job's SSH environment (customize, or a failed create with
enable_debug) listens on a port of --ssh-port-range; connection_info names it with --ssh-host
(default: the listen host); with --executor kubernetes it opens in a Job's pod instead.
GET /v3/jobs/{id}/log serves a job's log. DELETE of a job stops it and removes what it made;
a job that was running when the server stopped is error after the next start. --ca-cert certificates are trusted while packages install and added to images.
With --signing-key, every job image gets a signed SLSA provenance beside its artifacts
(s3://boot-images/<id>/provenance.intoto.jsonl; imsbuild verify checks it).

With --executor kubernetes, every step a create job misses (the kiwi prepare, the pack) runs
as a Kubernetes Job of the builder image (--builder-image) in --namespace, through the remote
cache of --cache-to (S3 credentials from the AWS SDK chain, passed to the Jobs as a Secret),
as imsbuild build --executor kubernetes runs them (--executor-config DIR: the executor block of
the build in DIR configures the rest, service account, node selector, resources…); the job's kubernetes_job and
kubernetes_namespace name the first Job it started, and kubernetes_configmap and
kubernetes_pvc are empty (imsbuild creates no such object). A customize job runs as one Job
whose pod holds its SSH environment, reached through a Service named like the Job:
connection_info and kubernetes_service name it once the pod waits; so does the debug shell
of a create job with enable_debug, in the failed step's pod.

Security: with --token-file every route but /healthz/* needs "Authorization: Bearer <token>".
A listen address other than loopback needs --token-file (or --insecure-no-auth).`,
		Example: `  imsbuild serve --data-dir /var/lib/imsbuild/ims
  imsbuild serve --listen 0.0.0.0:9000 --data-dir /srv/ims --token-file /etc/imsbuild/token \
      --tls-cert /etc/imsbuild/tls.crt --tls-key /etc/imsbuild/tls.key \
      --s3-endpoint https://rgw.example:8080 --s3-path-style
  imsbuild serve --data-dir /srv/ims --executor kubernetes --namespace ims \
      --builder-image registry.example/imsbuild-builder:0.1 \
      --cache-to 's3://imsbuild-cache/serve?endpoint=https://rgw.example:8080&path_style=true'`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return runServe(cmd, f) },
	}
	fl := cmd.Flags()
	fl.StringVar(&f.listen, "listen", "127.0.0.1:9000", "address to listen on")
	fl.StringVar(&f.dataDir, "data-dir", "", "directory of IMS's data files (required)")
	fl.StringVar(&f.s3Endpoint, "s3-endpoint", "", "S3 endpoint URL (default: an embedded versitygw under --data-dir)")
	fl.StringVar(&f.s3Region, "s3-region", "us-east-1", "S3 region")
	fl.BoolVar(&f.s3PathStyle, "s3-path-style", false, "address S3 buckets by path, not by host name")
	fl.StringVar(&f.s3CABundle, "s3-ca-bundle", "", "PEM file of CAs for the S3 endpoint's TLS")
	fl.StringVar(&f.imageBucket, "s3-image-bucket", "boot-images", "bucket of image artifacts")
	fl.StringVar(&f.recipeBucket, "s3-recipe-bucket", "ims", "bucket of recipe archives")
	fl.StringVar(&f.sshHost, "ssh-host", "", "host name job SSH shells are reached at (jobs)")
	fl.StringVar(&f.sshPortRange, "ssh-port-range", "2222-2299", "ports for job SSH shells, A-B (jobs)")
	fl.IntVar(&f.maxJobs, "max-jobs", 2, "jobs run at a time (jobs)")
	fl.StringVar(&f.cacheDir, "cache-dir", "", "imsbuild cache of the jobs (default <data-dir>/cache)")
	fl.StringArrayVar(&f.caCerts, "ca-cert", nil, "CA certificate (PEM) jobs add to images, as IMS's build-ca-rpm (repeatable)")
	fl.StringVar(&f.tokenFile, "token-file", "", "file holding the bearer token clients must send")
	fl.StringVar(&f.tlsCert, "tls-cert", "", "TLS certificate (PEM); with --tls-key, serve HTTPS")
	fl.StringVar(&f.tlsKey, "tls-key", "", "TLS private key (PEM)")
	fl.BoolVar(&f.insecureNoAuth, "insecure-no-auth", false, "allow a non-loopback --listen without --token-file")
	fl.StringVar(&f.executor, "executor", "", "build the missing steps of jobs elsewhere: kubernetes (a Job per step; a customize job's SSH environment in its pod), local (a child process per step; SSH jobs in this process), none (in this process; the default)")
	fl.StringVar(&f.executorConfig, "executor-config", "", "a build directory whose imsbuild { executor \"kubernetes\" { … } } block configures the executor (image, service_account, node_selector, …), as for build; the flags override it")
	fl.StringVar(&f.kube.kubeconfig, "kubeconfig", "", "the kubeconfig of the kubernetes executor (default: in-cluster, then ~/.kube/config)")
	fl.StringVar(&f.kube.namespace, "namespace", "", "the namespace of the kubernetes executor's Jobs (default: default)")
	fl.StringVar(&f.builderImage, "builder-image", "", "the image the kubernetes executor's Jobs run (make builder-image builds one)")
	fl.StringVar(&f.cacheTo, "cache-to", "", "remote cache every job builds through and writes to, s3://bucket/prefix[?endpoint=URL&path_style=true] or oci://registry/repo (required with --executor)")
	fl.StringVar(&f.signingKey, "signing-key", "", "sign each job image's provenance with this private key (PEM, or cosign's with $COSIGN_PASSWORD); uploaded beside the image")
	return cmd
}

// check validates the flags together; every problem is a usage error.
func (f *serveFlags) check() error {
	var errs []error
	if f.dataDir == "" {
		errs = append(errs, errors.New("--data-dir is required"))
	}
	host, _, err := net.SplitHostPort(f.listen)
	if err != nil {
		errs = append(errs, fmt.Errorf("--listen %q: %w", f.listen, err))
	} else if !isLoopback(host) && f.tokenFile == "" && !f.insecureNoAuth {
		errs = append(errs, fmt.Errorf("--listen %s is reachable from other hosts: give --token-file, or --insecure-no-auth to serve without authentication", f.listen))
	}
	if (f.tlsCert == "") != (f.tlsKey == "") {
		errs = append(errs, errors.New("--tls-cert and --tls-key go together"))
	}
	if _, _, err := parsePortRange(f.sshPortRange); err != nil {
		errs = append(errs, err)
	}
	if f.maxJobs < 1 {
		errs = append(errs, fmt.Errorf("--max-jobs %d: must be at least 1", f.maxJobs))
	}
	if f.imageBucket == "" || f.recipeBucket == "" {
		errs = append(errs, errors.New("bucket names must not be empty"))
	}
	switch f.executor {
	case "", "none", "local":
	case "kubernetes":
		if f.builderImage == "" && f.executorConfig == "" {
			errs = append(errs, errors.New("--executor kubernetes needs the builder image its Jobs run: give --builder-image registry.example/imsbuild-builder:… (make builder-image builds one)"))
		}
	default:
		errs = append(errs, fmt.Errorf("--executor %q: want kubernetes, local or none", f.executor))
	}
	return errors.Join(errs...)
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func parsePortRange(s string) (int, int, error) {
	a, b, ok := strings.Cut(s, "-")
	lo, err1 := strconv.Atoi(a)
	hi, err2 := strconv.Atoi(b)
	if !ok || err1 != nil || err2 != nil || lo < 1 || hi > 65535 || lo > hi {
		return 0, 0, fmt.Errorf("--ssh-port-range %q: want A-B with 1 <= A <= B <= 65535", s)
	}
	return lo, hi, nil
}

func readToken(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("token file: %w", err)
	}
	tok := strings.TrimSpace(string(data))
	if tok == "" || strings.ContainsAny(tok, " \t\r\n") {
		return "", fmt.Errorf("token file %s: want one token on one line", path)
	}
	return tok, nil
}

func runServe(cmd *cobra.Command, f *serveFlags) error {
	if err := f.check(); err != nil {
		return usageError{err}
	}
	if f.signingKey != "" {
		var summary, detail string
		if f.signer, summary, detail = readSigner(f.signingKey, os.Environ(), ""); summary != "" {
			return usageError{fmt.Errorf("--signing-key %s: %s: %s", f.signingKey, strings.ToLower(summary), detail)}
		}
	}
	ctx := cmd.Context()
	out := cmd.OutOrStdout()
	log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelInfo}))
	var token string
	if f.tokenFile != "" {
		var err error
		if token, err = readToken(f.tokenFile); err != nil {
			return usageError{err}
		}
	}
	// Before anything starts: a usage error of the executor ends here.
	remote, exec, err := openJobExecutor(ctx, f)
	if err != nil {
		return err
	}
	if cl, ok := exec.(io.Closer); ok {
		defer cl.Close() // after the runner's Close: no job uses it then
	}
	st, err := store.Open(f.dataDir)
	if err != nil {
		return err
	}
	defer st.Close()

	blobs, stopS3, err := openS3(ctx, f, out)
	if err != nil {
		return err
	}
	defer stopS3()

	reg := prometheus.NewRegistry()
	runner, err := newJobRunner(f, st, blobs, reg, log, remote, exec)
	if err != nil {
		return err
	}
	// After the HTTP server stopped: the jobs still running end in error.
	defer func() {
		if err := runner.Close(); err != nil {
			log.Error("stop jobs", "err", err)
		}
	}()
	srv, err := server.New(server.Config{Store: st, Blobs: blobs, Version: version, Token: token, Logger: log,
		Registry: reg, Runner: runner})
	if err != nil {
		return err
	}
	hs := &http.Server{
		Handler:           srv,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		WriteTimeout:      5 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	scheme := "http"
	if f.tlsCert != "" {
		cert, err := tls.LoadX509KeyPair(f.tlsCert, f.tlsKey)
		if err != nil {
			return usageError{fmt.Errorf("tls: %w", err)}
		}
		hs.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		scheme = "https"
	}
	l, err := net.Listen("tcp", f.listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	if hs.TLSConfig != nil {
		l = tls.NewListener(l, hs.TLSConfig)
	}
	auth := "none (loopback only)"
	switch {
	case token != "":
		auth = "bearer token from " + f.tokenFile
	case f.insecureNoAuth:
		auth = "none (--insecure-no-auth)"
	}
	fmt.Fprintf(out, "imsbuild serve: listening on %s://%s (IMS API at /apis/ims/v3 and /v3; data in %s; auth: %s)\n",
		scheme, l.Addr(), st.Dir(), auth)
	log.Info("jobs", "max_jobs", f.maxJobs, "ssh_host", runner.SSHHost(), "ssh_port_range", f.sshPortRange, "cache_dir", f.cacheDir,
		"executor", f.executor, "cache_to", f.cacheTo)

	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(l) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	// SIGTERM or SIGINT: finish the requests in flight, then stop.
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 20*time.Second)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	fmt.Fprintln(out, "imsbuild serve: stopped")
	return nil
}

// openJobExecutor opens the remote cache of --cache-to and the executor
// of --executor, as build opens them (remote.go, runstep.go, kubeexec.go);
// nil when not given.
func openJobExecutor(ctx context.Context, f *serveFlags) (tiered.Remote, executor.Executor, error) {
	cfg := &spec.Config{}
	if f.executorConfig != "" {
		var diags hcl.Diagnostics
		cfg, diags = spec.LoadContext(ctx, f.executorConfig, spec.Options{Environ: os.Environ()})
		if err := writeDiagnostics(cfg.Files, diags); err != nil {
			return nil, nil, err
		}
		if diags.HasErrors() {
			return nil, nil, reportedError{exitUsage}
		}
	}
	if f.builderImage != "" {
		cfg.Settings.Executor.Image = f.builderImage
	}
	name, err := executorName(f.executor, cfg)
	if err != nil {
		return nil, nil, err
	}
	if name != "" && f.cacheTo == "" {
		// Checked before the executor connects anywhere, as build does.
		return nil, nil, usageError{fmt.Errorf("the %s executor builds steps elsewhere and needs a remote cache to share them: give --cache-to s3://bucket/prefix (or oci://registry/repo)", name)}
	}
	if f.cacheTo == "" {
		return nil, nil, nil
	}
	remote, err := openRemote(ctx, f.cacheTo)
	if err != nil {
		return nil, nil, err
	}
	exec, err := newExecutor(name, cfg, f.kube)
	if err != nil {
		return nil, nil, err
	}
	return remote, exec, nil
}

// newJobRunner returns the runner of the jobs, over the build cache of
// --cache-dir (default <data-dir>/cache), with remote (--cache-to) behind
// it and exec building the create jobs' steps when they are not nil.
func newJobRunner(f *serveFlags, st *store.Store, blobs *blob.Store, reg *prometheus.Registry, log *slog.Logger, remote tiered.Remote, exec executor.Executor) (*jobs.Runner, error) {
	if f.cacheDir == "" {
		f.cacheDir = filepath.Join(f.dataDir, "cache")
	}
	cacheDir, err := filepath.Abs(f.cacheDir)
	if err != nil {
		return nil, usageError{err}
	}
	var certs []string
	for _, file := range f.caCerts {
		pem, err := os.ReadFile(file)
		if err != nil {
			return nil, usageError{fmt.Errorf("--ca-cert: %w", err)}
		}
		certs = append(certs, string(pem))
	}
	remoteURL := ""
	if remote != nil {
		remoteURL = f.cacheTo
	}
	lo, hi, _ := parsePortRange(f.sshPortRange) // checked by check
	host := f.sshHost
	if host == "" {
		host = sshHostOf(f.listen)
	}
	return jobs.New(jobs.Config{
		Store: st, Blobs: blobs, CacheDir: cacheDir, ImageBucket: f.imageBucket,
		MaxJobs: f.maxJobs, SSHHost: host, SSHPortFirst: lo, SSHPortLast: hi, CACerts: certs,
		Environ: os.Environ(), Registry: reg, Logger: log, Signer: f.signer, Version: version,
		Remote: remote, RemoteURL: remoteURL, Executor: exec,
	})
}

// sshHostOf is the default --ssh-host: the listen host, or this machine's
// name when the server listens on every address.
func sshHostOf(listen string) string {
	host, _, _ := net.SplitHostPort(listen)
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		if name, err := os.Hostname(); err == nil {
			return name
		}
	}
	return host
}

// openS3 connects to --s3-endpoint, or starts the embedded versitygw, and
// makes sure the buckets exist.
func openS3(ctx context.Context, f *serveFlags, out io.Writer) (*blob.Store, func(), error) {
	cfg := s3client.Config{
		Endpoint: f.s3Endpoint, Region: f.s3Region, PathStyle: f.s3PathStyle, CABundle: f.s3CABundle,
		PartSize: s3client.MinPartSize, MaxAttempts: 3, MaxBackoff: time.Second,
	}
	stop := func() {}
	embedded := f.s3Endpoint == ""
	if embedded {
		e, err := blob.StartEmbedded(ctx, filepath.Join(f.dataDir, "s3"))
		if err != nil {
			return nil, nil, err
		}
		stop = e.Stop
		cfg.Endpoint, cfg.Region, cfg.PathStyle = e.Endpoint, e.Credentials.Region, true
		cfg.Credentials = credentials.NewStaticCredentialsProvider(e.Credentials.AccessKey, e.Credentials.SecretKey, "")
		fmt.Fprintf(out, "imsbuild serve: embedded S3 (versitygw) at %s, credentials in %s\n", e.Endpoint, e.CredentialsFile)
	}
	client, err := s3client.NewClient(ctx, cfg)
	if err != nil {
		stop()
		return nil, nil, err
	}
	blobs := blob.New(client)
	for _, b := range []string{f.imageBucket, f.recipeBucket} {
		bctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err := blobs.EnsureBucket(bctx, b)
		cancel()
		if err != nil {
			if embedded {
				stop()
				return nil, nil, err
			}
			// An external endpoint may not let us create buckets; the
			// operator may have made them already.
			fmt.Fprintf(out, "imsbuild serve: warning: bucket %s: %v\n", b, err)
		}
	}
	return blobs, stop, nil
}
