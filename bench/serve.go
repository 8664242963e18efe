package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	awss3 "github.com/aws/aws-sdk-go-v2/service/s3"
)

// benchServeCreateWarm times a second IMS create job of an unchanged
// recipe through `imsbuild serve` (embedded S3), from POST /v3/jobs to
// status success, as a client of IMS sees it. The anchor is IMS itself,
// which rebuilds the recipe with kiwi every time (minutes). The first job
// is cold (kiwi runs; its bootstrap root may come from the host's
// bootstrap cache).
func benchServeCreateWarm(ctx context.Context, scratch, bin string) {
	dir := filepath.Join(scratch, "serve")
	check(os.MkdirAll(dir, 0o755))
	srv := startServe(ctx, bin, filepath.Join(dir, "data"))
	defer srv.stop()
	endpoint, credFile, addr := srv.s3Endpoint, srv.credFile, srv.addr
	if endpoint == "" {
		check(fmt.Errorf("imsbuild serve did not say where its embedded S3 is:\n%s", srv.stderr.String()))
	}
	var cred struct {
		AccessKey string `json:"access_key"`
		SecretKey string `json:"secret_key"`
		Region    string `json:"region"`
	}
	b, err := os.ReadFile(credFile)
	check(err)
	check(json.Unmarshal(b, &cred))
	s3c := awss3.New(awss3.Options{BaseEndpoint: aws.String(endpoint), Region: cred.Region, UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider(cred.AccessKey, cred.SecretKey, "")})

	// The recipe: examples/debian-node's, its config.xml an IMS template.
	recipe := filepath.Join(dir, "recipe")
	run("cp", "-a", "examples/debian-node/recipes/node", recipe)
	check(os.WriteFile(filepath.Join(recipe, ".ims_recipe_template.yaml"), []byte("template_files:\n  - config.xml\n"), 0o644))
	archive, err := exec.Command("tar", "-C", recipe, "-czf", "-", ".").Output()
	check(err)
	sum := md5.Sum(archive)
	_, err = s3c.PutObject(ctx, &awss3.PutObjectInput{Bucket: aws.String("ims"), Key: aws.String("recipes/bench/recipe.tar.gz"),
		Body: bytes.NewReader(archive), Metadata: map[string]string{"md5sum": hex.EncodeToString(sum[:])}})
	check(err)
	base := "http://" + addr + "/apis/ims/v3"
	rec := imsCall(base+"/recipes", "POST", map[string]any{"name": "bench", "recipe_type": "kiwi-ng", "linux_distribution": "sles15",
		"link":                map[string]any{"path": "s3://ims/recipes/bench/recipe.tar.gz", "etag": "", "type": "s3"},
		"template_dictionary": []map[string]string{{"key": "release", "value": "bookworm"}}})["id"]
	key := imsCall(base+"/public-keys", "POST", map[string]any{"name": "bench", "public_key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJ5Ys3HbWA7VHWRj2n7L3sc0x1Dg9D6FqJkvNrU/rFhm bench"})["id"]
	job := map[string]any{"job_type": "create", "artifact_id": rec, "public_key_id": key, "image_root_archive_name": "bench"}
	createJob := func() time.Duration {
		start := time.Now()
		id := imsCall(base+"/jobs", "POST", job)["id"].(string)
		for {
			st := imsCall(base+"/jobs/"+id, "GET", nil)["status"]
			if st == "success" {
				return time.Since(start)
			}
			if st == "error" {
				log, _ := http.Get(base + "/jobs/" + id + "/log")
				b, _ := io.ReadAll(log.Body)
				check(fmt.Errorf("create job %s failed:\n%s", id, tailLines(string(b), 30)))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	cold := createJob()
	warm := median(max(pairRuns, 3), func() { createJob() })
	fmt.Printf("serve-create-warm: second create job of an unchanged recipe, POST to success %v (goal < 5s; IMS rebuilds with kiwi: minutes); the cold one %v, ratio %.3f\n",
		warm.Round(time.Millisecond), cold.Round(time.Millisecond), float64(warm)/float64(cold))
}

// imsCall sends a JSON request to the IMS API and decodes the answer.
func imsCall(url, method string, body any) map[string]any {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		check(err)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	check(err)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	check(err)
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	check(err)
	if resp.StatusCode >= 300 {
		check(fmt.Errorf("%s %s = %d %s", method, url, resp.StatusCode, data))
	}
	var m map[string]any
	check(json.Unmarshal(data, &m))
	return m
}

// serveChild is an `imsbuild serve` child process.
type serveChild struct {
	addr       string // where the API listens
	s3Endpoint string // the embedded S3 it started, if it said so
	credFile   string // that S3's credentials
	cmd        *exec.Cmd
	stderr     bytes.Buffer
}

// startServe runs `imsbuild serve` on a free loopback port with its data
// in data, and returns once it says it listens.
func startServe(ctx context.Context, bin, data string) *serveChild {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	check(err)
	s := &serveChild{addr: l.Addr().String()}
	l.Close()
	s.cmd = exec.CommandContext(ctx, bin, "serve", "--listen", s.addr, "--data-dir", data)
	stdout, err := s.cmd.StdoutPipe()
	check(err)
	s.cmd.Stderr = &s.stderr
	check(s.cmd.Start())
	s3re := regexp.MustCompile(`embedded S3 \(versitygw\) at (\S+), credentials in (\S+)`)
	listening := false
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if m := s3re.FindStringSubmatch(sc.Text()); m != nil {
			s.s3Endpoint, s.credFile = m[1], m[2]
		}
		if strings.Contains(sc.Text(), "listening on") {
			listening = true
			break
		}
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	if !listening {
		s.stop()
		check(fmt.Errorf("imsbuild serve did not start:\n%s", s.stderr.String()))
	}
	return s
}

// stop interrupts the server and waits for it.
func (s *serveChild) stop() {
	_ = s.cmd.Process.Signal(os.Interrupt)
	_ = s.cmd.Wait()
}
