package engine

import (
	"io"
	"os/exec"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/imsbuild/imsbuild/ims"
	"github.com/imsbuild/imsbuild/internal/registrytest"
	"github.com/imsbuild/imsbuild/internal/s3test"
	"github.com/imsbuild/imsbuild/internal/testutil"
	"github.com/imsbuild/imsbuild/spec"
)

// TestPublishS3AndOCI builds the fixture and publishes it to a real S3
// server and a real registry from the same build, then reads both back.
func TestPublishS3AndOCI(t *testing.T) {
	if testing.Short() {
		t.Skip("starts S3 and registry servers")
	}
	f := newFixture(t)
	srv := s3test.Start(t)
	srv.CreateBucket(t, "boot-images")
	reg := registrytest.Start(t)
	t.Setenv("AWS_ACCESS_KEY_ID", srv.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", srv.SecretKey)
	f.cfg.Publishes = append(f.cfg.Publishes,
		&spec.Publish{Kind: "s3", Name: "site", Images: []string{"base", "compute"},
			Endpoint: srv.Endpoint, Region: srv.Region, Bucket: "boot-images", PathStyle: true},
		&spec.Publish{Kind: "oci", Name: "registry", Images: []string{"base", "compute"}, Tags: []string{"v1"},
			ImageRepos: map[string]string{"base": reg.Ref("hpc/base"), "compute": reg.Ref("hpc/compute")}},
	)
	got, err := f.build(t, t.Context(), Options{Jobs: 2})
	if err != nil {
		t.Fatalf("Build() = %v", err)
	}
	for _, id := range []string{"publish.s3.site", "publish.oci.registry"} {
		if got[id] != StatusDone {
			t.Fatalf("%s = %s, want done (all: %v)", id, got[id], got)
		}
	}
	e, err := New(f.cfg, f.cache, f.cache.Actions(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Plan(t.Context(), nil, false); err != nil { // fills results from the cache
		t.Fatal(err)
	}
	img, err := e.publishImage("image.compute")
	if err != nil {
		t.Fatal(err)
	}
	client := srv.Client(t)
	obj, err := client.GetObject(t.Context(), &awss3.GetObjectInput{Bucket: aws.String("boot-images"), Key: aws.String(img.ID + "/manifest.json")})
	if err != nil {
		t.Fatalf("get manifest of %s: %v", img.ID, err)
	}
	data, _ := io.ReadAll(obj.Body)
	obj.Body.Close()
	m, err := ims.ParseManifest(data)
	if err != nil {
		t.Fatal(err)
	}
	if m.Artifacts[0].MD5 != img.Outputs["rootfs"].MD5 || !strings.HasSuffix(m.Artifacts[0].Link.Path, img.ID+"/rootfs") {
		t.Fatalf("S3 manifest rootfs = %+v, want md5 %s", m.Artifacts[0], img.Outputs["rootfs"].MD5)
	}
	crane := testutil.RequireTool(t, "crane")
	out, err := exec.CommandContext(t.Context(), crane, "manifest", "--insecure", reg.Ref("hpc/compute")+":v1").Output()
	if err != nil {
		t.Fatalf("crane manifest: %v", err)
	}
	if !strings.Contains(string(out), string(img.Outputs["rootfs"].Digest)) || !strings.Contains(string(out), "application/vnd.imsbuild.image.v1") {
		t.Fatalf("OCI manifest lacks the rootfs digest %s:\n%s", img.Outputs["rootfs"].Digest, out)
	}
}
