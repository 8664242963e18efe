package imsapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/imsbuild/imsbuild/ims"
	"github.com/imsbuild/imsbuild/ims/server/servertest"
	"github.com/imsbuild/imsbuild/internal/s3client"
	"github.com/imsbuild/imsbuild/publish"
	"github.com/imsbuild/imsbuild/publish/imsapi"
	"github.com/imsbuild/imsbuild/publish/publishtest"
	"github.com/imsbuild/imsbuild/publish/s3"
)

// env is the real IMS API (ims/server) with its versitygw, a client of it
// and an S3 publisher to its boot-images bucket.
type env struct {
	srv    *servertest.Server
	client *imsapi.Client
	s3     *s3.Publisher
	blobs  *publishtest.Blobs
}

func newEnv(t *testing.T) *env {
	t.Helper()
	srv := servertest.Start(t)
	client, err := imsapi.New(imsapi.Config{Endpoint: srv.URL, Backoff: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	pub, err := s3.New(t.Context(), s3.Config{Config: s3client.Config{
		Endpoint: srv.S3.Endpoint, Region: srv.S3.Region, PathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(srv.S3.AccessKey, srv.S3.SecretKey, ""),
	}})
	if err != nil {
		t.Fatal(err)
	}
	return &env{srv: srv, client: client, s3: pub, blobs: publishtest.New(t)}
}

func (e *env) image(t *testing.T, label, name, kernel string) publish.Image {
	return publish.Image{
		Label: label, Name: name, Arch: "x86_64", ID: ims.ImageID(name, kernel), Created: time.Unix(0, 0),
		Outputs: map[string]publish.Artifact{
			ims.ArtifactRootfs: e.blobs.Add(t, ims.ArtifactRootfs, []byte("hsqs rootfs of "+name)),
			ims.ArtifactKernel: e.blobs.Add(t, ims.ArtifactKernel, []byte(kernel)),
			ims.ArtifactInitrd: e.blobs.Add(t, ims.ArtifactInitrd, []byte("initrd of "+name)),
		},
	}
}

func (e *env) publisher() *imsapi.Publisher {
	return imsapi.NewPublisher(e.client, func(context.Context, publish.Image) (imsapi.Store, error) {
		return imsapi.S3Store(e.s3), nil
	})
}

// records returns the records GET /v3/<collection> lists.
func (e *env) records(t *testing.T, collection string) []ims.ImageRecord {
	t.Helper()
	resp, err := http.Get(e.srv.URL + "/v3/" + collection)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var recs []ims.ImageRecord
	if err := json.NewDecoder(resp.Body).Decode(&recs); err != nil {
		t.Fatal(err)
	}
	return recs
}

// publish "ims" leaves what IMS's own jobs leave: the record's id is the S3
// prefix of its manifest and artifacts, and each artifact names the image
// in its x-shasta-ims-* metadata. Publishing again finds the record by name
// and manifest md5s instead of making another.
func TestPublisherRecordIDIsPrefix(t *testing.T) {
	e := newEnv(t)
	ctx := t.Context()
	kernel := e.image(t, "base", "node-base", "kernel")
	kernel.Outputs[ims.ArtifactKernel] = func(a publish.Artifact) publish.Artifact { a.MD5 = ""; return a }(kernel.Outputs[ims.ArtifactKernel])
	images := []publish.Image{kernel, e.image(t, "compute", "node-compute", "kernel")}
	p := e.publisher()
	recs, err := p.Register(ctx, e.blobs, images)
	if err != nil {
		t.Fatalf("Register() = %v", err)
	}
	c := e.srv.S3.Client(t)
	for i, r := range recs {
		if r.Name != images[i].Name || r.ID == images[i].ID {
			t.Errorf("record %d = %+v, want %s under an id of IMS's", i, r, images[i].Name)
		}
		want := "s3://boot-images/" + r.ID + "/manifest.json"
		if r.Link == nil || r.Link.Path != want {
			t.Fatalf("record %s links %+v, want %s: the record id is the S3 prefix", r.ID, r.Link, want)
		}
		for _, name := range []string{ims.ArtifactRootfs, ims.ArtifactKernel, ims.ArtifactInitrd} {
			head, err := c.HeadObject(ctx, &awss3.HeadObjectInput{Bucket: aws.String("boot-images"), Key: aws.String(r.ID + "/" + name)})
			if err != nil {
				t.Fatalf("HEAD %s/%s: %v", r.ID, name, err)
			}
			if m := head.Metadata; m[s3.MetaImageID] != r.ID || m[s3.MetaImageName] != r.Name {
				t.Errorf("%s/%s metadata %v, want %s=%s %s=%s", r.ID, name, m, s3.MetaImageID, r.ID, s3.MetaImageName, r.Name)
			}
		}
		if _, err := c.HeadObject(ctx, &awss3.HeadObjectInput{Bucket: aws.String("boot-images"), Key: aws.String(images[i].ID + "/manifest.json")}); err == nil {
			t.Errorf("something was published under imsbuild's own id %s", images[i].ID)
		}
	}

	again, err := p.Register(ctx, e.blobs, images)
	if err != nil {
		t.Fatalf("Register() again = %v", err)
	}
	for i := range recs {
		if again[i].ID != recs[i].ID {
			t.Errorf("Register() again: %s is record %s, want the same %s", images[i].Name, again[i].ID, recs[i].ID)
		}
	}
	if got := e.records(t, "images"); len(got) != 2 {
		t.Errorf("IMS has %d image records after publishing twice, want 2: %+v", len(got), got)
	}

	// Same name, other content: a new record, the old one stays.
	changed := e.image(t, "compute", "node-compute", "kernel v2")
	rec, err := p.Register(ctx, e.blobs, []publish.Image{changed})
	if err != nil {
		t.Fatalf("Register(changed) = %v", err)
	}
	if rec[0].ID == recs[1].ID || len(e.records(t, "images")) != 3 {
		t.Errorf("changed image registered as %s (old %s), %d records; want a third record", rec[0].ID, recs[1].ID, len(e.records(t, "images")))
	}
}

// failingStore is an S3 store whose Put fails.
type failingStore struct{ imsapi.Store }

var errPut = errors.New("bucket on fire")

func (failingStore) Put(context.Context, publish.Blobs, publish.Image) (ims.Link, error) {
	return ims.Link{}, errPut
}

// An image whose artifacts cannot be published leaves no record, not even
// a deleted one.
func TestPublisherCleansUp(t *testing.T) {
	e := newEnv(t)
	p := imsapi.NewPublisher(e.client, func(context.Context, publish.Image) (imsapi.Store, error) {
		return failingStore{imsapi.S3Store(e.s3)}, nil
	})
	_, err := p.Register(t.Context(), e.blobs, []publish.Image{e.image(t, "base", "node-base", "kernel")})
	if !errors.Is(err, errPut) || !strings.Contains(err.Error(), "publish ims image base (node-base)") {
		t.Fatalf("Register() = %v, want the put error naming the image", err)
	}
	if got := e.records(t, "images"); len(got) != 0 {
		t.Errorf("records after a failed publish: %+v, want none", got)
	}
	if got := e.records(t, "deleted/images"); len(got) != 0 {
		t.Errorf("deleted records after a failed publish: %+v, want none", got)
	}
}
