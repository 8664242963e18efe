package store

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// imsFiles is a data directory as a real IMS writes it (SPEC §2.7): each
// file a JSON array of dumped records, Python's json.dump formatting.
var imsFiles = map[string]string{
	FileRecipes:        `[{"id": "470ec686-2485-4b76-8f62-55f8ff178179", "created": "2026-11-25T04:22:46.786396", "name": "r2", "recipe_type": "kiwi-ng", "linux_distribution": "sles15", "link": {"path": "s3://ims/recipes/470ec686-2485-4b76-8f62-55f8ff178179/recipe.tar.gz", "etag": "abc", "type": "s3"}, "arch": "aarch64", "require_dkms": false, "template_dictionary": [{"key": "A", "value": "1"}]}]`,
	FileDeletedRecipes: `[]`,
	FileImages: `[{"id": "cda5eaf9-1111-4a4a-8b8b-000000000001", "created": "2026-11-25T04:22:46.787814", "name": "i1", "link": null, "arch": "aarch64", "metadata": {"a": "b"}}, ` +
		`{"id": "cda5eaf9-1111-4a4a-8b8b-000000000002", "created": "2026-11-25T04:22:47", "name": "i2", "link": {"path": "s3://boot-images/cda5eaf9-1111-4a4a-8b8b-000000000002/manifest.json", "etag": "e", "type": "s3"}, "arch": "x86_64", "metadata": {}}]`,
	FileDeletedImages:     `[{"id": "cda5eaf9-1111-4a4a-8b8b-000000000003", "created": "2026-11-25T04:22:46", "deleted": "2026-11-26T01:02:03.5", "name": "gone", "link": null, "arch": "x86_64", "metadata": {}}]`,
	FilePublicKeys:        `[{"id": "66db1862-fa14-44c6-ae4b-6a6cc8cdc34a", "created": "2026-11-25T04:22:46.1", "name": "k", "public_key": "ssh-rsa AAAA k"}]`,
	FileDeletedPublicKeys: `[]`,
	FileJobs: `[{"id": "d77ef3de-5400-482e-a579-88114b8bf2d2", "created": "2026-11-25T04:22:48.000001", "job_type": "customize", "image_root_archive_name": "x", "kernel_file_name": "vmlinuz", "initrd_file_name": "initrd", "kernel_parameters_file_name": "kernel-parameters", "status": "success", "artifact_id": "cda5eaf9-1111-4a4a-8b8b-000000000002", "public_key_id": "66db1862-fa14-44c6-ae4b-6a6cc8cdc34a", ` +
		`"kubernetes_job": "cray-ims-d77ef3de-5400-482e-a579-88114b8bf2d2-customize", "kubernetes_service": "cray-ims-d77ef3de-5400-482e-a579-88114b8bf2d2-service", "kubernetes_configmap": "cray-ims-d77ef3de-5400-482e-a579-88114b8bf2d2-configmap", "kubernetes_pvc": "cray-ims-d77ef3de-5400-482e-a579-88114b8bf2d2-job-claim", "kubernetes_secret": null, "kubernetes_namespace": "ims", "remote_build_node": "", ` +
		`"ssh_containers": [{"name": "customize", "jail": false, "status": "pending", "connection_info": {"customer_access": {"host": "d77ef3de-5400-482e-a579-88114b8bf2d2.ims.cmn.shasta.local", "port": 22}, "cluster.local": {"host": "cray-ims-d77ef3de-5400-482e-a579-88114b8bf2d2-service.ims.svc.cluster.local", "port": 22}}}], ` +
		`"enable_debug": false, "resultant_image_id": "cda5eaf9-1111-4a4a-8b8b-000000000001", "build_env_size": 60, "job_mem_size": 8, "arch": "x86_64", "require_dkms": true}]`,
	FileRemoteBuildNodes: `[{"xname": "x3000c0s1b0n0"}]`,
}

func writeIMSDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range imsFiles {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func parse(t *testing.T, data []byte) []map[string]any {
	t.Helper()
	var v []map[string]any
	if err := json.Unmarshal(data, &v); err != nil {
		t.Fatalf("parse %s: %v", data, err)
	}
	return v
}

// TestIMSDataDir loads a data directory in IMS's format, changes one
// record and checks that only that file changed, and only by that record.
func TestIMSDataDir(t *testing.T) {
	dir := writeIMSDir(t)
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if n := s.Images.Len(); n != 2 {
		t.Fatalf("loaded %d images, want 2", n)
	}
	j, ok := s.Jobs.Get("d77ef3de-5400-482e-a579-88114b8bf2d2")
	if !ok || j.ResultantImageID == nil || len(j.SSHContainers) != 1 || j.SSHContainers[0].ConnectionInfo["cluster.local"].Port != 22 {
		t.Fatalf("job = %+v", j)
	}
	// Every record reads back as IMS wrote it: the collection's JSON is
	// the file's records, key for key.
	for name, c := range map[string]interface{ JSON() []byte }{
		FileRecipes: s.Recipes, FileImages: s.Images, FileDeletedImages: s.DeletedImages,
		FilePublicKeys: s.PublicKeys, FileJobs: s.Jobs, FileRemoteBuildNodes: s.RemoteBuildNodes,
	} {
		if diff := cmp.Diff(parse(t, []byte(imsFiles[name])), parse(t, c.JSON())); diff != "" {
			t.Errorf("%s as served (-IMS +imsbuild):\n%s", name, diff)
		}
	}

	img, _ := s.Images.Get("cda5eaf9-1111-4a4a-8b8b-000000000001")
	img.Metadata = map[string]string{"a": "b", "c": "d"}
	if err := s.Images.Put(img); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	for name, content := range imsFiles {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if name != FileImages {
			if string(got) != content {
				t.Errorf("%s was rewritten though unchanged:\n%s", name, got)
			}
			continue
		}
		want := parse(t, []byte(content))
		want[0]["metadata"] = map[string]any{"a": "b", "c": "d"}
		if diff := cmp.Diff(want, parse(t, got)); diff != "" {
			t.Errorf("%s after the change (-want +got):\n%s", name, diff)
		}
	}
	// And IMS's reader (a JSON array of records) takes it back: reopen.
	s2, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if got, _ := s2.Images.Get(img.ID); got.Metadata["c"] != "d" {
		t.Errorf("reopened image = %+v", got)
	}
}

func TestLock(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir); !errors.Is(err, ErrLocked) {
		t.Errorf("second Open = %v, want ErrLocked", err)
	}
	s.Close()
	s2, err := Open(dir)
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	s2.Close()
}

func TestBadFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, FileImages), []byte(`{"not": "a list"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Open(dir)
	if err == nil {
		t.Fatal("Open of a bad images file succeeded")
	}
	// The lock is released when Open fails.
	if err := os.Remove(filepath.Join(dir, FileImages)); err != nil {
		t.Fatal(err)
	}
	s, err := Open(dir)
	if err != nil {
		t.Fatalf("Open after a failed Open: %v", err)
	}
	s.Close()
}

// TestHealDuplicates: a crash between the two writes of a soft delete
// leaves the record live and deleted; the live one wins on load.
func TestHealDuplicates(t *testing.T) {
	dir := t.TempDir()
	rec := `{"id": "k1", "created": "2026-01-01T00:00:00", "name": "k", "public_key": "p"}`
	del := `{"id": "k1", "created": "2026-01-01T00:00:00", "deleted": "2026-01-02T00:00:00", "name": "k", "public_key": "p"}`
	os.WriteFile(filepath.Join(dir, FilePublicKeys), []byte("["+rec+"]"), 0o644)
	os.WriteFile(filepath.Join(dir, FileDeletedPublicKeys), []byte("["+del+"]"), 0o644)
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.PublicKeys.Len() != 1 || s.DeletedPublicKeys.Len() != 0 {
		t.Errorf("%d keys, %d deleted; want 1, 0", s.PublicKeys.Len(), s.DeletedPublicKeys.Len())
	}
}

// TestConcurrentPuts: many writers, every acknowledged record on disk, in
// fewer writes than records (group commit).
func TestConcurrentPuts(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				id := string(rune('a'+w)) + "-" + string(rune('A'+i))
				if err := s.PublicKeys.Put(PublicKey{ID: id, Name: "n", PublicKey: "p"}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	s.Close()
	data, err := os.ReadFile(filepath.Join(dir, FilePublicKeys))
	if err != nil {
		t.Fatal(err)
	}
	if n := len(parse(t, data)); n != 1000 {
		t.Errorf("%d records on disk, want 1000", n)
	}
}

// TestOrderAfterRemovals: removals (and the compaction they trigger) keep
// insertion order in lists and files.
func TestOrderAfterRemovals(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	err = s.PublicKeys.Update(func(tx Tx[PublicKey]) error {
		for i := range 300 {
			tx.Put(PublicKey{ID: fmt.Sprintf("k%03d", i)})
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var doomed, want []string
	for i := range 300 {
		if i%3 == 0 {
			want = append(want, fmt.Sprintf("k%03d", i))
		} else {
			doomed = append(doomed, fmt.Sprintf("k%03d", i))
		}
	}
	if err := s.PublicKeys.Remove(doomed...); err != nil {
		t.Fatal(err)
	}
	s.PublicKeys.Put(PublicKey{ID: "k000", Name: "replaced"}) // stays first
	var got []string
	for _, r := range parse(t, s.PublicKeys.JSON()) {
		got = append(got, r["id"].(string))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("order (-want +got):\n%s", diff)
	}
	if k, _ := s.PublicKeys.Get("k000"); k.Name != "replaced" {
		t.Errorf("k000 = %+v", k)
	}
}

func TestRecentManifests(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	img := func(id, name string, linked bool) Image {
		im := Image{ID: id, Name: name, Metadata: map[string]string{}}
		if linked {
			im.Link = &Link{Path: "s3://b/" + id + "/manifest.json", Type: "s3"}
		}
		return im
	}
	for _, im := range []Image{img("1", "a", true), img("2", "b", true), img("3", "a", true), img("4", "a", false), img("5", "c", true), img("6", "a", true)} {
		if err := s.Images.Put(im); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		n    int
		want []string
	}{
		{"a", 2, []string{"6", "3"}},
		{"a", 5, []string{"6", "3", "1", "5", "2"}},
		{"b", 2, []string{"2", "6"}},
		{"z", 8, []string{"6", "5", "3", "2", "1"}},
	} {
		got := RecentManifests(s.Images, tc.name, tc.n)
		var want []string
		for _, id := range tc.want {
			want = append(want, "s3://b/"+id+"/manifest.json")
		}
		if !slices.Equal(got, want) {
			t.Errorf("RecentManifests(%q, %d) = %v, want %v", tc.name, tc.n, got, want)
		}
	}
}

// TestGzipFollowsWrites: while writers add records, every compressed list
// is a whole list showing at least the records there were when it was
// asked for, and after the writes it is the plain list, byte for byte.
func TestGzipFollowsWrites(t *testing.T) {
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 25 {
				if err := s.PublicKeys.Put(PublicKey{ID: fmt.Sprintf("%d-%d", w, i), Name: "n", PublicKey: "p"}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	for range 4 {
		wg.Go(func() {
			for range 25 {
				before := s.PublicKeys.Len()
				zr, err := gzip.NewReader(bytes.NewReader(s.PublicKeys.Gzip()))
				if err != nil {
					t.Error(err)
					return
				}
				data, err := io.ReadAll(zr)
				if err != nil {
					t.Error(err)
					return
				}
				if n := len(parse(t, data)); n < before {
					t.Errorf("a compressed list asked for at %d records has %d", before, n)
				}
			}
		})
	}
	wg.Wait()
	zr, err := gzip.NewReader(bytes.NewReader(s.PublicKeys.Gzip()))
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(zr)
	if !bytes.Equal(data, s.PublicKeys.JSON()) || len(parse(t, data)) != 100 {
		t.Errorf("compressed list after the writes differs from the plain one:\n%s", data)
	}
}
