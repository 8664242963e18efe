package imsapi

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/imsbuild/imsbuild/ims"
)

// imageCreate is the body of POST images (ImageCreateRecord): id and
// created are read-only, IMS assigns them.
type imageCreate struct {
	Name     string            `json:"name"`
	Link     *ims.Link         `json:"link,omitempty"`
	Arch     string            `json:"arch,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`
}

// recipeCreate is the body of POST recipes (RecipeRecord without id and
// created).
type recipeCreate struct {
	Name               string              `json:"name"`
	RecipeType         string              `json:"recipe_type"`
	LinuxDistribution  string              `json:"linux_distribution"`
	Link               *ims.Link           `json:"link,omitempty"`
	Arch               string              `json:"arch,omitempty"`
	RequireDKMS        bool                `json:"require_dkms"`
	TemplateDictionary []ims.TemplateEntry `json:"template_dictionary,omitempty"`
}

// RegisterImage returns the ImageRecord with rec's name and link (path and
// etag), creating it when IMS has none. rec.ID and rec.Created are ignored:
// IMS assigns them.
func (c *Client) RegisterImage(ctx context.Context, rec ims.ImageRecord) (ims.ImageRecord, error) {
	op := "register image " + rec.Name
	if rec.Name == "" {
		return ims.ImageRecord{}, errors.New("register image: no name")
	}
	body := imageCreate{Name: rec.Name, Link: rec.Link, Arch: rec.Arch, Metadata: rec.Metadata}
	got, err := register(ctx, c, "images", body, rec.Link, func(r *ims.ImageRecord) (bool, *ims.Link) {
		return r.Name == rec.Name && sameLink(r.Link, rec.Link), r.Link
	}, func(r *ims.ImageRecord) string { return r.ID })
	if err != nil {
		return ims.ImageRecord{}, fmt.Errorf("%s: %w", op, err)
	}
	return *got, nil
}

// RegisterRecipe returns the RecipeRecord with rec's name and link,
// creating it when IMS has none. rec.ID and rec.Created are ignored.
func (c *Client) RegisterRecipe(ctx context.Context, rec ims.RecipeRecord) (ims.RecipeRecord, error) {
	op := "register recipe " + rec.Name
	switch {
	case rec.Name == "":
		return ims.RecipeRecord{}, errors.New("register recipe: no name")
	case rec.RecipeType == "":
		return ims.RecipeRecord{}, fmt.Errorf("%s: no recipe_type", op)
	case rec.LinuxDistribution == "":
		return ims.RecipeRecord{}, fmt.Errorf("%s: no linux_distribution", op)
	}
	body := recipeCreate{
		Name: rec.Name, RecipeType: rec.RecipeType, LinuxDistribution: rec.LinuxDistribution,
		Link: rec.Link, Arch: rec.Arch, RequireDKMS: rec.RequireDKMS, TemplateDictionary: rec.TemplateDictionary,
	}
	got, err := register(ctx, c, "recipes", body, rec.Link, func(r *ims.RecipeRecord) (bool, *ims.Link) {
		return r.Name == rec.Name && sameLink(r.Link, rec.Link), r.Link
	}, func(r *ims.RecipeRecord) string { return r.ID })
	if err != nil {
		return ims.RecipeRecord{}, fmt.Errorf("%s: %w", op, err)
	}
	return *got, nil
}

// sameLink reports whether a and b name the same artifact version.
func sameLink(a, b *ims.Link) bool {
	if a == nil || b == nil {
		return a == nil && b == nil
	}
	return a.Path == b.Path && a.Etag == b.Etag
}

// conflict is a record holding the link path we want, under another name or
// etag; IMS refuses a second record for one path.
type conflict struct {
	id   string
	link ims.Link
}

// register finds the record match accepts, or creates it with body. A
// create that failed in a way that may be retried (5xx, timeout, reset,
// refused) is retried only after listing again shows that it did not create
// the record. want is the link of the record, to explain a 422 for a link
// path another record holds.
func register[T any](ctx context.Context, c *Client, collection string, body any, want *ims.Link,
	match func(*T) (bool, *ims.Link), idOf func(*T) string) (*T, error) {
	wait := c.cfg.Backoff
	for n := 1; ; n++ {
		var found *T
		var taken *conflict
		err := list(ctx, c, collection, func(r *T) bool {
			ok, l := match(r)
			if ok {
				found = r
				return false
			}
			if l != nil && want != nil && l.Path == want.Path {
				taken = &conflict{id: idOf(r), link: *l}
			}
			return true
		})
		if err != nil {
			return nil, err
		}
		if found != nil {
			return found, nil
		}
		rec, err := create[T](ctx, c, collection, body)
		if err == nil {
			return rec, nil
		}
		var e *Error
		if !errors.As(err, &e) {
			return nil, err
		}
		if taken != nil && e.StatusCode == 422 {
			e.hint = fmt.Sprintf("link path %s is already registered to %s %s with etag %q", taken.link.Path,
				collection[:len(collection)-1], taken.id, taken.link.Etag)
		}
		if !e.transient() || n >= c.cfg.MaxAttempts || ctx.Err() != nil {
			if n > 1 {
				e.Attempts = n
			}
			return nil, e
		}
		// Whether or not IMS got the request, the next round lists first.
		d := wait
		if e.retryAfter > 0 {
			d = e.retryAfter
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			e.Attempts = n
			return nil, fmt.Errorf("%w; gave up waiting to retry: %w", e, ctx.Err())
		case <-t.C:
		}
		wait = min(2*wait, maxBackoff)
	}
}
