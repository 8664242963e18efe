package steps

import (
	"context"
	"fmt"
	"io"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
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
		var (
			mu     sync.Mutex
			st     pkgproxy.PrefetchStats
			listed int
			wg     sync.WaitGroup
		)
		// Each part of the list is fetched as soon as it is known.
		fetch := func(files []pkgproxy.File) {
			mu.Lock()
			listed += len(files)
			mu.Unlock()
			wg.Go(func() {
				got := o.Prefetch(ctx, files)
				mu.Lock()
				defer mu.Unlock()
				st.Fetched += got.Fetched
				st.Cached += got.Cached
				st.Failed += got.Failed
				st.Skipped += got.Skipped
				st.Bytes += got.Bytes
			})
		}
		source, err := o.prefetchList(ctx, desc, proxy, scratch, fetch)
		listedIn := time.Since(start)
		wg.Wait()
		if listed == 0 {
			why := source
			if err != nil {
				why = err.Error()
			}
			report <- "package prefetch: nothing to fetch (" + why + ")"
			return
		}
		line := fmt.Sprintf("package prefetch: %d files of %s (listed in %v): %d fetched (%s), %d already cached, %d failed, %d not fetched, in %v",
			listed, source, listedIn.Round(time.Millisecond), st.Fetched, bytesize.Format(st.Bytes),
			st.Cached, st.Failed, st.Skipped, time.Since(start).Round(time.Millisecond))
		if err != nil {
			line += "; listing stopped: " + err.Error()
		}
		report <- line
	}()
	return func() {
		cancel()
		fmt.Fprintln(log, <-report)
	}
}

// prefetchList gives fetch the files to prefetch, in parts, and returns
// where the list came from.
func (o *Prepare) prefetchList(ctx context.Context, desc, proxy, scratch string, fetch func([]pkgproxy.File)) (string, error) {
	bases := o.repoBases(desc)
	if o.Lock != nil {
		fetch(lockFiles(o.Lock, bases))
		return "the lock", nil
	}
	if o.Previous != nil {
		if prev := o.Previous(ctx); prev != nil {
			fetch(lockFiles(prev, bases))
			return "the last prepare", nil
		}
	}
	arch := o.Recipe.Arch
	if arch == "" {
		arch = "x86_64"
	}
	err := kiwi.ResolveApt(ctx, desc, o.Recipe.Profiles, arch, proxy, filepath.Join(scratch, "prefetch-apt"), func(resolved []kiwi.PackageFile) {
		files := make([]pkgproxy.File, 0, len(resolved))
		for _, f := range resolved {
			files = append(files, pkgproxy.File{URL: f.URL, Digest: cache.Digest("sha256:" + f.SHA256)})
		}
		fetch(files)
	})
	return "apt-get's resolution", err
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
