package s3

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/imsbuild/imsbuild/ims"
	"github.com/imsbuild/imsbuild/internal/s3test"
	"github.com/imsbuild/imsbuild/publish"
)

// BenchmarkPublish1GiB publishes a 1 GiB rootfs with the default part size
// and concurrency to a local versitygw and reports the throughput and the
// process's peak RSS (VmHWM, reset before the loop) in MiB, which stays
// near PartSize × (Concurrency+2) above the baseline however big the blob.
//
//	go test -run '^$' -bench Publish1GiB -benchtime 1x ./publish/s3
func BenchmarkPublish1GiB(b *testing.B) {
	const size = 1 << 30
	srv := s3test.Start(b)
	srv.CreateBucket(b, DefaultBucket)
	store := newFileStore(b)
	rootfs := putBlob(b, store, 1024, size)
	cfg := testConfig(srv)
	cfg.PartSize, cfg.Concurrency = 0, 0 // the defaults
	p := newPublisher(b, cfg)
	c := srv.Client(b)

	resetPeakRSS(b)
	b.SetBytes(size)
	i := 0
	for b.Loop() {
		i++
		img := publish.Image{
			Label: "bench", ID: fmt.Sprintf("bench-%d", i), Created: time.Unix(0, 0),
			Outputs: map[string]publish.Artifact{ims.ArtifactRootfs: rootfs},
		}
		if err := p.Publish(b.Context(), store, []publish.Image{img}); err != nil {
			b.Fatalf("Publish() error: %v", err)
		}
		b.StopTimer()
		for _, name := range []string{ims.ArtifactRootfs, ims.ManifestFile} {
			if _, err := c.DeleteObject(b.Context(), &s3.DeleteObjectInput{
				Bucket: aws.String(DefaultBucket), Key: aws.String(p.Key(img.ID, name)),
			}); err != nil {
				b.Fatal(err)
			}
		}
		b.StartTimer()
	}
	hwm := peakRSS(b)
	b.ReportMetric(float64(hwm)/1024, "peak-RSS-MiB")
	b.Logf("peak RSS (VmHWM) %d MiB with part size %d MiB × concurrency %d", hwm/1024, DefaultPartSize>>20, DefaultConcurrency)
}

// resetPeakRSS resets VmHWM to the current RSS (Linux clear_refs "5").
func resetPeakRSS(b *testing.B) {
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		b.Logf("reset peak RSS: %v (VmHWM includes the setup)", err)
	}
}

// peakRSS returns VmHWM from /proc/self/status in KiB.
func peakRSS(b *testing.B) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			n, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				b.Fatalf("parse VmHWM %q: %v", v, err)
			}
			return n
		}
	}
	b.Fatal("no VmHWM in /proc/self/status")
	return 0
}
