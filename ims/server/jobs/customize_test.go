package jobs

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/opencontainers/go-digest"

	"github.com/imsbuild/imsbuild/ims"
	"github.com/imsbuild/imsbuild/ims/server"
	"github.com/imsbuild/imsbuild/ims/server/blob"
	"github.com/imsbuild/imsbuild/ims/server/servertest"
	"github.com/imsbuild/imsbuild/ims/server/store"
	"github.com/imsbuild/imsbuild/internal/s3test"
	"github.com/imsbuild/imsbuild/internal/testutil"
	"github.com/imsbuild/imsbuild/provenance"
)

// testCA stands in for a --ca-cert PEM: customize jobs only copy it.
const testCA = "-----BEGIN CERTIFICATE-----\nTUlJQ2Zha2U=\n-----END CERTIFICATE-----\n"

// custEnv is imsbuild serve over HTTP with a job runner, a real S3
// (versitygw) and a registered image and public key to customize.
type custEnv struct {
	// Client calls the API root, …/v3.
	*servertest.Client

	t      *testing.T
	st     *store.Store
	blobs  *blob.Store
	s3     *s3.Client
	runner *Runner
	key    string // the client's private key file
	keyID  string // its public-keys record
	parent string // the image record to customize
	// parentObjects are the md5s of the parent's objects, by key.
	parentObjects map[string]string
	// signer signs the provenance of the job images.
	signer ed25519.PrivateKey
}

func newCustEnv(t *testing.T) *custEnv { return newCustEnvWith(t, nil) }

