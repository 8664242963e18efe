package steps

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"path/filepath"
	"strings"
	"time"

	"github.com/imsbuild/imsbuild/builders/kiwi"
	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/cache/pkgproxy"
	"github.com/imsbuild/imsbuild/internal/bytesize"
	"github.com/imsbuild/imsbuild/lockfile"
)

// startPrefetch starts fetching the package files the prepare is about to
// ask for into the package cache through Prefetch, a few at a time, while
// kiwi runs (see pkgproxy.Proxy.Prefetch). The list is the lock entry's,
// else the package list of this step's last prepare (Previous), else
// what the host's apt-get resolves for the description in desc
// (kiwi.ResolveApt) through proxy, the session's URL. Each file is
// checked against its sha256 before the cache serves it, so the list can
// only save time: a file kiwi does not use costs bandwidth, one missing
// costs nothing extra. stop cancels what is left, waits and logs what
// was done.
func (o *Prepare) startPrefetch(ctx context.Context, desc, proxy, scratch string, log io.Writer) (stop func()) {
	if o.Prefetch == nil || proxy == "" {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	report := make(chan string, 1)
	go func() {
		start := time.Now()
		files, source := o.prefetchList(ctx, desc, proxy, scratch)
		if len(files) == 0 {
			report <- "package prefetch: nothing to fetch (" + source + ")"
			return
		}
		listed := time.Since(start)
		st := o.Prefetch(ctx, files)
		report <- fmt.Sprintf("package prefetch: %d files of %s (listed in %v): %d fetched (%s) in %v, %d already cached, %d failed, %d not fetched",
			len(files), source, listed.Round(time.Millisecond), st.Fetched, bytesize.Format(st.Bytes),
			(time.Since(start) - listed).Round(time.Millisecond), st.Cached, st.Failed, st.Skipped)
	}()
	return func() {
		cancel()
		fmt.Fprintln(log, <-report)
	}
}

// prefetchList returns the files to prefetch and where the list came
// from (or why there is none).
func (o *Prepare) prefetchList(ctx context.Context, desc, proxy, scratch string) ([]pkgproxy.File, string) {
	bases := o.repoBases(desc)
	if o.Lock != nil {
		return lockFiles(o.Lock, bases), "the lock"
	}
	if o.Previous != nil {
		if prev := o.Previous(ctx); prev != nil {
			return lockFiles(prev, bases), "the last prepare"
		}
	}
	arch := o.Recipe.Arch
	if arch == "" {
		arch = "x86_64"
	}
	resolved, err := kiwi.ResolveApt(ctx, desc, o.Recipe.Profiles, arch, proxy, filepath.Join(scratch, "prefetch-apt"))
	if err != nil {
		return nil, err.Error()
	}
	out := make([]pkgproxy.File, 0, len(resolved))
	for _, f := range resolved {
		out = append(out, pkgproxy.File{URL: f.URL, Digest: cache.Digest("sha256:" + f.SHA256)})
	}
	return out, "apt-get's resolution"
}

// repoBases returns the scheme and host, and the path, of every http://
// repository of the prepare and of its description.
func (o *Prepare) repoBases(desc string) []*url.URL {
	var raw []string
	for _, r := range o.Repositories {
		raw = append(raw, r.URL)
	}
	if paths, err := kiwi.Repositories(desc); err == nil {
		raw = append(raw, paths...)
	}
	var out []*url.URL
	for _, s := range raw {
		u, err := url.Parse(s)
		if err != nil || u.Scheme != "http" || u.Host == "" || u.User != nil || u.RawQuery != "" {
			continue
		}
		out = append(out, u)
	}
	return out
}

// lockFiles returns the package files of a lock entry (or a prepare's
// package list) with a sha256 and a path, each under the repository
// whose path its own starts with (the longest such path; a file of no
// such repository is left out). Locked paths are URL paths as sent, so
// the URL is the repository's scheme and host and the path.
func lockFiles(r *lockfile.Recipe, bases []*url.URL) []pkgproxy.File {
	var out []pkgproxy.File
	for _, p := range r.Packages {
		if p.SHA256 == "" || !strings.HasPrefix(p.Path, "/") {
			continue
		}
		var best *url.URL
		for _, b := range bases {
			prefix := strings.TrimSuffix(b.EscapedPath(), "/") + "/"
			if strings.HasPrefix(p.Path, prefix) && (best == nil || len(b.EscapedPath()) > len(best.EscapedPath())) {
				best = b
			}
		}
		if best == nil {
			continue
		}
		out = append(out, pkgproxy.File{URL: "http://" + best.Host + p.Path, Digest: cache.Digest("sha256:" + p.SHA256)})
	}
	return out
}
