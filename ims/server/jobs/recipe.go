package jobs

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/nikolalohinski/gonja/v2"
	"github.com/nikolalohinski/gonja/v2/exec"
	"github.com/nikolalohinski/gonja/v2/loaders"
	"go.yaml.in/yaml/v3"

	"github.com/imsbuild/imsbuild/ims/server/blob"
	"github.com/imsbuild/imsbuild/ims/server/store"
	"github.com/imsbuild/imsbuild/internal/untar"
)

// Bounds on what a recipe archive may hold; a kiwi description is small.
const (
	maxRecipeArchive = 1 << 30
	maxTemplateFile  = 16 << 20
	maxTemplateList  = 1 << 20
)

// templateListFile lists the recipe files IMS renders with Jinja2.
const templateListFile = ".ims_recipe_template.yaml"

// md5RE is an ETag that is a plain md5 (a single-part upload's).
var md5RE = regexp.MustCompile(`^[0-9a-f]{32}$`)

// fetchRecipe downloads the recipe archive of rec into dir/recipe.tgz,
// checks its md5 as IMS does, and unpacks it into dest. The expected md5
// is the object's md5sum metadata (IMS's DOWNLOAD_MD5SUM), else the
// record's or the object's ETag when that is a plain md5.
func fetchRecipe(ctx context.Context, blobs *blob.Store, rec store.Recipe, dir, dest string, log io.Writer) error {
	if rec.Link == nil || rec.Link.Type != "s3" {
		return fmt.Errorf("fetch recipe %s: no s3 link", rec.ID)
	}
	bucket, key, err := blob.ParseURL(rec.Link.Path)
	if err != nil {
		return fmt.Errorf("fetch recipe %s: %w", rec.ID, err)
	}
	body, info, err := blobs.Get(ctx, bucket, key)
	if err != nil {
		return fmt.Errorf("fetch recipe: %w", err)
	}
	defer body.Close()
	if info.Size > maxRecipeArchive {
		return fmt.Errorf("fetch recipe %s: %d bytes, more than the %d a recipe may have", rec.Link.Path, info.Size, maxRecipeArchive)
	}
	want := info.Metadata["md5sum"]
	for _, etag := range []string{rec.Link.Etag, info.ETag} {
		if want == "" && md5RE.MatchString(etag) {
			want = etag
		}
	}
	archive := filepath.Join(dir, "recipe.tgz")
	f, err := os.OpenFile(archive, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("fetch recipe: %w", err)
	}
	defer f.Close()
	h := md5.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(body, maxRecipeArchive+1))
	if err != nil {
		return fmt.Errorf("fetch recipe %s: %w", rec.Link.Path, err)
	}
	if n > maxRecipeArchive {
		return fmt.Errorf("fetch recipe %s: more than %d bytes", rec.Link.Path, maxRecipeArchive)
	}
	got := hex.EncodeToString(h.Sum(nil))
	switch {
	case want == "":
		fmt.Fprintf(log, "recipe %s: %d bytes, md5 %s (nothing to check it against)\n", rec.Link.Path, n, got)
	case !strings.EqualFold(want, got):
		return fmt.Errorf("fetch recipe %s: md5 %s, want %s", rec.Link.Path, got, want)
	default:
		fmt.Fprintf(log, "recipe %s: %d bytes, md5 %s checked\n", rec.Link.Path, n, got)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return fmt.Errorf("fetch recipe: %w", err)
	}
	tr, err := untar.NewReader(f)
	if err != nil {
		return fmt.Errorf("unpack recipe %s: %w", rec.Link.Path, err)
	}
	defer tr.Close()
	if err := untar.Extract(ctx, tr, dest, untar.Options{Log: log}); err != nil {
		return fmt.Errorf("unpack recipe %s: %w", rec.Link.Path, err)
	}
	if _, err := os.Lstat(filepath.Join(dest, "config.xml")); err != nil {
		return fmt.Errorf("recipe %s: no config.xml at the archive's root", rec.Link.Path)
	}
	return nil
}

// renderRecipe renders the recipe in dir the IMS way (fetch.py
// template_recipe): each file that .ims_recipe_template.yaml lists under
// template_files is a Jinja2 template rendered with the values of the
// template dictionary, keeping its mode. Paths may not leave dir (nor
// through symlinks); templates may not include other files.
func renderRecipe(dir string, dict *[]store.TemplateEntry, log io.Writer) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("render recipe: %w", err)
	}
	defer root.Close()
	list, err := readLimited(root, templateListFile, maxTemplateList)
	if errors.Is(err, fs.ErrNotExist) {
		if dict != nil && len(*dict) > 0 {
			fmt.Fprintf(log, "warning: the recipe has a template_dictionary but no %s: nothing rendered\n", templateListFile)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("render recipe: %w", err)
	}
	var spec struct {
		TemplateFiles []string `yaml:"template_files"`
	}
	if err := yaml.Unmarshal(list, &spec); err != nil {
		return fmt.Errorf("render recipe: %s: %w", templateListFile, err)
	}
	values := map[string]any{}
	if dict != nil {
		for _, e := range *dict {
			values[e.Key] = e.Value
		}
	}
	if len(spec.TemplateFiles) > 0 && len(values) == 0 {
		return fmt.Errorf("render recipe: %s lists template files but the recipe's template_dictionary is empty", templateListFile)
	}
	for _, name := range spec.TemplateFiles {
		clean := path.Clean(name)
		if name == "" || path.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, "../") {
			return fmt.Errorf("render recipe: template file %q is outside the recipe", name)
		}
		if err := renderFile(root, clean, values); err != nil {
			return fmt.Errorf("render recipe: %s: %w", clean, err)
		}
		fmt.Fprintf(log, "rendered %s\n", clean)
	}
	return nil
}

