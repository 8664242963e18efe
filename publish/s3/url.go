package s3

import (
	"fmt"
	"net/url"
	"strconv"
	"strings"
)

// URL query parameters ParseURL accepts, as the CLI's cache URLs do.
const (
	QueryEndpoint  = "endpoint"
	QueryRegion    = "region"
	QueryPathStyle = "path_style"
	QueryCABundle  = "ca_bundle"
)

// ParseURL splits an s3:// URL with optional connection parameters,
//
//	s3://bucket/key[?endpoint=URL&region=R&path_style=true&ca_bundle=FILE]
//
// into a Config holding those parameters (Endpoint, Region, PathStyle,
// CABundle; every other field zero) and the plain "s3://bucket/key" without
// the query. The key may be empty. Unknown or repeated parameters are
// errors, so that a typo does not silently talk to AWS.
func ParseURL(raw string) (cfg Config, bucketKey string, err error) {
	u, err := url.Parse(raw)
	if err != nil {
		return Config{}, "", fmt.Errorf("parse %s: %w", raw, err)
	}
	if u.Scheme != "s3" || u.Host == "" || u.User != nil || u.Fragment != "" || u.Opaque != "" {
		return Config{}, "", fmt.Errorf("parse %s: want s3://bucket/key[?endpoint=URL&region=R&path_style=true&ca_bundle=FILE]", raw)
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return Config{}, "", fmt.Errorf("parse %s: query: %w", raw, err)
	}
	for k, vs := range q {
		if len(vs) != 1 {
			return Config{}, "", fmt.Errorf("parse %s: parameter %s given %d times", raw, k, len(vs))
		}
		v := vs[0]
		switch k {
		case QueryEndpoint:
			cfg.Endpoint = v
		case QueryRegion:
			cfg.Region = v
		case QueryCABundle:
			cfg.CABundle = v
		case QueryPathStyle:
			if cfg.PathStyle, err = strconv.ParseBool(v); err != nil {
				return Config{}, "", fmt.Errorf("parse %s: %s=%q is not true or false", raw, k, v)
			}
		default:
			return Config{}, "", fmt.Errorf("parse %s: unknown parameter %q (want %s, %s, %s or %s)",
				raw, k, QueryEndpoint, QueryRegion, QueryPathStyle, QueryCABundle)
		}
	}
	return cfg, "s3://" + u.Host + "/" + strings.TrimPrefix(u.Path, "/"), nil
}

// splitURL splits "s3://bucket/key" (no query) into bucket and key; both
// must be present.
func splitURL(s string) (bucket, key string, err error) {
	rest, ok := strings.CutPrefix(s, "s3://")
	if !ok {
		return "", "", fmt.Errorf("%q is not an s3:// URL", s)
	}
	bucket, key, _ = strings.Cut(rest, "/")
	if bucket == "" || key == "" || strings.HasSuffix(key, "/") {
		return "", "", fmt.Errorf("%q is not s3://bucket/key", s)
	}
	return bucket, key, nil
}

// withURL parses raw and returns cfg with the URL's parameters set over
// it, and the bucket and key.
func withURL(cfg Config, raw string) (Config, string, string, error) {
	q, bk, err := ParseURL(raw)
	if err != nil {
		return Config{}, "", "", err
	}
	if q.Endpoint != "" {
		cfg.Endpoint = q.Endpoint
	}
	if q.Region != "" {
		cfg.Region = q.Region
	}
	if q.CABundle != "" {
		cfg.CABundle = q.CABundle
	}
	cfg.PathStyle = cfg.PathStyle || q.PathStyle
	bucket, key, err := splitURL(bk)
	if err != nil {
		return Config{}, "", "", fmt.Errorf("parse %s: %w", raw, err)
	}
	return cfg, bucket, key, nil
}
