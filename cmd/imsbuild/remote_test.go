package main

import (
	"strings"
	"testing"

	"github.com/imsbuild/imsbuild/internal/registrytest"
	"github.com/imsbuild/imsbuild/internal/s3test"
)

// remoteCaches starts an S3 server and a registry and returns the
// environment with the S3 credentials and a remote cache URL on each (S3,
// then OCI), named after name.
func remoteCaches(t *testing.T, name string) (env, remotes []string) {
	t.Helper()
	srv := s3test.Start(t)
	srv.CreateBucket(t, "ci-cache")
	reg := registrytest.Start(t)
	env = []string{"AWS_ACCESS_KEY_ID=" + srv.AccessKey, "AWS_SECRET_ACCESS_KEY=" + srv.SecretKey}
	return env, []string{
		"s3://ci-cache/" + name + "?endpoint=" + srv.Endpoint + "&path_style=true&region=" + srv.Region,
		"oci://" + reg.Host + "/ci/" + name + "-cache",
	}
}

// TestRemoteCacheBetweenRunners: runner A builds with --cache-to, runner B
// (its own checkout and an empty local cache) with --cache-from gets every
// step from the remote cache, moving no blob until a publish needs one.
func TestRemoteCacheBetweenRunners(t *testing.T) {
	if testing.Short() {
		t.Skip("starts S3 and registry servers")
	}
	env, remotes := remoteCaches(t, "imsbuild")
	for _, remote := range remotes {
		t.Run(strings.SplitN(remote, ":", 2)[0], func(t *testing.T) {
			a := example(t)
			r := imsbuildEnv(t, a, env, "build", "--cache-to", remote, ".")
			if r.code != 0 || !strings.Contains(r.stdout, "2 results uploaded") {
				t.Fatalf("runner A exit %d:\n%s\n%s", r.code, r.stdout, r.stderr)
			}
			b := example(t)
			r = imsbuildEnv(t, b, env, "build", "--json", "--cache-from", remote, ".", "image.compute")
			want := map[string]string{"image.base": "cached", "image.compute": "cached"}
			if got := events(t, r.stdout); r.code != 0 || !equal(got, want) {
				t.Fatalf("runner B exit %d = %v, want %v\n%s", r.code, got, want, r.stderr)
			}
			r = imsbuildEnv(t, b, env, "build", "--cache-from", remote, ".", "image.compute")
			if r.code != 0 || !strings.Contains(r.stdout, "0 blobs downloaded") {
				t.Fatalf("an all-hit build moved blobs:\n%s", r.stdout)
			}
			r = imsbuildEnv(t, b, env, "build", "--cache-from", remote, ".")
			if r.code != 0 || !strings.Contains(r.stdout, "0 built, 2 cached, 1 published") || strings.Contains(r.stdout, " 0 blobs downloaded") {
				t.Fatalf("runner B publish from the remote cache:\n%s\n%s", r.stdout, r.stderr)
			}
		})
	}
}