// newCustEnvWith is newCustEnv whose runner's config mod changes.
func newCustEnvWith(t *testing.T, mod func(*Config, *s3test.Server)) *custEnv {
	t.Helper()
	testutil.RequireRoot(t)
	for _, tool := range []string{"mksquashfs", "unsquashfs", "bwrap", "ssh", "ssh-keygen", "busybox"} {
		testutil.RequireTool(t, tool)
	}
	s3s := s3test.Start(t)
	s3s.CreateBucket(t, "boot-images")
	s3s.CreateBucket(t, "ims")
	client := s3.New(s3.Options{
		BaseEndpoint: aws.String(s3s.Endpoint), Region: s3s.Region, UsePathStyle: true,
		Credentials: s3s.Client(t).Options().Credentials, Retryer: aws.NopRetryer{},
	})
	blobs := blob.New(client)
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	lo := servertest.FreePorts(t, 4)
	_, signer, _ := ed25519.GenerateKey(rand.Reader)
	cfg := Config{
		Store: st, Blobs: blobs, CacheDir: filepath.Join(dir, "cache"), MaxJobs: 2,
		SSHHost: "127.0.0.1", SSHPortFirst: lo, SSHPortLast: lo + 3, Logger: slog.New(slog.DiscardHandler),
		CACerts: []string{testCA}, Signer: signer, Version: "test",
	}
	if mod != nil {
		mod(&cfg, s3s)
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	srv, err := server.New(server.Config{Store: st, Blobs: blobs, Runner: r, Version: "test", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	e := &custEnv{Client: &servertest.Client{T: t, Base: ts.URL + "/v3"}, t: t, st: st, blobs: blobs, s3: client, runner: r, signer: signer}
	e.putParent()
	e.putKey()
	return e
}

// putParent packs a busybox root (with a kernel and initrd in /boot),
// uploads it as IMS's upload_artifacts would and registers the image.
func (e *custEnv) putParent() {
	t := e.t
	root := testutil.BusyboxRoot(t, true)
	if err := os.WriteFile(filepath.Join(root, "etc/motd"), []byte("parent\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sq := filepath.Join(t.TempDir(), "rootfs")
	if out, err := exec.Command("mksquashfs", root, sq, "-noappend", "-no-progress", "-quiet").CombinedOutput(); err != nil {
		t.Fatalf("mksquashfs: %v\n%s", err, out)
	}
	prefix := "parent-" + strconv.Itoa(os.Getpid())
	e.parentObjects = map[string]string{}
	var arts []map[string]any
	for _, a := range []struct{ name, src string }{{"rootfs", sq}, {"kernel", filepath.Join(root, "boot/vmlinuz")}, {"initrd", filepath.Join(root, "boot/initrd.img")}} {
		data, err := os.ReadFile(a.src)
		if err != nil {
			t.Fatal(err)
		}
		sum := md5.Sum(data)
		md := hex.EncodeToString(sum[:])
		key := prefix + "/" + a.name
		if _, err := e.blobs.Upload(t.Context(), "boot-images", key, bytes.NewReader(data), int64(len(data)), ims.MediaTypeOf(a.name), map[string]string{"md5sum": md}); err != nil {
			t.Fatal(err)
		}
		e.parentObjects[key] = md
		arts = append(arts, map[string]any{"link": map[string]any{"path": "s3://boot-images/" + key, "etag": md, "type": "s3"}, "md5": md, "type": ims.MediaTypeOf(a.name)})
	}
	m, _ := json.MarshalIndent(map[string]any{"version": "1.0", "created": "2026-01-02 03:04:05", "artifacts": arts}, "", "    ")
	if err := e.blobs.Put(t.Context(), "boot-images", prefix+"/manifest.json", m, "application/json"); err != nil {
		t.Fatal(err)
	}
	sum := md5.Sum(m)
	e.parentObjects[prefix+"/manifest.json"] = hex.EncodeToString(sum[:])
	rec := e.Call(http.StatusCreated, http.MethodPost, "/images", map[string]any{
		"name": "parent", "link": map[string]any{"path": "s3://boot-images/" + prefix + "/manifest.json", "etag": "", "type": "s3"},
	})
	e.parent = rec["id"].(string)
}

// putKey makes the client's key pair and registers its public key.
func (e *custEnv) putKey() {
	e.key = filepath.Join(e.t.TempDir(), "id_ed25519")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", e.key).CombinedOutput(); err != nil {
		e.t.Fatalf("ssh-keygen: %v\n%s", err, out)
	}
	pub, err := os.ReadFile(e.key + ".pub")
	if err != nil {
		e.t.Fatal(err)
	}
	rec := e.Call(http.StatusCreated, http.MethodPost, "/public-keys", map[string]any{"name": "admin", "public_key": string(pub)})
	e.keyID = rec["id"].(string)
}

// postJob starts a customize job of the parent image.
func (e *custEnv) postJob(jail bool, name string) (id, host string, port int) {
	e.t.Helper()
	rec := e.Call(http.StatusCreated, http.MethodPost, "/jobs", map[string]any{
		"job_type": "customize", "artifact_id": e.parent, "public_key_id": e.keyID,
		"image_root_archive_name": name, "ssh_containers": []map[string]any{{"name": "customize", "jail": jail}},
	})
	ci := rec["ssh_containers"].([]any)[0].(map[string]any)["connection_info"].(map[string]any)["customer_access"].(map[string]any)
	return rec["id"].(string), ci["host"].(string), int(ci["port"].(float64))
}

// waitJob polls job id until its status is want, failing on another final
// status.
func (e *custEnv) waitJob(id, want string) map[string]any {
	e.t.Helper()
	rec, _ := e.WaitJob(id, 2*time.Minute, want, "success", "error")
	if rec["status"] != want {
		e.t.Fatalf("job %s: status %s, want %s; log:\n%s", id, rec["status"], want, e.jobLog(id))
	}
	return rec
}

func (e *custEnv) jobLog(id string) string {
	rc, err := e.runner.Log(id)
	if err != nil {
		return err.Error()
	}
	defer rc.Close()
	b, _ := io.ReadAll(rc)
	return string(b)
}

// checkStatuses fails unless the job's log shows it set want, in order.
func (e *custEnv) checkStatuses(id string, want ...string) {
	e.t.Helper()
	var got []string
	for line := range strings.Lines(e.jobLog(id)) {
		if _, st, ok := strings.Cut(strings.TrimSpace(line), "imsbuild serve: status "); ok {
			got = append(got, st)
		}
	}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		e.t.Errorf("job %s went through %v, want %v", id, got, want)
	}
}

// sshEnd runs a command that ends the environment. The environment lets
// the session end before it closes the connection, so the client gets the
// exit status (not ssh's 255, "closed by remote host").
func (e *custEnv) sshEnd(host string, port int, command string) (string, error) {
	return e.ssh(host, port, command)
}

// ssh runs command as root on host:port with the client's key.
func (e *custEnv) ssh(host string, port int, command string) (string, error) {
	return servertest.SSH(e.t, e.key, host, port, command)
}

// checkParent fails unless the parent's objects are unchanged and its
// record still links them.
func (e *custEnv) checkParent() {
	e.t.Helper()
	for key, want := range e.parentObjects {
		body, _, err := e.blobs.Get(e.t.Context(), "boot-images", key)
		if err != nil {
			e.t.Fatalf("parent object %s: %v", key, err)
		}
		h := md5.New()
		_, err = io.Copy(h, body)
		body.Close()
		if got := hex.EncodeToString(h.Sum(nil)); err != nil || got != want {
			e.t.Errorf("parent object %s: md5 %s (%v), want %s", key, got, err, want)
		}
	}
	rec := e.Call(http.StatusOK, http.MethodGet, "/images/"+e.parent, nil)
	if p := rec["link"].(map[string]any)["path"].(string); !strings.HasSuffix(p, "/manifest.json") || !strings.Contains(p, "parent-") {
		e.t.Errorf("parent link = %s", p)
	}
}

// images returns the ids of the image records.
func (e *custEnv) images() []string {
	var ids []string
	for _, im := range e.st.Images.All() {
		ids = append(ids, im.ID)
	}
	return ids
}

// unsquashRootfs downloads the rootfs of image id and unpacks it.
func (e *custEnv) unsquashRootfs(id string) string {
	e.t.Helper()
	dir := e.t.TempDir()
	sq := filepath.Join(dir, "rootfs")
	body, _, err := e.blobs.Get(e.t.Context(), "boot-images", id+"/rootfs")
	if err != nil {
		e.t.Fatal(err)
	}
	f, err := os.Create(sq)
	if err == nil {
		_, err = io.Copy(f, body)
		f.Close()
	}
	body.Close()
	if err != nil {
		e.t.Fatal(err)
	}
	root := filepath.Join(dir, "root")
	if out, err := exec.Command("unsquashfs", "-no-progress", "-d", root, sq).CombinedOutput(); err != nil {
		e.t.Fatalf("unsquashfs: %v\n%s", err, out)
	}
	return root
}

// TestCustomizeJob: a real ssh client logs in to the job's
// connection_info, changes the image and touches complete; the job ends
// in success with a new image record whose artifacts are under its id in
// S3 and whose rootfs has the change; the parent is unchanged.
func TestCustomizeJob(t *testing.T) {
	e := newCustEnv(t)
	tests := []struct {
		name     string
		jail     bool
		image    string // the image root inside the session
		complete string
	}{
		{name: "non-jailed", image: "/mnt/image/image-root", complete: "/mnt/image/complete"},
		{name: "jailed", jail: true, image: "", complete: "/tmp/complete"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e.t = t
			posted := time.Now()
			id, host, port := e.postJob(tc.jail, "custom-"+tc.name)
			if host != "127.0.0.1" || port == 0 {
				t.Fatalf("connection_info = %s:%d", host, port)
			}
			waiting := e.waitJob(id, "waiting_on_user")
			t.Logf("POST to waiting_on_user: %v", time.Since(posted).Round(time.Millisecond))
			// IMS sets an SSH container's status to pending and never
			// changes it; the job's status says where it is.
			if st := waiting["ssh_containers"].([]any)[0].(map[string]any)["status"]; st != "pending" {
				t.Errorf("ssh container status while waiting_on_user = %v, want pending", st)
			}
			out, err := e.sshEnd(host, port, "cat "+tc.image+"/etc/motd && echo $IMS_JOB_ID $IMS_ARCH && echo "+tc.name+" > "+tc.image+"/etc/motd && touch "+tc.complete)
			if want := "parent\n" + id + " x86_64\n"; err != nil || out != want {
				t.Fatalf("ssh = %q, %v; want %q (the parent's motd, IMS's session environment)", out, err, want)
			}
			completed := time.Now()
			rec := e.waitJob(id, "success")
			t.Logf("complete to success: %v", time.Since(completed).Round(time.Millisecond))
			if st := rec["ssh_containers"].([]any)[0].(map[string]any)["status"]; st != "pending" {
				t.Errorf("ssh container status after success = %v, want pending", st)
			}
			e.checkStatuses(id, "fetching_image", "waiting_on_user", "packaging_artifacts")
			newID, _ := rec["resultant_image_id"].(string)
			img := e.Call(http.StatusOK, http.MethodGet, "/images/"+newID, nil)
			if img["name"] != "custom-"+tc.name || img["link"].(map[string]any)["path"] != "s3://boot-images/"+newID+"/manifest.json" {
				t.Fatalf("new image record = %v", img)
			}
			data, err := e.blobs.Read(t.Context(), "boot-images", newID+"/manifest.json", 1<<20)
			if err != nil {
				t.Fatal(err)
			}
			m, err := ims.ParseManifest(data)
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range m.Artifacts {
				info, err := e.blobs.Head(t.Context(), "boot-images", strings.TrimPrefix(a.Link.Path, "s3://boot-images/"))
				if err != nil || !strings.HasPrefix(a.Link.Path, "s3://boot-images/"+newID+"/") ||
					info.Metadata["md5sum"] != a.MD5 || info.Metadata["x-shasta-ims-image-id"] != newID || info.Metadata["x-shasta-ims-job-id"] != id {
					t.Errorf("artifact %s: head %+v, %v", a.Link.Path, info, err)
				}
			}
			if len(m.Artifacts) != 3 {
				t.Errorf("manifest has %d artifacts, want rootfs, kernel and initrd", len(m.Artifacts))
			}
			// The customized image's SBOM is beside its artifacts.
			if info, err := e.blobs.Head(t.Context(), "boot-images", newID+"/"+ims.SBOMFile); err != nil || info.Size == 0 || info.Metadata["x-shasta-ims-image-id"] != newID {
				t.Errorf("%s/%s: head %+v, %v; want the SBOM", newID, ims.SBOMFile, info, err)
			}
			// And its provenance, signed with the server's key, whose
			// subjects are the uploaded artifacts and SBOM.
			env, err := e.blobs.Read(t.Context(), "boot-images", newID+"/"+ims.ProvenanceFile, provenance.MaxEnvelope)
			if err != nil {
				t.Fatalf("%s/%s: %v", newID, ims.ProvenanceFile, err)
			}
			digests := map[string]digest.Digest{}
			for _, name := range []string{ims.ArtifactRootfs, ims.ArtifactKernel, ims.ArtifactInitrd, ims.SBOMFile} {
				b, err := e.blobs.Read(t.Context(), "boot-images", newID+"/"+name, 64<<20)
				if err != nil {
					t.Fatal(err)
				}
				digests[name] = digest.FromBytes(b)
			}
			if _, err := provenance.VerifyDigests(t.Context(), env, e.signer.Public(), digests); err != nil {
				t.Errorf("the job image's provenance: %v", err)
			}
			root := e.unsquashRootfs(newID)
			if b, err := os.ReadFile(filepath.Join(root, "etc/motd")); err != nil || string(b) != tc.name+"\n" {
				t.Errorf("etc/motd in the new image = %q, %v; want %q", b, err, tc.name+"\n")
			}
			if b, err := os.ReadFile(filepath.Join(root, "etc/cray/ca/certificate_authority.crt")); err != nil || string(b) != testCA {
				t.Errorf("/etc/cray/ca/certificate_authority.crt in the new image = %q, %v; want the --ca-cert PEM", b, err)
			}
			for _, leak := range []string{"complete", "image-root", "tmp/complete", "mnt/image"} {
				if _, err := os.Lstat(filepath.Join(root, leak)); err == nil {
					t.Errorf("%s was packed into the new image", leak)
				}
			}
			e.checkParent()
		})
	}
}

// TestCustomizeJobFailed: touching failed ends the job in error with no new
// image record or object.
func TestCustomizeJobFailed(t *testing.T) {
	e := newCustEnv(t)
	for _, jail := range []bool{false, true} {
		t.Run(fmt.Sprintf("jail=%v", jail), func(t *testing.T) {
			e.t = t
			before := e.images()
			id, host, port := e.postJob(jail, "doomed")
			e.waitJob(id, "waiting_on_user")
			failed := map[bool]string{false: "/mnt/image/failed", true: "/tmp/failed"}[jail]
			if out, err := e.sshEnd(host, port, "echo x > /etc/junk; touch "+failed); err != nil {
				t.Fatalf("ssh = %q, %v", out, err)
			}
			rec := e.waitJob(id, "error")
			e.checkStatuses(id, "fetching_image", "waiting_on_user")
			if rec["resultant_image_id"] != nil {
				t.Errorf("resultant_image_id = %v, want null", rec["resultant_image_id"])
			}
			if after := e.images(); len(after) != len(before) {
				t.Errorf("image records %v after a failed job, want %v", after, before)
			}
			objs, err := listKeys(t.Context(), e, "boot-images")
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range objs {
				if _, ok := e.parentObjects[k]; !ok {
					t.Errorf("object %s left after a failed job", k)
				}
			}
			e.checkParent()
		})
	}
}

// TestCustomizeJobDelete: DELETE of a job waiting on its user closes the
// SSH listener and leaves no session process and no work directory.
func TestCustomizeJobDelete(t *testing.T) {
	e := newCustEnv(t)
	id, host, port := e.postJob(false, "deleted")
	e.waitJob(id, "waiting_on_user")
	marker := "sleep 7" + strconv.Itoa(os.Getpid()%1000) + ".25"
	cmd := exec.CommandContext(t.Context(), "ssh", "-i", e.key, "-p", strconv.Itoa(port),
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
		"root@"+host, "exec sleep 7''"+strings.TrimPrefix(marker, "sleep 7"))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Wait() }()
	deadline := time.Now().Add(30 * time.Second)
	for len(testutil.ProcessesMatching(t, marker)) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the session's process never started")
		}
		time.Sleep(50 * time.Millisecond)
	}
	workGlob := filepath.Join(e.runner.cfg.CacheDir, "work", "run-*")
	work, _ := filepath.Glob(workGlob)
	if len(work) == 0 {
		t.Fatalf("no work directory %s while the job waits", workGlob)
	}
	e.Call(http.StatusNoContent, http.MethodDelete, "/jobs/"+id, nil)
	if c, err := net.DialTimeout("tcp", net.JoinHostPort(host, strconv.Itoa(port)), time.Second); err == nil {
		c.Close()
		t.Error("the SSH port still answers after DELETE")
	}
	if ps := testutil.ProcessesMatching(t, marker); len(ps) > 0 {
		t.Errorf("session processes left after DELETE: %v", ps)
	}
	if left, _ := filepath.Glob(workGlob); len(left) > 0 {
		t.Errorf("work directories left after DELETE: %v", left)
	}
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(mounts)) {
		if strings.Contains(line, work[0]) {
			t.Errorf("mount left after DELETE: %s", line)
		}
	}
	if len(e.images()) != 1 {
		t.Errorf("image records %v after DELETE, want only the parent", e.images())
	}
	e.checkParent()
}

