package engine

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestStepLogProgressBars: a line rewritten with carriage returns reaches
// events and the tail in its final state only; the file keeps it whole.
func TestStepLogProgressBars(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.log")
	var lines []string
	l, err := newStepLog(path, func(s string) string { return s }, func(s string) { lines = append(lines, s) })
	if err != nil {
		t.Fatal(err)
	}
	var bar strings.Builder
	for i := 0; i <= 100; i += 10 {
		bar.WriteString("\rProcessing: [" + strings.Repeat("#", i/10) + strings.Repeat(" ", 10-i/10) + "] " + strconv.Itoa(i) + "%")
	}
	raw := "start\r\n" + bar.String() + "\r\n" + "half\rdone\r  \n"
	if _, err := l.Write([]byte(raw)); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	want := []string{"start", "Processing: [##########] 100%", "done"}
	if strings.Join(lines, "|") != strings.Join(want, "|") {
		t.Errorf("lines = %q, want %q", lines, want)
	}
	if got := l.Tail(); got != strings.Join(want, "\n") {
		t.Errorf("Tail() = %q, want %q", got, strings.Join(want, "\n"))
	}
	if got, _ := os.ReadFile(path); string(got) != raw {
		t.Errorf("log file = %q, want the raw output %q", got, raw)
	}
}

// TestPackStatsOnlySummarizedInEvents: a build's events carry one line for
// mksquashfs' statistics while the step's log file keeps them all.
func TestPackStatsOnlySummarizedInEvents(t *testing.T) {
	f := newFixture(t)
	rec := &recorder{}
	logDir := t.TempDir()
	e, err := New(f.cfg, f.cache, f.cache.Actions(), Options{Events: rec.add, LogDir: logDir, WorkDir: filepath.Join(f.cache.Dir(), "work", "t")})
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Build(t.Context(), []string{"image.base"}); err != nil {
		t.Fatalf("Build() = %v", err)
	}
	var summaries int
	for _, ev := range rec.events {
		if ev.Step != "image.base" || ev.Status != StatusLog {
			continue
		}
		if strings.HasPrefix(ev.Line, "Number of") || strings.HasPrefix(ev.Line, "Exportable Squashfs") {
			t.Errorf("event line %q: mksquashfs' statistics reached the console", ev.Line)
		}
		if strings.HasPrefix(ev.Line, "mksquashfs: zstd compressed, ") {
			summaries++
		}
	}
	if summaries != 1 {
		t.Errorf("%d summary lines in the events, want 1", summaries)
	}
	log, err := os.ReadFile(filepath.Join(logDir, "image.base.log"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(log), "Exportable Squashfs") || !strings.Contains(string(log), "Number of inodes") {
		t.Errorf("log file lacks mksquashfs' statistics:\n%s", log)
	}
}