func readLimited(root *os.Root, name string, max int64) ([]byte, error) {
	f, err := root.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", name)
	}
	data, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > max {
		return nil, fmt.Errorf("%s is larger than %d bytes", name, max)
	}
	return data, nil
}

// renderFile renders one template file in place through root.
func renderFile(root *os.Root, name string, values map[string]any) error {
	src, err := readLimited(root, name, maxTemplateFile)
	if err != nil {
		return err
	}
	fi, err := root.Lstat(name)
	if err != nil {
		return err
	}
	// A loader that knows only this template: {% include %} and friends
	// cannot read other files of the host.
	loader := loaders.MustNewMemoryLoader(map[string]string{"/template": string(src)})
	tpl, err := exec.NewTemplate("/template", gonja.DefaultConfig, loader, gonja.DefaultEnvironment)
	if err != nil {
		return fmt.Errorf("parse: %w", err)
	}
	var out bytes.Buffer
	if err := tpl.Execute(&out, exec.NewContext(values)); err != nil {
		return fmt.Errorf("render: %w", err)
	}
	// As with Jinja2 (keep_trailing_newline off), a final newline of the
	// template is dropped.
	rendered := out.Bytes()
	f, err := root.OpenFile(name, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	if _, err := f.Write(rendered); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(fi.Mode().Perm()); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// repo is one repository of a kiwi description.
type repo struct {
	Type         string `xml:"type,attr"`
	Distribution string `xml:"distribution,attr"`
	Source       struct {
		Path string `xml:"path,attr"`
	} `xml:"source"`
}

// descriptionRepos returns the http(s) repositories of the description
// in dir, as IMS's wait-for-repos reads them.
func descriptionRepos(dir string) ([]repo, error) {
	data, err := os.ReadFile(filepath.Join(dir, "config.xml"))
	if err != nil {
		return nil, err
	}
	var desc struct {
		Repos []repo `xml:"repository"`
	}
	if err := xml.Unmarshal(data, &desc); err != nil {
		return nil, fmt.Errorf("config.xml: %w", err)
	}
	var out []repo
	for _, r := range desc.Repos {
		p := strings.TrimSpace(r.Source.Path)
		if strings.HasPrefix(p, "http://") || strings.HasPrefix(p, "https://") {
			r.Source.Path = strings.TrimRight(p, "/")
			out = append(out, r)
		}
	}
	return out, nil
}

// probeURLs are the files whose presence says a repository is up: IMS
// HEADs repodata/repomd.xml; an apt repository has dists/<dist>/InRelease
// or Release instead.
func (r repo) probeURLs() []string {
	if r.Type == "apt-deb" {
		d := strings.TrimSpace(r.Distribution)
		return []string{r.Source.Path + "/dists/" + d + "/InRelease", r.Source.Path + "/dists/" + d + "/Release"}
	}
	return []string{r.Source.Path + "/repodata/repomd.xml"}
}

// waitTimes are IMS's wait-for-repos timings.
var waitTimes = struct{ total, every, request time.Duration }{500 * time.Second, 10 * time.Second, 10 * time.Second}

// waitForRepos waits until every http(s) repository of the description in
// dir answers, as IMS's wait-for-repos does; a description without any is
// an error, as in IMS.
func waitForRepos(ctx context.Context, client *http.Client, dir string, log io.Writer) error {
	repos, err := descriptionRepos(dir)
	if err != nil {
		return fmt.Errorf("wait for repositories: %w", err)
	}
	if len(repos) == 0 {
		return errors.New("wait for repositories: the recipe's config.xml has no http(s) repository (IMS needs one)")
	}
	ctx, cancel := context.WithTimeout(ctx, waitTimes.total)
	defer cancel()
	pending := slices.Clone(repos)
	for {
		var still []repo
		for _, r := range pending {
			if !repoUp(ctx, client, r) {
				still = append(still, r)
			} else {
				fmt.Fprintf(log, "repository %s is up\n", r.Source.Path)
			}
		}
		if pending = still; len(pending) == 0 {
			return nil
		}
		for _, r := range pending {
			fmt.Fprintf(log, "waiting for repository %s\n", r.Source.Path)
		}
		select {
		case <-ctx.Done():
			var names []string
			for _, r := range pending {
				names = append(names, r.Source.Path)
			}
			return fmt.Errorf("wait for repositories: %s not up after %v: %w", strings.Join(names, ", "), waitTimes.total, ctx.Err())
		case <-time.After(waitTimes.every):
		}
	}
}

func repoUp(ctx context.Context, client *http.Client, r repo) bool {
	for _, u := range r.probeURLs() {
		rctx, cancel := context.WithTimeout(ctx, waitTimes.request)
		req, err := http.NewRequestWithContext(rctx, http.MethodHead, u, nil)
		if err != nil {
			cancel()
			return false
		}
		resp, err := client.Do(req)
		cancel()
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return true
			}
		}
	}
	return false
}
