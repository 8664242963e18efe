// Package pkgproxy is a caching HTTP forward proxy for package downloads,
// shared across builds. The engine starts one Proxy per build run and gives
// kiwi-ng http_proxy=<Proxy.URL>, which kiwi passes on to debootstrap's wget
// and to apt-get or zypper in the image root. A package file fetched by any
// build is kept in the content-addressed store (cache.Store) and served to
// later builds, so a second recipe that shares most packages downloads only
// what is new.
//
// It lives under cache, not builders: it builds nothing and is no step of
// the graph, but a cache of package files over cache.Store and
// cache.ActionCache, whose entries `imsbuild cache ls --packages`, verify
// and prune treat like every other cache entry. The engine runs it for kiwi
// prepares; nothing in it knows kiwi.
//
// # What is cached
//
// Only package files, which repositories never change once published under
// a name and version: a GET of an http:// URL without a query whose path ends
// in .deb, .udeb, .rpm or .drpm, answered 200 by the upstream without a
// Content-Encoding. The package is stored as a blob; an action cache entry
// (step "pkgproxy", output "package") maps the URL to it. The entry's key is
// the hex sha256 of the preimage
//
//	{"type":"imsbuild/pkgproxy/v1","url":"http://<host>/<path>"}
//
// where the host is lowercased and a default port 80 dropped. The same
// package from two mirrors is thus stored once (same digest) but fetched
// once per mirror. A package's architecture is part of its file name
// (name_version_arm64.deb, name-version-release.aarch64.rpm), so the arm64
// package of an aarch64 build is kept apart from the amd64 one of the same
// name and version, and an arch-independent one (_all.deb, .noarch.rpm) is
// kept once for both.
//
// Everything else passes through fresh and is never cached: repository
// metadata (dists/, InRelease, Release, Packages*, repodata/), any answer
// other than 200, other methods, and package requests that carry a Range or
// a conditional header (If-Modified-Since, If-None-Match, ...) and are not
// in the cache. Status codes and end-to-end headers (Content-Length,
// Last-Modified, ETag, Content-Range, ...) are relayed as they are;
// hop-by-hop headers are removed both ways, as net/http/httputil does.
// Redirects are relayed to the client, not followed.
//
// # Storing
//
// A miss streams the upstream body to the client and, through a pipe, into
// Store.Put at the same time; a package is never held in memory. The client
// gets the last byte once the whole body arrived (all of the upstream's
// Content-Length, when it sent one) and the session's Check passed; the
// blob is then committed and the index entry written last, while a request
// for the same package waits for that, so a client that has a package
// finds it in the cache on its next request. A truncated upstream body, an upstream error,
// a client that disconnects and a cancelled run store nothing, and a later
// request fetches the package again; the client of a truncated download
// sees its connection aborted, never a clean short body. A store that fails
// (a full disk) does not fail the download: the package is served, just not
// cached; a store that stalls (a local cache locked by a long prune) stalls
// the download with it. Two concurrent requests for the same package may
// both fetch it; the store keeps one blob.
//
// # Serving
//
// A hit answers 200 with Content-Length and Content-Type
// application/octet-stream, for GET and HEAD. Range and conditional headers
// are ignored on a hit: the whole package is sent, which HTTP allows and
// apt and wget handle. Before answering, the proxy checks that the blob
// exists with the recorded size; a missing or truncated blob is fetched
// again from upstream. A blob corrupted in place (same size, other bytes)
// can only be noticed at its end, once headers and most bytes are sent: the
// proxy then withholds the last byte and aborts the connection, so the
// client sees a failed download (apt retries it) and never a complete
// corrupt file, and the next request for that URL in this run fetches the
// package again and heals the blob (imsbuild cache verify --repair finds
// such blobs too). apt checks every package against the signed repository
// metadata, so a package republished with other content under the same URL
// fails apt's hash check instead of installing; prune the cache (imsbuild
// cache prune --max-age) to fetch it anew.
//
// # Other requests
//
// CONNECT opens a plain TCP tunnel (https repositories work through the
// proxy, uncached). Tunnels are dialled directly, not through a site proxy.
// Plain http requests go upstream through Options.Client, which by default
// honours http_proxy/no_proxy of the environment, so a site proxy is
// chained. A request that is not an absolute-URI proxy request (a plain
// "GET /path") is answered 400.
//
// # Sessions
//
// Proxy.Session serves the same cache on a port of its own and passes its
// package requests through hooks: Served sees the URL and digest of every
// package file the session served whole (a kiwi prepare records what it
// downloaded), Check may refuse a package by its URL before any byte and
// by its digest once known (a build under a package lock serves only the
// locked files). A refused package is answered 403 with the reason, or,
// when its download from upstream already started, aborted before the
// last byte, so the client never has it; the download is still cached, as
// any package of the repository.
//
// # Prefetch
//
// Proxy.Prefetch downloads a list of package files into the cache, a few
// at a time, while a slow client (debootstrap's wget, apt with one
// connection per host) works through the same list one by one. Each file
// comes with the sha256 its repository's index gives it and is stored and
// indexed only when its content has it (Store.Put's want), so a file that
// does not match is never served from the cache. A package request of any
// session for a file being prefetched waits for that download and is
// served from the cache, so nothing is downloaded twice. A prefetch that
// is cancelled, or whose proxy closes, stops its downloads and stores
// nothing of them.
//
// # Lifetime
//
// Start listens on a free port of 127.0.0.1 (as does each session). Close
// stops listening, ends the sessions, closes
// CONNECT tunnels, waits a bounded time for requests in flight and then
// aborts them; cancelling Start's context aborts at once. Neither leaves a
// goroutine or connection behind.
package pkgproxy
