package engine

import (
	"context"
	"fmt"
	"time"

	"github.com/imsbuild/imsbuild/ims"
	"github.com/imsbuild/imsbuild/publish"
	"github.com/imsbuild/imsbuild/publish/dir"
)

// artifactOrder fixes the order of artifacts wherever it matters (ids, manifests).
var artifactOrder = []string{ims.ArtifactRootfs, ims.ArtifactKernel, ims.ArtifactInitrd, ims.ArtifactBootParameters}

// publishImage describes the built image of step id for publishers.
func (e *Engine) publishImage(id string) (publish.Image, error) {
	s := e.graph.Step(id)
	r := e.result(id)
	if s == nil || r == nil {
		return publish.Image{}, fmt.Errorf("%s has not been built", id)
	}
	digests := make([]string, 0, len(artifactOrder))
	for _, name := range artifactOrder {
		if o, ok := r.Outputs[name]; ok {
			digests = append(digests, name+"="+string(o.Digest))
		}
	}
	created := r.Created
	if epoch, ok := e.sourceDateEpoch(); ok {
		created = time.Unix(epoch, 0).UTC()
	}
	return publish.Image{
		Label:   s.Image.Label,
		Name:    s.Image.Name,
		Arch:    s.Image.Arch,
		ID:      ims.ImageID(s.Image.Name, digests...),
		Key:     e.key(id),
		Created: created,
		Outputs: r.Outputs,
	}, nil
}

func (e *Engine) runPublish(ctx context.Context, s *Step) error {
	p := s.Publish
	e.emit(Event{Step: s.ID, Status: StatusStarted})
	var images []publish.Image
	for _, d := range s.Deps {
		img, err := e.publishImage(d.ID)
		if err != nil {
			return err
		}
		images = append(images, img)
	}
	var pub publish.Publisher
	switch p.Kind {
	case "dir":
		pub = dir.New(p.Path)
	default:
		return fmt.Errorf("publish %q is not implemented yet (only \"dir\")", p.Kind)
	}
	if err := pub.Publish(ctx, e.store, images); err != nil {
		return err
	}
	for _, img := range images {
		e.emit(Event{Step: s.ID, Status: StatusLog, Line: fmt.Sprintf("%s → %s (id %s)", img.Label, p.Path, img.ID)})
	}
	return nil
}