// listKeys lists every object key of bucket.
func listKeys(ctx context.Context, e *custEnv, bucket string) ([]string, error) {
	var keys []string
	p := s3.NewListObjectsV2Paginator(e.s3, &s3.ListObjectsV2Input{Bucket: aws.String(bucket)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, o := range page.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
	}
	return keys, nil
}

// TestCustomizeJobBadMD5: a rootfs whose content does not match its md5
// (the object's md5sum metadata and the manifest) fails the job in
// fetching_image: no SSH environment, no image.
func TestCustomizeJobBadMD5(t *testing.T) {
	e := newCustEnv(t)
	var rootfsKey string
	for k := range e.parentObjects {
		if strings.HasSuffix(k, "/rootfs") {
			rootfsKey = k
		}
	}
	// Same md5sum metadata, other bytes: what a corrupted or swapped object looks like.
	junk := []byte("not the rootfs the manifest names")
	if _, err := e.blobs.Upload(t.Context(), "boot-images", rootfsKey, bytes.NewReader(junk), int64(len(junk)),
		ims.MediaTypeRootfs, map[string]string{"md5sum": e.parentObjects[rootfsKey]}); err != nil {
		t.Fatal(err)
	}
	id, host, port := e.postJob(false, "bad")
	rec := e.waitJob(id, "error")
	if rec["resultant_image_id"] != nil || len(e.images()) != 1 {
		t.Errorf("resultant_image_id %v, image records %v; want none but the parent", rec["resultant_image_id"], e.images())
	}
	e.checkStatuses(id, "fetching_image")
	if log := e.jobLog(id); !strings.Contains(log, "md5") {
		t.Errorf("job log does not name the md5 mismatch:\n%s", log)
	}
	if c, err := net.DialTimeout("tcp", net.JoinHostPort(host, strconv.Itoa(port)), time.Second); err == nil {
		c.Close()
		t.Error("an SSH environment opened on a rootfs that failed its md5 check")
	}
}

// TestCustomizeJobOnlyItsKey: the environment lets in the job's public key
// only, not another registered key, and only as root.
func TestCustomizeJobOnlyItsKey(t *testing.T) {
	e := newCustEnv(t)
	jobKey, jobKeyID := e.key, e.keyID
	e.putKey() // a second registered key, not the job's
	otherKey := e.key
	e.key, e.keyID = jobKey, jobKeyID
	id, host, port := e.postJob(false, "keys")
	e.waitJob(id, "waiting_on_user")
	e.key = otherKey
	if out, err := e.ssh(host, port, "touch /mnt/image/complete"); err == nil || !strings.Contains(err.Error(), "Permission denied") {
		t.Errorf("ssh with another registered key = %q, %v; want Permission denied", out, err)
	}
	e.key = jobKey
	cmd := exec.CommandContext(t.Context(), "ssh", "-i", e.key, "-p", strconv.Itoa(port),
		"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
		"-o", "LogLevel=ERROR", "admin@"+host, "touch /mnt/image/complete")
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "Permission denied") {
		t.Errorf("ssh as admin = %q, %v; want Permission denied", out, err)
	}
	if j, _ := e.st.Jobs.Get(id); j.Status != "waiting_on_user" {
		t.Fatalf("job status %s after refused logins, want waiting_on_user", j.Status)
	}
	if out, err := e.sshEnd(host, port, "touch /mnt/image/failed"); err != nil {
		t.Fatalf("ssh with the job's key = %q, %v", out, err)
	}
	e.waitJob(id, "error")
}

