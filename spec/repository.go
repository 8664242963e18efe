package spec

// repositoryTypes are the package repository formats.
var repositoryTypes = []string{"apt", "rpm-md"}

func (l *loader) decodeRepositories() {
	for _, name := range keys(l.repoBlocks) {
		b := l.repoBlocks[name]
		r := &Repository{Name: name, DeclRange: b.DefRange}
		c := l.content(b.Body, repositorySchema)
		a := l.attrs(c.Attributes, l.ctx)
		a.oneOf("type", &r.Type, repositoryTypes...)
		if attr := a.str("url", &r.URL); attr != nil && !isURL(r.URL) {
			l.errorf(attr.Expr.Range(), "Invalid url", "%q is not a URL like http://mirror.example/debian.", r.URL)
		}
		a.str("distribution", &r.Distribution)
		a.strs("components", &r.Components)
		a.duration("wait_timeout", &r.WaitTimeout)
		a.boolean("track_repos", &r.TrackRepos)
		l.cfg.Repositories[name] = r
	}
}
