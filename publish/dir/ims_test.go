package dir_test

import (
	"bytes"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/imsbuild/imsbuild/ims"
	"github.com/imsbuild/imsbuild/ims/server/servertest"
	"github.com/imsbuild/imsbuild/publish"
	"github.com/imsbuild/imsbuild/publish/dir"
	"github.com/imsbuild/imsbuild/publish/publishtest"
)

// What the docs promise: sync the folder's boot-images to the bucket, POST
// each record as it is, and IMS (here the real ims/server, which validates
// the link: manifest and artifacts present, one rootfs) creates the image.
func TestRecordsPostToIMS(t *testing.T) {
	srv := servertest.Start(t)
	blobs := publishtest.New(t)
	img := publish.Image{
		Label: "compute", Name: "compute-bookworm", Arch: "x86_64", ID: "3f5b9c2e-1d2a-4b7c-9e8f-0a1b2c3d4e5f",
		Created: time.Date(2024, 3, 1, 12, 30, 45, 0, time.UTC),
		Outputs: map[string]publish.Artifact{
			ims.ArtifactRootfs: blobs.Add(t, ims.ArtifactRootfs, []byte("hsqs rootfs bytes")),
			ims.ArtifactKernel: blobs.Add(t, ims.ArtifactKernel, []byte("kernel bytes")),
			ims.ArtifactInitrd: blobs.Add(t, ims.ArtifactInitrd, []byte("initrd bytes")),
		},
	}
	out := t.TempDir()
	if err := dir.New(out).Publish(t.Context(), blobs, []publish.Image{img}); err != nil {
		t.Fatalf("Publish() = %v", err)
	}

	// aws s3 sync out/boot-images s3://boot-images
	client := srv.S3.Client(t)
	root := filepath.Join(out, dir.Bucket)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		key, _ := filepath.Rel(root, p)
		_, err = client.PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String(dir.Bucket), Key: aws.String(key), Body: bytes.NewReader(data)})
		return err
	})
	if err != nil {
		t.Fatalf("sync to s3: %v", err)
	}

	record, err := os.ReadFile(filepath.Join(out, "records", "images", img.ID+".json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/v3/images", "/images"} {
		resp, err := http.Post(srv.URL+path, "application/json", bytes.NewReader(record))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			t.Fatalf("POST %s of records/images/%s.json = %d %s, want 201\n%s", path, img.ID, resp.StatusCode, body, record)
		}
		var got ims.ImageRecord
		if err := json.Unmarshal(body, &got); err != nil {
			t.Fatal(err)
		}
		want := "s3://boot-images/" + img.ID + "/manifest.json"
		if got.Name != img.Name || got.Arch != img.Arch || got.Link == nil || got.Link.Path != want || got.ID == "" {
			t.Errorf("POST %s created %+v, want %s (%s) linked to %s", path, got, img.Name, img.Arch, want)
		}
		// IMS refuses a second record for one manifest: unregister the first.
		req, _ := http.NewRequestWithContext(t.Context(), http.MethodDelete, srv.URL+"/v2/images/"+got.ID+"?cascade=false", nil)
		if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusNoContent {
			t.Fatalf("DELETE image %s = %v %v", got.ID, resp, err)
		}
	}
}