// TestCustomizeJobsAtOnce: two customize jobs wait on their users at the
// same time, on their own ports, and each new image has only its own
// change.
func TestCustomizeJobsAtOnce(t *testing.T) {
	e := newCustEnv(t)
	type job struct {
		id, host string
		port     int
		path     string // the image's /etc inside the session
		complete string
	}
	a, b := job{path: "/mnt/image/image-root/etc", complete: "/mnt/image/complete"}, job{path: "/etc", complete: "/tmp/complete"}
	a.id, a.host, a.port = e.postJob(false, "a")
	b.id, b.host, b.port = e.postJob(true, "b")
	if a.port == b.port {
		t.Fatalf("both jobs got port %d", a.port)
	}
	e.waitJob(a.id, "waiting_on_user")
	e.waitJob(b.id, "waiting_on_user")
	for _, j := range []job{a, b} {
		if out, err := e.ssh(j.host, j.port, "echo "+j.id+" > "+j.path+"/who"); err != nil {
			t.Fatalf("ssh to job %s = %q, %v", j.id, out, err)
		}
	}
	for _, j := range []job{b, a} {
		if out, err := e.sshEnd(j.host, j.port, "touch "+j.complete); err != nil {
			t.Fatalf("ssh to job %s = %q, %v", j.id, out, err)
		}
		rec := e.waitJob(j.id, "success")
		root := e.unsquashRootfs(rec["resultant_image_id"].(string))
		if got, err := os.ReadFile(filepath.Join(root, "etc/who")); err != nil || string(got) != j.id+"\n" {
			t.Errorf("etc/who in job %s's image = %q, %v; want its own id", j.id, got, err)
		}
	}
	e.checkParent()
}
