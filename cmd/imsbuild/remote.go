package main

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strconv"

	"github.com/imsbuild/imsbuild/cache/oci"
	"github.com/imsbuild/imsbuild/cache/s3"
	"github.com/imsbuild/imsbuild/cache/tiered"
	"github.com/imsbuild/imsbuild/internal/s3client"
)

// openRemote opens a remote cache from its URL:
//
//	s3://bucket/prefix[?endpoint=URL&region=R&path_style=true&ca_bundle=F]
//	oci://registry/repo[?insecure=true]
//
// Credentials come from the AWS SDK chain and the Docker config.
func openRemote(ctx context.Context, raw string) (tiered.Remote, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, usageError{fmt.Errorf("cache URL %q: %w", raw, err)}
	}
	q := u.Query()
	flag := func(name string) (bool, error) {
		if v := q.Get(name); v != "" {
			b, err := strconv.ParseBool(v)
			if err != nil {
				return false, usageError{fmt.Errorf("cache URL %q: %s=%q is not true or false", raw, name, v)}
			}
			return b, nil
		}
		return false, nil
	}
	u.RawQuery = ""
	switch u.Scheme {
	case "s3":
		pathStyle, err := flag("path_style")
		if err != nil {
			return nil, err
		}
		return s3.Open(ctx, u.String(), s3.Options{Config: s3client.Config{
			Endpoint: q.Get("endpoint"), Region: q.Get("region"), PathStyle: pathStyle, CABundle: q.Get("ca_bundle"),
		}})
	case "oci":
		insecure, err := flag("insecure")
		if err != nil {
			return nil, err
		}
		return oci.Open(ctx, u.String(), oci.Options{Insecure: insecure})
	}
	return nil, usageError{fmt.Errorf("cache URL %q: want s3://bucket/prefix or oci://registry/repo", raw)}
}

// withRemotes layers the remote caches of the build and the flags over the
// local cache. --cache-from adds to the build's list; --cache-to replaces
// its target.
func withRemotes(ctx context.Context, c *openedCache, from []string, to string) error {
	if len(from) == 0 && to == "" {
		return nil
	}
	var remotes []tiered.Remote
	for _, f := range from {
		r, err := openRemote(ctx, f)
		if err != nil {
			return err
		}
		remotes = append(remotes, r)
	}
	var target tiered.Remote // stays an untyped nil without --cache-to
	if to != "" {
		r, err := openRemote(ctx, to)
		if err != nil {
			return err
		}
		target = r
		c.to, c.toURL = r, to
	}
	c.tiered = tiered.New(c.Cache, remotes, target, tiered.WithOnWarning(func(err error) {
		fmt.Fprintln(os.Stderr, "imsbuild: warning: remote cache:", err)
	}))
	return nil
}
