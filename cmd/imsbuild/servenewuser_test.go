package main

import (
	"bytes"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/imsbuild/imsbuild/ims"
	"github.com/imsbuild/imsbuild/ims/server/servertest"
	"github.com/imsbuild/imsbuild/internal/testutil"
)

// TestServeNewUser is issue 12's "done when", as a new user meets it:
// `imsbuild serve --data-dir d` alone (its embedded S3), a client written
// for IMS (the cray CLI's /apis/ims/v3 routes) uploads examples/debian-node's
// recipe archive as `aws s3 cp` does, registers it and a public key, runs a
// create job with the real kiwi-ng, then a customize job on its image over
// a real ssh (non-jailed, IMS's default), and ends with a new image record
// whose manifest and artifacts are in S3, the parent intact, and the
// customized image booting in qemu to a login prompt. One test, so kiwi
// runs once (its bootstrap root comes from the shared cache the other kiwi
// tests fill).
func TestServeNewUser(t *testing.T) {
	if testing.Short() {
		t.Skip("real kiwi-ng build and qemu boot: minutes")
	}
	testutil.RequireRoot(t)
	for _, tool := range []string{"kiwi-ng", "debootstrap", "mksquashfs", "unsquashfs", "bwrap", "qemu-system-x86_64", "ssh", "ssh-keygen"} {
		testutil.RequireTool(t, tool)
	}
	tmp := t.TempDir()
	caFile := filepath.Join(tmp, "site-ca.pem")
	ca := servertest.SiteCA(t)
	if err := os.WriteFile(caFile, []byte(ca), 0o644); err != nil {
		t.Fatal(err)
	}
	lo := servertest.FreePorts(t, 4)
	client := &http.Client{Timeout: 30 * time.Second}
	p := startServe(t, client, "--data-dir", filepath.Join(tmp, "d"), "--ca-cert", caFile,
		"--ssh-port-range", fmt.Sprintf("%d-%d", lo, lo+3))
	s3c := embeddedS3(t, p)
	u := &servertest.Client{T: t, HTTP: client, Base: p.url + "/apis/ims/v3"}

	rec := postNodeRecipe(t, u, s3c, "")
	key := filepath.Join(tmp, "id_ed25519")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	keyID := u.Call(201, "POST", "/public-keys", map[string]any{"name": "admin", "public_key": string(pub)})["id"].(string)

	// create
	start := time.Now()
	job := u.Call(201, "POST", "/jobs", map[string]any{"job_type": "create", "artifact_id": rec,
		"public_key_id": keyID, "image_root_archive_name": "node"})
	job, seen := u.WaitJob(job["id"].(string), 20*time.Minute, "success", "error")
	if job["status"] != "success" {
		t.Fatalf("create job: %v (statuses %v)\nlog:\n%s", job["status"], seen, u.Log(job["id"].(string)))
	}
	t.Logf("create job: POST to success in %v, statuses %v", time.Since(start).Round(time.Second), seen)
	parentID := job["resultant_image_id"].(string)
	parent := u.Call(200, "GET", "/images/"+parentID, nil)
	parentArts := checkS3Image(t, s3c, parent, parentID, "node")
	if got := rootfsFile(t, s3c, parentArts, "etc/cray/ca/certificate_authority.crt"); got != ca {
		t.Errorf("the created image's /etc/cray/ca/certificate_authority.crt = %q, want the --ca-cert", got)
	}

	// customize, without ssh_containers: IMS's default, one non-jailed.
	start = time.Now()
	job = u.Call(201, "POST", "/jobs", map[string]any{"job_type": "customize", "artifact_id": parentID,
		"public_key_id": keyID, "image_root_archive_name": "node-custom"})
	id := job["id"].(string)
	sc := job["ssh_containers"].([]any)[0].(map[string]any)
	ci := sc["connection_info"].(map[string]any)["customer_access"].(map[string]any)
	host, port := ci["host"].(string), int(ci["port"].(float64))
	if sc["jail"] != false || sc["status"] != "pending" || port < lo || port > lo+3 {
		t.Fatalf("customize job's ssh container = %v", sc)
	}
	job, _ = u.WaitJob(id, 10*time.Minute, "waiting_on_user", "error", "success")
	if job["status"] != "waiting_on_user" {
		t.Fatalf("customize job: %v\nlog:\n%s", job["status"], u.Log(id))
	}
	t.Logf("customize job: POST to waiting_on_user in %v", time.Since(start).Round(time.Second))
	ssh := func(command string) (string, error) { return servertest.SSH(t, key, host, port, command) }
	const motd = "customized over ssh by a new user\n"
	if out, err := ssh("printf '" + motd + "' > /mnt/image/image-root/etc/motd && cat /mnt/image/image-root/etc/os-release"); err != nil || !strings.Contains(out, "bookworm") {
		t.Fatalf("ssh into the customize job: %v\n%s", err, out)
	}
	touchComplete(t, ssh)
	job, seen = u.WaitJob(id, 10*time.Minute, "success", "error")
	if job["status"] != "success" {
		t.Fatalf("customize job: %v (statuses %v)\nlog:\n%s", job["status"], seen, u.Log(id))
	}
	t.Logf("customize job: POST to success in %v, statuses %v", time.Since(start).Round(time.Second), seen)
	childID := job["resultant_image_id"].(string)
	if childID == parentID {
		t.Fatal("the customize job's resultant image is its parent")
	}
	child := u.Call(200, "GET", "/images/"+childID, nil)
	childArts := checkS3Image(t, s3c, child, childID, "node-custom")
	if got := rootfsFile(t, s3c, childArts, "etc/motd"); got != motd {
		t.Errorf("the customized image's /etc/motd = %q, want %q", got, motd)
	}

	// The parent: the same record, the same objects.
	if again := u.Call(200, "GET", "/images/"+parentID, nil); !equalJSON(again, parent) {
		t.Errorf("parent record changed:\n%v\nwant\n%v", again, parent)
	}
	for k, v := range checkS3Image(t, s3c, parent, parentID, "node") {
		if parentArts[k] != v {
			t.Errorf("parent artifact %s md5 %s, was %s", k, v.md5, parentArts[k].md5)
		}
	}
	if got := rootfsFile(t, s3c, parentArts, "etc/motd"); got == motd {
		t.Error("the parent's rootfs has the customize job's change")
	}

	// The customized image boots.
	bootDir := filepath.Join(tmp, "boot")
	if err := os.Mkdir(bootDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for typ, name := range map[string]string{ims.MediaTypeRootfs: "rootfs", ims.MediaTypeKernel: "kernel", ims.MediaTypeInitrd: "initrd"} {
		download(t, s3c, childArts[typ].key, filepath.Join(bootDir, name))
	}
	bootToLogin(t, bootDir)

	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	if code := p.wait(t); code != 0 {
		t.Errorf("imsbuild serve exit %d after SIGTERM\n%s", code, p.stderr)
	}
}

// postNodeRecipe does what the README tells a new user: it uploads
// examples/debian-node's node recipe archive (config.xml at its root, a
// template list; config.sh with extra appended) to serve's embedded S3
// as `aws s3 cp` does, without metadata, and registers it with release
// bookworm. It returns the recipe's id.
func postNodeRecipe(t *testing.T, u *servertest.Client, s3c *awss3.Client, extra string) string {
	t.Helper()
	recipe := filepath.Join(t.TempDir(), "recipe")
	if out, err := exec.Command("cp", "-a", "../../examples/debian-node/recipes/node", recipe).CombinedOutput(); err != nil {
		t.Fatalf("copy recipe: %v\n%s", err, out)
	}
	testutil.WriteFiles(t, recipe, map[string]string{".ims_recipe_template.yaml": "template_files:\n  - config.xml\n"}, 0o644)
	if extra != "" {
		b, err := os.ReadFile(filepath.Join(recipe, "config.sh"))
		if err != nil {
			t.Fatal(err)
		}
		testutil.WriteFiles(t, recipe, map[string]string{"config.sh": string(b) + extra}, 0o755)
	}
	archive, err := exec.Command("tar", "-C", recipe, "-czf", "-", ".").Output()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s3c.PutObject(t.Context(), &awss3.PutObjectInput{Bucket: aws.String("ims"),
		Key: aws.String("recipes/node/recipe.tar.gz"), Body: bytes.NewReader(archive)}); err != nil {
		t.Fatal(err)
	}
	return u.Call(201, "POST", "/recipes", map[string]any{
		"name": "node", "recipe_type": "kiwi-ng", "linux_distribution": "sles15",
		"link":                map[string]any{"path": "s3://ims/recipes/node/recipe.tar.gz", "etag": "", "type": "s3"},
		"template_dictionary": []map[string]string{{"key": "release", "value": "bookworm"}},
	})["id"].(string)
}

// touchComplete touches /mnt/image/complete through ssh, which ends the
// job's SSH environment; the closing connection may lose the exit status
// (ssh's 255).
func touchComplete(t *testing.T, ssh func(string) (string, error)) {
	t.Helper()
	if _, err := ssh("touch /mnt/image/complete"); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 255 {
			t.Fatalf("ssh touch complete: %v", err)
		}
	}
}

