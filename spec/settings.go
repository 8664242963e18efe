package spec

import (
	"path/filepath"

	"github.com/hashicorp/go-version"
	"github.com/hashicorp/hcl/v2"
)

// decodeSettings decodes the imsbuild block and checks required_version.
func (l *loader) decodeSettings() {
	s := &l.cfg.Settings
	s.Cache.Dir = filepath.Join(l.r.dir, ".imsbuild", "cache")
	if len(l.imsbuild) == 0 {
		return
	}
	c := l.content(l.imsbuild[0].Body, imsbuildSchema)
	a := l.attrs(c.Attributes, l.ctx)
	if attr := a.str("required_version", &s.RequiredVersion); attr != nil {
		l.checkVersion(s.RequiredVersion, attr.Expr.Range())
	}
	if b := l.single(c.Blocks, "cache"); b != nil {
		l.decodeCache(b, &s.Cache)
	}
	if b := l.single(c.Blocks, "signing"); b != nil {
		l.decodeSigning(b, &s.Signing)
	}
	if b := l.single(c.Blocks, "executor"); b != nil {
		l.decodeExecutor(b, &s.Executor)
	}
}

// decodeSigning decodes the imsbuild.signing block. The key file is not
// read here (no I/O beyond the build files): the CLI reads it and reports
// its problems at KeyRange.
func (l *loader) decodeSigning(b *hcl.Block, ss *SigningSettings) {
	c := l.content(b.Body, signingSchema)
	a := l.attrs(c.Attributes, l.ctx)
	if attr := a.path("key", &ss.Key); attr != nil {
		ss.KeyRange = attr.Expr.Range()
	}
}

func (l *loader) checkVersion(constraint string, rng hcl.Range) {
	cs, err := version.NewConstraint(constraint)
	if err != nil {
		l.errorf(rng, "Invalid required_version", "%q is not a version constraint like \">= 0.1\": %v.", constraint, err)
		return
	}
	if !cs.Check(version.Must(version.NewVersion(Version))) {
		l.errorf(rng, "Unsupported imsbuild version",
			"This build requires imsbuild %s, but this is imsbuild %s.", constraint, Version)
	}
}

func (l *loader) decodeCache(b *hcl.Block, cs *CacheSettings) {
	c := l.content(b.Body, cacheSchema)
	a := l.attrs(c.Attributes, l.ctx)
	a.path("dir", &cs.Dir)
	if attr := a.strs("from", &cs.From); attr != nil {
		for _, u := range cs.From {
			l.checkCacheURL(u, attr)
		}
	}
	if attr := a.str("to", &cs.To); attr != nil {
		l.checkCacheURL(cs.To, attr)
	}
	a.str("salt", &cs.Salt)
	if attr := a.strs("env", &cs.Env); attr != nil {
		for _, name := range cs.Env {
			if name == "" || !validEnvName(name) {
				l.errorf(attr.Expr.Range(), "Invalid environment variable name", "%q is not a valid environment variable name.", name)
			}
		}
	}
}

func validEnvName(s string) bool {
	for i, r := range s {
		if !(r == '_' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// checkCacheURL accepts the remote cache locations: s3:// and oci:// URLs.
func (l *loader) checkCacheURL(u string, attr *hcl.Attribute) {
	scheme, rest, ok := cutScheme(u)
	if ok && (scheme == "s3" || scheme == "oci") && rest != "" {
		return
	}
	l.errorf(attr.Expr.Range(), "Invalid remote cache",
		"%q is not a remote cache location; use s3://bucket/prefix or oci://registry/repository.", u)
}

func cutScheme(u string) (scheme, rest string, ok bool) {
	if !isURL(u) {
		return "", "", false
	}
	for i := 0; i+3 <= len(u); i++ {
		if u[i:i+3] == "://" {
			return u[:i], u[i+3:], true
		}
	}
	return "", "", false
}
