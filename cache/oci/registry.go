package oci

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/google/go-containerregistry/pkg/v1/remote/transport"

	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/cache/internal/record"
)

// This file speaks the OCI distribution API over go-containerregistry's
// authorising transport: blob HEAD/GET/upload and manifest GET/PUT.

// maxManifestSize bounds the manifests and config blobs read into memory.
const maxManifestSize = 16 << 20

// cleanupTimeout bounds the cancellation of a failed upload.
const cleanupTimeout = 10 * time.Second

// do sends one request through the pull or push transport.
func (c *Cache) do(ctx context.Context, push bool, method, u string, body io.Reader, header http.Header) (*http.Response, error) {
	rt, err := c.transport(ctx, push)
	if err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, method, u, body)
	if err != nil {
		return nil, err
	}
	for k, v := range header {
		req.Header[k] = v
	}
	return (&http.Client{Transport: rt}).Do(req)
}

// check returns nil when resp has one of codes, else the registry's error,
// wrapping cache.ErrNotFound on 404. It closes the body on error.
func check(resp *http.Response, codes ...int) error {
	err := transport.CheckError(resp, codes...)
	if err == nil {
		return nil
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusNotFound {
		return fmt.Errorf("%w: %w", cache.ErrNotFound, err)
	}
	return err
}

func (c *Cache) blobURL(d cache.Digest) string { return c.base + "/blobs/" + string(d) }
func (c *Cache) manifestURL(ref string) string { return c.base + "/manifests/" + ref }

// headBlob returns the size of blob d, or an error wrapping ErrNotFound. A
// registry checks digests itself, so a blob it has is trusted.
func (c *Cache) headBlob(ctx context.Context, d cache.Digest) (int64, bool, error) {
	resp, err := c.do(ctx, false, http.MethodHead, c.blobURL(d), nil, nil)
	if err != nil {
		return 0, false, c.wrap("head", err)
	}
	if err := check(resp, http.StatusOK); err != nil {
		return 0, false, c.wrap("head", err)
	}
	resp.Body.Close()
	return resp.ContentLength, true, nil
}

// getBlob returns the body of blob d and its length (-1 when unknown).
func (c *Cache) getBlob(ctx context.Context, d cache.Digest) (io.ReadCloser, int64, error) {
	resp, err := c.do(ctx, false, http.MethodGet, c.blobURL(d), nil, nil)
	if err != nil {
		return nil, 0, c.wrap("get", err)
	}
	if err := check(resp, http.StatusOK); err != nil {
		return nil, 0, c.wrap("get", err)
	}
	return resp.Body, resp.ContentLength, nil
}

// uploadBlob streams r as blob d in one PATCH (size is not needed).
func (c *Cache) uploadBlob(ctx context.Context, r io.Reader, d cache.Digest, _ int64) error {
	if err := c.upload(ctx, r, d); err != nil {
		return c.wrap("upload", err)
	}
	return nil
}

// upload streams r as blob d: POST to start an upload session, PATCH the
// content, PUT ?digest= to commit. When r fails (a verifier at EOF, a
// cancelled ctx) the session is cancelled and nothing is committed.
func (c *Cache) upload(ctx context.Context, r io.Reader, d cache.Digest) error {
	resp, err := c.do(ctx, true, http.MethodPost, c.base+"/blobs/uploads/", nil, nil)
	if err != nil {
		return err
	}
	if err := check(resp, http.StatusAccepted); err != nil {
		return fmt.Errorf("start upload: %w", err)
	}
	resp.Body.Close()
	loc, err := c.location(resp)
	if err != nil {
		return err
	}
	committed := false
	defer func() {
		if !committed {
			c.cancelUpload(ctx, loc)
		}
	}()
	resp, err = c.do(ctx, true, http.MethodPatch, loc, r,
		http.Header{"Content-Type": {"application/octet-stream"}})
	if err != nil {
		return err
	}
	if err := check(resp, http.StatusAccepted, http.StatusNoContent, http.StatusCreated); err != nil {
		return fmt.Errorf("upload: %w", err)
	}
	resp.Body.Close()
	if loc, err = c.location(resp); err != nil {
		return err
	}
	u, err := url.Parse(loc)
	if err != nil {
		return fmt.Errorf("upload location %q: %w", loc, err)
	}
	q := u.Query()
	q.Set("digest", string(d))
	u.RawQuery = q.Encode()
	resp, err = c.do(ctx, true, http.MethodPut, u.String(), nil, nil)
	if err != nil {
		return err
	}
	if err := check(resp, http.StatusCreated); err != nil {
		var te *transport.Error
		if errors.As(err, &te) && hasCode(te, transport.DigestInvalidErrorCode) {
			return fmt.Errorf("commit upload: %w: %w", cache.ErrCorrupt, err)
		}
		return fmt.Errorf("commit upload: %w", err)
	}
	resp.Body.Close()
	committed = true
	return nil
}

// wrap returns "op <repository>: err".
func (c *Cache) wrap(op string, err error) error {
	return fmt.Errorf("%s %s: %w", op, c.repo, err)
}

func hasCode(te *transport.Error, code transport.ErrorCode) bool {
	for _, d := range te.Errors {
		if d.Code == code {
			return true
		}
	}
	return false
}

// location resolves resp's Location header against the registry URL.
func (c *Cache) location(resp *http.Response) (string, error) {
	h := resp.Header.Get("Location")
	if h == "" {
		return "", fmt.Errorf("%s %s: no Location in the response", resp.Request.Method, resp.Request.URL.Redacted())
	}
	base, err := url.Parse(c.base)
	if err != nil {
		return "", err
	}
	u, err := base.Parse(h)
	if err != nil {
		return "", fmt.Errorf("upload location %q: %w", h, err)
	}
	return u.String(), nil
}

// cancelUpload deletes an upload session, best effort, even after ctx ends.
func (c *Cache) cancelUpload(ctx context.Context, loc string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if resp, err := c.do(ctx, true, http.MethodDelete, loc, nil, nil); err == nil {
		resp.Body.Close()
	}
}

// getManifest returns the manifest at ref (a tag) and its media type.
func (c *Cache) getManifest(ctx context.Context, ref string) ([]byte, string, error) {
	resp, err := c.do(ctx, false, http.MethodGet, c.manifestURL(ref), nil,
		http.Header{"Accept": {manifestMediaType}})
	if err != nil {
		return nil, "", err
	}
	if err := check(resp, http.StatusOK); err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	data, err := readLimited(resp.Body)
	if err != nil {
		return nil, "", err
	}
	return data, resp.Header.Get("Content-Type"), nil
}

// putManifest stores data under ref.
func (c *Cache) putManifest(ctx context.Context, ref string, data []byte) error {
	resp, err := c.do(ctx, true, http.MethodPut, c.manifestURL(ref), bytes.NewReader(data),
		http.Header{"Content-Type": {manifestMediaType}})
	if err != nil {
		return err
	}
	if err := check(resp, http.StatusCreated, http.StatusOK); err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// readLimited reads a small document, refusing one over maxManifestSize.
func readLimited(r io.Reader) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxManifestSize+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxManifestSize {
		return nil, fmt.Errorf("%w: larger than %d bytes", record.ErrUndecodable, maxManifestSize)
	}
	return data, nil
}