// s3Artifact is an image artifact's key in boot-images and its md5.
type s3Artifact struct{ key, md5 string }

// checkS3Image checks an image record of a job: named name, linked to
// s3://boot-images/<id>/manifest.json, the manifest IMS's, and each
// artifact under <id>/ with the md5 the manifest and the object's md5sum
// say. It returns the artifacts by media type.
func checkS3Image(t *testing.T, s3c *awss3.Client, img map[string]any, id, name string) map[string]s3Artifact {
	t.Helper()
	link, _ := img["link"].(map[string]any)
	if img["name"] != name || img["id"] != id || link == nil || link["path"] != "s3://boot-images/"+id+"/manifest.json" || link["etag"] == "" {
		t.Fatalf("image record = %v", img)
	}
	data := readObject(t, s3c, id+"/manifest.json")
	m, err := ims.ParseManifest(data)
	if err != nil {
		t.Fatalf("manifest of %s: %v\n%s", id, err, data)
	}
	arts := map[string]s3Artifact{}
	for _, a := range m.Artifacts {
		key, ok := strings.CutPrefix(a.Link.Path, "s3://boot-images/")
		if !ok || !strings.HasPrefix(key, id+"/") {
			t.Errorf("artifact %s not under s3://boot-images/%s/", a.Link.Path, id)
			continue
		}
		out, err := s3c.GetObject(t.Context(), &awss3.GetObjectInput{Bucket: aws.String("boot-images"), Key: aws.String(key)})
		if err != nil {
			t.Fatal(err)
		}
		h := md5.New()
		_, err = io.Copy(h, out.Body)
		out.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != a.MD5 || out.Metadata["md5sum"] != a.MD5 {
			t.Errorf("%s: md5 %s, md5sum metadata %s, manifest %s", key, got, out.Metadata["md5sum"], a.MD5)
		}
		arts[a.Type] = s3Artifact{key: key, md5: a.MD5}
	}
	for _, mt := range []string{ims.MediaTypeRootfs, ims.MediaTypeKernel, ims.MediaTypeInitrd} {
		if _, ok := arts[mt]; !ok {
			t.Fatalf("manifest of %s lacks %s:\n%s", id, mt, data)
		}
	}
	return arts
}

