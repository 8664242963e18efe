package steps

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/imsbuild/imsbuild/builders/kiwi"
	"github.com/imsbuild/imsbuild/cache"
	"github.com/imsbuild/imsbuild/cache/local"
	"github.com/imsbuild/imsbuild/lockfile"
)

func TestPickBase(t *testing.T) {
	store, err := local.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	put := func(s string) cache.Output {
		d, n, err := store.Put(t.Context(), strings.NewReader(s), "")
		if err != nil {
			t.Fatal(err)
		}
		return cache.Output{Digest: d, Size: n}
	}
	repos := map[string]string{"debian": "sha256:1"}
	entry := func(root string, pkgs ...string) deriveEntry {
		return deriveEntry{Prepared: put(root), Packages: put("p" + root), BootstrapStatus: put("status"),
			ImagePackages: pkgs, Repositories: repos, Created: time.Unix(int64(len(root)), 0)}
	}
	small := entry("small", "1:a")
	big := entry("big-", "1:a", "1:b")
	same := entry("same--", "1:a", "1:b", "1:c")
	other := entry("other---", "1:a", "1:x")
	elsewhere := entry("elsewhere", "1:a", "1:b")
	elsewhere.Prepared.Digest = cache.Digest("sha256:" + strings.Repeat("0", 64)) // not in this store
	newer := entry("newer-repos", "1:a", "1:b")
	newer.Repositories = map[string]string{"debian": "sha256:2"}
	want := []string{"1:a", "1:b", "1:c"}

	got, ok := pickBase(t.Context(), store, []deriveEntry{small, elsewhere, same, other, newer, big}, want, repos)
	if !ok || got.Prepared != big.Prepared {
		t.Errorf("pickBase = %v %v, want the largest strict subset with the same repositories and blobs here (big)", got.Prepared.Digest, ok)
	}
	if _, ok := pickBase(t.Context(), store, []deriveEntry{same, other, newer}, want, repos); ok {
		t.Error("pickBase found a base among an equal set, a non-subset and other repository metadata")
	}
	if got := added([]string{"1:a"}, want); strings.Join(got, " ") != "b c" {
		t.Errorf("added = %v", got)
	}
}

func TestRecordDeriveBase(t *testing.T) {
	dir := t.TempDir()
	for i := range deriveKeep + 2 {
		e := deriveEntry{Prepared: cache.Output{Digest: cache.Digest("sha256:" + strings.Repeat(string(rune('a'+i)), 64))}, ImagePackages: []string{"1:a"}}
		if err := recordDeriveBase(dir, "fam", e); err != nil {
			t.Fatal(err)
		}
		if err := recordDeriveBase(dir, "fam", e); err != nil { // the same root again: replaced
			t.Fatal(err)
		}
	}
	es := readDeriveIndex(dir, "fam")
	if len(es) != deriveKeep || es[len(es)-1].Prepared.Digest[7] != byte('a'+deriveKeep+1) {
		t.Errorf("index holds %d entries, last %v; want the newest %d", len(es), es[len(es)-1].Prepared.Digest, deriveKeep)
	}
}

func TestDerivePlanVerify(t *testing.T) {
	pkg := func(n, v string) lockfile.Package { return lockfile.Package{Name: n, Version: v, Arch: "amd64"} }
	sim := func(n, v string) kiwi.SimPackage { return kiwi.SimPackage{Name: n, Version: v, Arch: "amd64"} }
	base := &lockfile.Recipe{Packages: []lockfile.Package{pkg("libc6", "2.36"), pkg("dracut", "059")}}
	derived := &lockfile.Recipe{Packages: []lockfile.Package{pkg("libc6", "2.36"), pkg("dracut", "059"), pkg("less", "590")}}
	model := func(forBase, forNew []kiwi.SimPackage, err error) func() modelResult {
		return func() modelResult { return modelResult{sims: [][]kiwi.SimPackage{forBase, forNew}, err: err} }
	}
	baseSim := []kiwi.SimPackage{sim("dracut", "059"), sim("libc6", "2.36")}
	for _, tc := range []struct {
		name  string
		model func() modelResult
		ok    bool
		log   string
	}{
		{"as fresh", model(baseSim, append(baseSim, sim("less", "590")), nil), true, "matches the base's 2 packages"},
		{"model wrong for the base", model(baseSim[:1], append(baseSim, sim("less", "590")), nil), false, "wrong for the base (extra libc6 2.36 amd64)"},
		{"another version", model(baseSim, append(baseSim, sim("less", "591")), nil), false, "missing less 591 amd64; extra less 590 amd64"},
		{"a package more", model(baseSim, append(baseSim, sim("less", "590"), sim("libpcre2", "10")), nil), false, "missing libpcre2 10 amd64"},
		{"no model", model(nil, nil, errors.New("apt-get failed")), false, "building fresh: apt-get failed"},
	} {
		var log strings.Builder
		p := &derivePlan{basePkgs: base, model: tc.model}
		if got := p.verify(derived, &log); got != tc.ok || !strings.Contains(log.String(), tc.log) {
			t.Errorf("%s: verify = %v, log %q; want %v and %q", tc.name, got, log.String(), tc.ok, tc.log)
		}
	}
}
