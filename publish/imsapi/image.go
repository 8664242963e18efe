package imsapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"

	"github.com/google/uuid"

	"github.com/imsbuild/imsbuild/ims"
)

// Images calls each with every image record, in IMS's order, until each
// returns false.
func (c *Client) Images(ctx context.Context, each func(*ims.ImageRecord) bool) error {
	if err := list(ctx, c, "images", each); err != nil {
		return fmt.Errorf("list images: %w", err)
	}
	return nil
}

// CreateImage creates an image record without a link, as IMS's job helper
// does before it uploads the artifacts under the new id, and returns it.
// The POST is sent once: a retry after a lost answer would leave a second
// empty record. The id IMS assigns is checked to be a UUID, since callers
// use it as an S3 key prefix and in URLs.
func (c *Client) CreateImage(ctx context.Context, name, arch string) (ims.ImageRecord, error) {
	op := "create image " + name
	if name == "" {
		return ims.ImageRecord{}, errors.New("create image: no name")
	}
	rec, err := create[ims.ImageRecord](ctx, c, "images", imageCreate{Name: name, Arch: arch})
	if err != nil {
		return ims.ImageRecord{}, fmt.Errorf("%s: %w", op, err)
	}
	if err := checkID(rec.ID); err != nil {
		return ims.ImageRecord{}, fmt.Errorf("%s: IMS answered %w", op, err)
	}
	return *rec, nil
}

// LinkImage sets the link of image id to its manifest.json; IMS checks the
// manifest and every artifact it lists. Setting the link a record has
// already is a no-op for IMS, so the PATCH is retried like a GET.
func (c *Client) LinkImage(ctx context.Context, id string, link ims.Link) (ims.ImageRecord, error) {
	op := "link image " + id
	if err := checkID(id); err != nil {
		return ims.ImageRecord{}, fmt.Errorf("%s: %w", op, err)
	}
	data, err := json.Marshal(map[string]any{"link": link})
	if err != nil {
		return ims.ImageRecord{}, err
	}
	var rec ims.ImageRecord
	err = c.retry(ctx, func() error {
		return c.send(ctx, http.MethodPatch, c.url("images/"+id), data, func(r io.Reader) error {
			return json.NewDecoder(r).Decode(&rec)
		})
	})
	if err != nil {
		return ims.ImageRecord{}, fmt.Errorf("%s: %w", op, err)
	}
	return rec, nil
}

// DeleteImage removes image id for good: v2 deletes at once; v3 deletes
// softly, so the deleted record is deleted too. Only the record goes (with
// no link, nothing in S3 is touched).
func (c *Client) DeleteImage(ctx context.Context, id string) error {
	op := "delete image " + id
	if err := checkID(id); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	urls := []string{c.url("images/" + url.PathEscape(id))}
	if c.cfg.APIVersion == "v3" {
		urls = append(urls, c.url("deleted/images/"+url.PathEscape(id)))
	}
	for _, u := range urls {
		err := c.retry(ctx, func() error {
			return c.send(ctx, http.MethodDelete, u, nil, func(io.Reader) error { return nil })
		})
		var e *Error
		if errors.As(err, &e) && e.StatusCode == http.StatusNotFound {
			continue // gone already (a retried DELETE that had worked)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
	}
	return nil
}

// checkID accepts only a canonical UUID, the form of every IMS id.
func checkID(id string) error {
	u, err := uuid.Parse(id)
	if err != nil || u.String() != id {
		return fmt.Errorf("image id %q is not a UUID", id)
	}
	return nil
}