func readObject(t *testing.T, s3c *awss3.Client, key string) []byte {
	t.Helper()
	out, err := s3c.GetObject(t.Context(), &awss3.GetObjectInput{Bucket: aws.String("boot-images"), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("get boot-images/%s: %v", key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(io.LimitReader(out.Body, 1<<20))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// download copies boot-images/key to path.
func download(t *testing.T, s3c *awss3.Client, key, path string) {
	t.Helper()
	out, err := s3c.GetObject(t.Context(), &awss3.GetObjectInput{Bucket: aws.String("boot-images"), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("get boot-images/%s: %v", key, err)
	}
	defer out.Body.Close()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := io.Copy(f, out.Body); err != nil {
		t.Fatal(err)
	}
}

// rootfsFile returns a file of an image's rootfs in S3 ("" when absent).
func rootfsFile(t *testing.T, s3c *awss3.Client, arts map[string]s3Artifact, name string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "rootfs")
	download(t, s3c, arts[ims.MediaTypeRootfs].key, f)
	b, _ := exec.Command("unsquashfs", "-cat", f, name).Output()
	return string(b)
}

// embeddedS3 is a client of the S3 endpoint imsbuild serve started, from
// the URL and credentials file it printed.
func embeddedS3(t *testing.T, p *serveProc) *awss3.Client {
	t.Helper()
	m := regexp.MustCompile(`embedded S3 \(versitygw\) at (\S+), credentials in (\S+)`).FindStringSubmatch(p.stdout.String())
	if m == nil {
		t.Fatalf("no embedded S3 in %q", p.stdout)
	}
	var cred struct {
		AccessKey string `json:"access_key"`
		SecretKey string `json:"secret_key"`
		Region    string `json:"region"`
	}
	b, err := os.ReadFile(m[2])
	if err != nil || json.Unmarshal(b, &cred) != nil {
		t.Fatalf("credentials: %v %s", err, b)
	}
	return awss3.New(awss3.Options{BaseEndpoint: aws.String(m[1]), Region: cred.Region, UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(cred.AccessKey, cred.SecretKey, "")})
}

// equalJSON compares two decoded JSON values.
func equalJSON(a, b any) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}
