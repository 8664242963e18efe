package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/secure-systems-lab/go-securesystemslib/encrypted"

	"github.com/imsbuild/imsbuild/ims"
	"github.com/imsbuild/imsbuild/internal/registrytest"
	"github.com/imsbuild/imsbuild/internal/s3test"
	"github.com/imsbuild/imsbuild/internal/testutil"
	"github.com/imsbuild/imsbuild/provenance"
)

// signingPassword encrypts the cosign key of these tests; it must never
// show up in output or files.
const signingPassword = "correct-horse-battery-7f3a9c"

// cosignKeys makes a key pair with the real cosign generate-key-pair in dir
// (cosign.key, encrypted with signingPassword, and cosign.pub) and an
// ed25519 pair in PEM (ed25519.pem, ed25519.pub).
func cosignKeys(t *testing.T, dir string) {
	t.Helper()
	if out, ok := testutil.Cosign(t.Context(), t, dir, signingPassword, "generate-key-pair"); !ok {
		t.Fatalf("cosign generate-key-pair: %s", out)
	}
	pub, priv, _ := ed25519.GenerateKey(rand.Reader)
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM, err := provenance.MarshalPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "ed25519.pem"), string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})))
	writeFile(t, filepath.Join(dir, "ed25519.pub"), string(pubPEM))
}

// encryptedKey writes dir/cosign.key, an ECDSA P-256 key in cosign's
// encrypted format under signingPassword, without cosign.
func encryptedKey(t *testing.T, dir string) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	enc, err := encrypted.Encrypt(der, []byte(signingPassword))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "cosign.key"), string(pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED SIGSTORE PRIVATE KEY", Bytes: enc})))
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

// publishedIDs returns image name → id from a plain build's output
// ("compute → /path (id <uuid>)").
func publishedIDs(t *testing.T, stdout string) map[string]string {
	t.Helper()
	ids := map[string]string{}
	for _, m := range regexp.MustCompile(`(\w+) → \S+ \(id ([0-9a-f-]{36})\)`).FindAllStringSubmatch(stdout, -1) {
		ids[m[1]] = m[2]
	}
	if len(ids) == 0 {
		t.Fatalf("no published image in the output:\n%s", stdout)
	}
	return ids
}

// copyDir copies a published image directory, to tamper with the copy.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), filepath.Base(src))
	if out, err := exec.Command("cp", "-a", src, dst).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
	return dst
}

