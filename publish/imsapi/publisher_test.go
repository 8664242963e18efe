package imsapi

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/imsbuild/imsbuild/ims"
	"github.com/imsbuild/imsbuild/publish"
)

func TestPublisher(t *testing.T) {
	ctx := testContext(t)
	srv := newIMSServer(t)
	images := []publish.Image{
		{Label: "base", Name: "node-bookworm", Arch: "x86_64", ID: "11111111-0000-4000-8000-000000000001", Created: time.Unix(0, 0)},
		{Label: "compute", Name: "node-compute", Arch: "aarch64", ID: "11111111-0000-4000-8000-000000000002", Created: time.Unix(0, 0)},
	}
	linkFor := func(_ context.Context, img publish.Image) (ims.Link, error) {
		return ims.Link{Path: "s3://boot-images/" + img.ID + "/manifest.json", Etag: "etag-" + img.Label}, nil
	}
	p := NewPublisher(newClient(t, srv.URL), linkFor)
	recs, err := p.Register(ctx, images)
	if err != nil {
		t.Fatalf("Register() error: %v", err)
	}
	if err := p.Publish(ctx, nil, images); err != nil {
		t.Fatalf("Publish() again error: %v", err)
	}
	got := srv.imageRecords()
	if len(got) != 2 || len(recs) != 2 {
		t.Fatalf("server has %d records, Register() returned %d; want 2 and 2", len(got), len(recs))
	}
	for i, img := range images {
		r := got[i]
		if r.ID != recs[i].ID || r.Name != img.Name || r.Arch != img.Arch || r.Link == nil ||
			*r.Link != (ims.Link{Path: "s3://boot-images/" + img.ID + "/manifest.json", Etag: "etag-" + img.Label, Type: "s3"}) {
			t.Errorf("record %d = %+v (link %+v), want image %s with its manifest link", i, r, r.Link, img.Label)
		}
	}

	boom := errors.New("no manifest etag")
	p = NewPublisher(newClient(t, srv.URL), func(context.Context, publish.Image) (ims.Link, error) { return ims.Link{}, boom })
	err = p.Publish(ctx, nil, images)
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "publish ims image base (11111111-0000-4000-8000-000000000001): manifest link") {
		t.Errorf("Publish() with a failing linkFor error = %v", err)
	}
}