// TestSignedProvenanceVerify is issue 13's provenance done-when on the busybox
// example: a build with a cosign-generated encrypted key publishes a signed
// provenance beside each image; imsbuild verify and the real cosign accept
// it; a flipped rootfs byte, a wrong key, a changed subject, a missing
// subject or a policy violation each fail with exit 1 and say why; the key
// and its password are nowhere in the output, the cache or the published
// files.
func TestSignedProvenanceVerify(t *testing.T) {
	testutil.RequireTool(t, "cosign")
	dir := example(t)
	keys := filepath.Join(dir, "keys")
	if err := os.Mkdir(keys, 0o700); err != nil {
		t.Fatal(err)
	}
	cosignKeys(t, keys)
	writeFile(t, filepath.Join(dir, "signing.ims.hcl"), "imsbuild {\n  signing {\n    key = \"keys/cosign.key\"\n  }\n}\n")
	env := []string{"COSIGN_PASSWORD=" + signingPassword}
	build := imsbuildEnv(t, dir, env, "build", ".")
	if build.code != 0 {
		t.Fatalf("build exit %d\n%s\n%s", build.code, build.stdout, build.stderr)
	}
	ids := publishedIDs(t, build.stdout)
	images := filepath.Join(dir, "out", "boot-images")
	compute, base := filepath.Join(images, ids["compute"]), filepath.Join(images, ids["base"])
	pub := filepath.Join(keys, "cosign.pub")

	for _, d := range []string{base, compute} {
		r := imsbuild(t, dir, "verify", "--key", pub, d)
		if r.code != 0 || !strings.Contains(r.stdout, "verified "+d) || !strings.Contains(r.stdout, "subject     rootfs") {
			t.Fatalf("verify %s exit %d:\n%s\n%s", d, r.code, r.stdout, r.stderr)
		}
	}
	// The manifest IMS reads does not list the provenance.
	if m, err := os.ReadFile(filepath.Join(compute, ims.ManifestFile)); err != nil || bytes.Contains(m, []byte("provenance")) {
		t.Errorf("manifest.json lists the provenance (or is unreadable: %v):\n%s", err, m)
	}
	if out, ok := testutil.Cosign(t.Context(), t, keys, signingPassword, "verify-blob-attestation", "--key", pub, "--insecure-ignore-tlog", "--type", "slsaprovenance1",
		"--signature", filepath.Join(compute, ims.ProvenanceFile), filepath.Join(compute, ims.ArtifactRootfs)); !ok || !strings.Contains(out, "Verified OK") {
		t.Fatalf("cosign verify-blob-attestation rejects the published provenance:\n%s", out)
	}
	// The image of the build, from its cache; and --json.
	r := imsbuild(t, dir, "verify", "--json", "--key", pub, ".", "image.compute")
	var rep struct {
		Verified     bool
		Builder      string
		Image        string
		Subjects     []struct{ Name, Digest string }
		Dependencies []struct{ Name, Digest string }
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); r.code != 0 || err != nil || !rep.Verified || rep.Image != "image.compute" {
		t.Fatalf("verify image.compute exit %d (%v):\n%s\n%s", r.code, err, r.stdout, r.stderr)
	}
	baseRootfs := "sha256:" + testutil.FileSHA256(t, filepath.Join(base, ims.ArtifactRootfs))
	if len(rep.Dependencies) != 1 || rep.Dependencies[0].Name != "image.base" || rep.Dependencies[0].Digest != baseRootfs {
		t.Errorf("dependencies = %+v, want image.base by its rootfs %s", rep.Dependencies, baseRootfs)
	}
	if len(rep.Subjects) != 2 || rep.Subjects[0].Digest != "sha256:"+testutil.FileSHA256(t, filepath.Join(compute, ims.ArtifactRootfs)) {
		t.Errorf("subjects = %+v, want the rootfs and the SBOM", rep.Subjects)
	}

	// Policies: the right builder and parent pass, a wrong parent fails.
	policy := func(dep string) string {
		p := filepath.Join(t.TempDir(), "policy.json")
		writeFile(t, p, fmt.Sprintf(`{"builder_ids": [%q], "dependencies": {"image.base": %q}}`, rep.Builder, dep))
		return p
	}
	if r := imsbuild(t, dir, "verify", "--key", pub, "--policy", policy(baseRootfs), compute); r.code != 0 || !strings.Contains(r.stdout, "policy      ok") {
		t.Errorf("verify with the right policy exit %d:\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	other := "sha256:" + strings.Repeat("ab", 32)
	if r := imsbuild(t, dir, "verify", "--key", pub, "--policy", policy(other), compute); r.code != 1 || !strings.Contains(r.stderr, "violates the policy: dependency image.base") {
		t.Errorf("verify with a wrong parent digest exit %d, want 1 naming the dependency:\n%s\n%s", r.code, r.stdout, r.stderr)
	}

	for _, tc := range []struct {
		name   string
		key    string
		tamper func(t *testing.T, d string)
		want   string
	}{
		{"flipped rootfs byte", pub, func(t *testing.T, d string) {
			p := filepath.Join(d, ims.ArtifactRootfs)
			b, _ := os.ReadFile(p)
			b[len(b)/2] ^= 1
			writeFile(t, p, string(b))
		}, "artifact rootfs: artifact does not match the provenance"},
		{"wrong key", filepath.Join(keys, "ed25519.pub"), func(*testing.T, string) {}, "signature does not verify with the given key"},
		{"changed subject", pub, func(t *testing.T, d string) {
			// The payload rewritten to vouch for another rootfs, under
			// the original signature.
			p := filepath.Join(d, ims.ProvenanceFile)
			var env struct {
				PayloadType string            `json:"payloadType"`
				Payload     string            `json:"payload"`
				Signatures  []json.RawMessage `json:"signatures"`
			}
			b, _ := os.ReadFile(p)
			if err := json.Unmarshal(b, &env); err != nil {
				t.Fatal(err)
			}
			payload, _ := base64.StdEncoding.DecodeString(env.Payload)
			rootfs := testutil.FileSHA256(t, filepath.Join(d, ims.ArtifactRootfs))
			changed := strings.Replace(string(payload), rootfs, strings.Repeat("0", 64), 1)
			if changed == string(payload) {
				t.Fatal("the rootfs digest is not in the payload")
			}
			env.Payload = base64.StdEncoding.EncodeToString([]byte(changed))
			b, _ = json.Marshal(env)
			writeFile(t, p, string(b))
		}, "signature does not verify with the given key"},
		{"replaced sbom", pub, func(t *testing.T, d string) {
			writeFile(t, filepath.Join(d, ims.SBOMFile), `{"spdxVersion":"SPDX-2.3"}`)
		}, "artifact sbom.spdx.json: artifact does not match the provenance"},
		{"missing subject", pub, func(t *testing.T, d string) {
			os.Remove(filepath.Join(d, ims.SBOMFile))
		}, "subject sbom.spdx.json is missing"},
		{"no provenance", pub, func(t *testing.T, d string) {
			os.Remove(filepath.Join(d, ims.ProvenanceFile))
		}, "no signed provenance"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := copyDir(t, compute)
			tc.tamper(t, d)
			r := imsbuild(t, dir, "verify", "--key", tc.key, d)
			if r.code != 1 || !strings.Contains(r.stderr, tc.want) || !strings.Contains(r.stdout, "NOT VERIFIED") {
				t.Errorf("verify exit %d, want 1 with %q:\n%s\n%s", r.code, tc.want, r.stdout, r.stderr)
			}
		})
	}
	// --json says so too, on stdout.
	bad := copyDir(t, compute)
	os.Remove(filepath.Join(bad, ims.SBOMFile))
	r = imsbuild(t, dir, "verify", "--json", "--key", pub, bad)
	var failed struct {
		Verified bool
		Error    string
	}
	if err := json.Unmarshal([]byte(r.stdout), &failed); r.code != 1 || err != nil || failed.Verified || !strings.Contains(failed.Error, "subject sbom.spdx.json is missing") {
		t.Errorf("verify --json of a dir without its SBOM exit %d (%v):\n%s\n%s", r.code, err, r.stdout, r.stderr)
	}
	if out, ok := testutil.Cosign(t.Context(), t, keys, signingPassword, "verify-blob-attestation", "--key", filepath.Join(keys, "ed25519.pub"), "--insecure-ignore-tlog", "--type", "slsaprovenance1",
		"--signature", filepath.Join(compute, ims.ProvenanceFile), filepath.Join(compute, ims.ArtifactRootfs)); ok {
		t.Errorf("cosign accepts the provenance with the wrong key:\n%s", out)
	}
	for _, args := range [][]string{
		{"verify", compute}, // no --key
		{"verify", "--key", filepath.Join(keys, "nope.pub"), compute}, // unreadable key
		{"verify", "--key", filepath.Join(keys, "cosign.key"), compute},
		{"verify", "--key", pub, "--policy", pub, compute},                         // not a policy
		{"verify", "--key", pub, "oci://registry.example/hpc/compute:1?plain=yes"}, // unknown query
		{"verify", "--key", pub, ".", "image.nope"},                                // no such image in the build
	} {
		if r := imsbuild(t, dir, args...); r.code != 2 {
			t.Errorf("imsbuild %s exit %d, want 2:\n%s\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
		}
	}

	// A no-op build signs nothing new: the same envelope is published.
	before, _ := os.ReadFile(filepath.Join(compute, ims.ProvenanceFile))
	if r := imsbuildEnv(t, dir, env, "build", "."); r.code != 0 || !strings.Contains(r.stdout, "0 built, 2 cached") {
		t.Fatalf("second build exit %d:\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if after, _ := os.ReadFile(filepath.Join(compute, ims.ProvenanceFile)); !bytes.Equal(before, after) {
		t.Errorf("a no-op build signed again (an ECDSA signature differs each time)")
	}

	// Later builds decrypt the key only to sign something new (a no-op
	// build needs only its remembered public key): a changed build file
	// changes the statement, and then a wrong password fails the build and
	// the right one signs.
	f, err := os.OpenFile(filepath.Join(dir, "signing.ims.hcl"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(f, "# a changed build file")
	f.Close()
	wrong := imsbuildEnv(t, dir, []string{"COSIGN_PASSWORD=not-" + signingPassword}, "build", ".")
	if wrong.code != 1 || !strings.Contains(wrong.stdout+wrong.stderr, "wrong or missing password for the encrypted private key (COSIGN_PASSWORD)") {
		t.Errorf("build with a wrong password exit %d, want 1 saying so:\n%s\n%s", wrong.code, wrong.stdout, wrong.stderr)
	}
	resigned := imsbuildEnv(t, dir, env, "build", ".")
	if resigned.code != 0 {
		t.Fatalf("build after the change exit %d:\n%s\n%s", resigned.code, resigned.stdout, resigned.stderr)
	}
	if after, _ := os.ReadFile(filepath.Join(compute, ims.ProvenanceFile)); bytes.Equal(before, after) {
		t.Error("a changed build file did not change the provenance")
	}
	if r := imsbuild(t, dir, "verify", "--key", pub, compute); r.code != 0 {
		t.Errorf("verify after re-signing exit %d:\n%s\n%s", r.code, r.stdout, r.stderr)
	}

	assertNoSecrets(t, keys, signingPassword, build.stdout+build.stderr+wrong.stdout+wrong.stderr+resigned.stdout+resigned.stderr, dir)
}

// assertNoSecrets fails when the password or any form of the private key
// in keys/cosign.key (its encrypted PEM, its PKCS#8 DER, its scalar) is in
// out or in a file under dirs (keys excluded).
func assertNoSecrets(t *testing.T, keys, password, out string, dirs ...string) {
	t.Helper()
	encPEM, err := os.ReadFile(filepath.Join(keys, "cosign.key"))
	if err != nil {
		t.Fatal(err)
	}
	key, err := provenance.ParsePrivateKey(encPEM, []byte(password))
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(encPEM)
	secrets := map[string]string{
		"password":          password,
		"encrypted key":     base64.StdEncoding.EncodeToString(block.Bytes)[:48],
		"PKCS#8 key base64": base64.StdEncoding.EncodeToString(der)[:48],
		"PKCS#8 key hex":    hex.EncodeToString(der)[:48],
	}
	if k, ok := key.(interface{ Bytes() ([]byte, error) }); ok {
		if b, err := k.Bytes(); err == nil {
			secrets["private scalar hex"] = hex.EncodeToString(b)
			secrets["private scalar base64"] = base64.StdEncoding.EncodeToString(b)
		}
	}
	check := func(where, text string) {
		for what, s := range secrets {
			if strings.Contains(text, s) {
				t.Errorf("%s holds the signing key's %s", where, what)
			}
		}
	}
	check("the build output", out)
	for _, d := range dirs {
		err := filepath.WalkDir(d, func(p string, e fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if e.IsDir() && p == keys {
				return filepath.SkipDir
			}
			if !e.Type().IsRegular() {
				return nil
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			check(p, string(b))
			if strings.HasSuffix(p, ".jsonl") { // the statement is base64 in the envelope
				var env struct{ Payload string }
				if json.Unmarshal(b, &env) == nil {
					payload, _ := base64.StdEncoding.DecodeString(env.Payload)
					check(p+" (statement)", string(payload))
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestSigningKeyErrors: a signing key that cannot be used is a
// configuration error (exit 2) at the build file's key argument, file:line:col,
// and the message never holds the key or the password.
func TestSigningKeyErrors(t *testing.T) {
	testutil.RequireTool(t, "cosign")
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "root"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "build.ims.hcl"), "image \"a\" {\n  name   = \"a\"\n  import = \"./root\"\n}\n")
	cosignKeys(t, dir)
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	der, _ := x509.MarshalPKCS8PrivateKey(rsaKey)
	writeFile(t, filepath.Join(dir, "rsa.pem"), string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})))
	for _, tc := range []struct {
		name, key string
		env       []string
		want      string // the summary
		detail    string
	}{
		{"missing file", "nope.pem", nil, "Cannot read signing key", "no such file"},
		{"no password", "cosign.key", []string{"COSIGN_PASSWORD="}, "Signing key password missing", "set COSIGN_PASSWORD"},
		{"wrong password", "cosign.key", []string{"COSIGN_PASSWORD=not-" + signingPassword}, "Wrong signing key password", "COSIGN_PASSWORD does not decrypt"},
		{"public key", "cosign.pub", nil, "Unsupported signing key", "is a public key"},
		{"rsa key", "rsa.pem", nil, "Unsupported signing key", "*rsa.PrivateKey, want ed25519 or ECDSA P-256"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			writeFile(t, filepath.Join(dir, "signing.ims.hcl"), fmt.Sprintf("imsbuild {\n  signing {\n    key = %q\n  }\n}\n", tc.key))
			r := imsbuildEnv(t, dir, tc.env, "build", ".")
			if r.code != 2 || !strings.Contains(r.stderr, "signing.ims.hcl:3:11: error: "+tc.want) || !strings.Contains(strings.Join(strings.Fields(r.stderr), " "), tc.detail) {
				t.Errorf("build exit %d, want 2 with signing.ims.hcl:3:11: %q and %q:\n%s\n%s", r.code, tc.want, tc.detail, r.stdout, r.stderr)
			}
			if strings.Contains(r.stderr, signingPassword) {
				t.Errorf("the password is in the error:\n%s", r.stderr)
			}
			// --signing-key overrides the block, and its errors name the flag.
			r = imsbuildEnv(t, dir, tc.env, "build", "--signing-key", filepath.Join(dir, tc.key), ".")
			if r.code != 2 || !strings.Contains(r.stderr, "--signing-key") {
				t.Errorf("build --signing-key exit %d, want 2 naming the flag:\n%s", r.code, r.stderr)
			}
		})
	}
	os.Remove(filepath.Join(dir, "signing.ims.hcl"))
	if r := imsbuild(t, dir, "build", "--signing-key", filepath.Join(dir, "ed25519.pem"), "."); r.code != 0 {
		t.Errorf("build with an ed25519 PEM key exit %d:\n%s\n%s", r.code, r.stdout, r.stderr)
	}
}

// TestVerifyS3: an image published to S3 (versitygw) with its provenance
// verifies as s3://bucket/<id>, and a replaced SBOM object fails it.
func TestVerifyS3(t *testing.T) {
	if testing.Short() {
		t.Skip("starts an S3 server")
	}
	testutil.RequireTool(t, "cosign")
	srv := s3test.Start(t)
	srv.CreateBucket(t, "boot-images")
	dir := example(t)
	keys := t.TempDir()
	cosignKeys(t, keys)
	writeFile(t, filepath.Join(dir, "s3.ims.hcl"), fmt.Sprintf(`
publish "s3" "site" {
  images     = [image.compute]
  endpoint   = %q
  region     = %q
  path_style = true
}
`, srv.Endpoint, srv.Region))
	env := []string{"AWS_ACCESS_KEY_ID=" + srv.AccessKey, "AWS_SECRET_ACCESS_KEY=" + srv.SecretKey}
	r := imsbuildEnv(t, dir, env, "build", "--signing-key", filepath.Join(keys, "ed25519.pem"), ".")
	if r.code != 0 {
		t.Fatalf("build exit %d:\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	id := publishedIDs(t, r.stdout)["compute"]
	url := fmt.Sprintf("s3://boot-images/%s?endpoint=%s&path_style=true&region=%s", id, srv.Endpoint, srv.Region)
	pub := filepath.Join(keys, "ed25519.pub")
	if r := imsbuildEnv(t, dir, env, "verify", "--key", pub, url); r.code != 0 || !strings.Contains(r.stdout, "subject     sbom.spdx.json") {
		t.Fatalf("verify %s exit %d:\n%s\n%s", url, r.code, r.stdout, r.stderr)
	}
	if r := imsbuildEnv(t, dir, env, "verify", "--key", filepath.Join(keys, "cosign.pub"), url); r.code != 1 || !strings.Contains(r.stderr, "signature does not verify") {
		t.Errorf("verify with the wrong key exit %d, want 1:\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	_, err := srv.Client(t).PutObject(t.Context(), &awss3.PutObjectInput{
		Bucket: aws.String("boot-images"), Key: aws.String(id + "/" + ims.SBOMFile),
		Body: strings.NewReader(`{"spdxVersion":"SPDX-2.3"}`),
	})
	if err != nil {
		t.Fatal(err)
	}
	if r := imsbuildEnv(t, dir, env, "verify", "--key", pub, url); r.code != 1 || !strings.Contains(r.stderr, "artifact sbom.spdx.json: artifact does not match") {
		t.Errorf("verify of a replaced SBOM exit %d, want 1:\n%s\n%s", r.code, r.stdout, r.stderr)
	}
}

// TestSignedProvenanceOCI: a signed build published to a registry is
// accepted by imsbuild verify oci://… and by the real cosign's
// verify-attestation and verify on the image; another key is refused by
// both (exit 1), and an unknown URL query is a usage error.
func TestSignedProvenanceOCI(t *testing.T) {
	testutil.RequireTool(t, "cosign")
	reg := registrytest.Start(t)
	dir := example(t)
	keys := filepath.Join(dir, "keys")
	if err := os.Mkdir(keys, 0o700); err != nil {
		t.Fatal(err)
	}
	cosignKeys(t, keys)
	writeFile(t, filepath.Join(dir, "signing.ims.hcl"), fmt.Sprintf(`imsbuild {
  signing {
    key = "keys/ed25519.pem"
  }
}

publish "oci" "registry" {
  images     = [image.compute]
  repository = "%s/hpc/${image.name}"
  tags       = ["nightly"]
}
`, reg.Host))
	if r := imsbuild(t, dir, "build", "."); r.code != 0 {
		t.Fatalf("build exit %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	ref := reg.Host + "/hpc/busybox-compute:nightly"
	pub, other := filepath.Join(keys, "ed25519.pub"), filepath.Join(keys, "cosign.pub")

	r := imsbuild(t, dir, "verify", "--json", "--key", pub, "oci://"+ref)
	var rep struct {
		Verified bool
		Subjects []struct{ Name, Digest string }
	}
	if err := json.Unmarshal([]byte(r.stdout), &rep); r.code != 0 || err != nil || !rep.Verified {
		t.Fatalf("verify oci://%s exit %d (%v):\n%s\n%s", ref, r.code, err, r.stdout, r.stderr)
	}
	var names []string
	for _, s := range rep.Subjects {
		names = append(names, s.Name)
	}
	if !slices.Contains(names, ims.ArtifactRootfs) || !slices.Contains(names, ims.SBOMFile) {
		t.Errorf("subjects %v, want the rootfs and the SBOM among them", names)
	}
	for _, args := range [][]string{
		{"verify-attestation", "--key", pub, "--insecure-ignore-tlog", "--allow-http-registry", "--type", "slsaprovenance1", ref},
		{"verify", "--key", pub, "--insecure-ignore-tlog", "--allow-http-registry", ref},
	} {
		if out, ok := testutil.Cosign(t.Context(), t, keys, signingPassword, args...); !ok {
			t.Errorf("cosign %s rejects the published image:\n%s", args[0], out)
		}
		args[2] = other
		if out, ok := testutil.Cosign(t.Context(), t, keys, signingPassword, args...); ok {
			t.Errorf("cosign %s accepts the image with another key:\n%s", args[0], out)
		}
	}
	if r := imsbuild(t, dir, "verify", "--key", other, "oci://"+ref); r.code != 1 || !strings.Contains(r.stderr, "signature") {
		t.Errorf("verify with another key exit %d, want 1 naming the signature:\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if r := imsbuild(t, dir, "verify", "--key", pub, "oci://"+ref+"?plain=yes"); r.code != 2 {
		t.Errorf("verify with an unknown query exit %d, want 2:\n%s\n%s", r.code, r.stdout, r.stderr)
	}
}
