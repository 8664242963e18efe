package main

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/imsbuild/imsbuild/engine"
)

// A kiwi-ng --type kis system build log, cut down to its phase lines.
const kisLog = `[ INFO    ]: 23:59:58 | Loading XML description
[ DEBUG   ]: 23:59:58 | EXEC: [mkdir -p /x]
[ INFO    ]: 23:59:59 | Preparing new root system
[ INFO    ]: 00:00:05 | Installing bootstrap packages
[ INFO    ]: 00:00:05 | --> package: apt
[ INFO    ]: 00:00:45 | Installing system (chroot) for build type: kis
[ INFO    ]: 00:00:45 | --> package: dracut
[ INFO    ]: 00:08:45 | Calling config.sh script
[ INFO    ]: 00:08:50 | Creating system image
[ INFO    ]: 00:09:50 | Creating boot image
[ INFO    ]: 00:10:20 | Cleaning up BootImageDracut instance
`

func TestRawPhases(t *testing.T) {
	start := time.Date(2026, 12, 3, 23, 59, 57, 500e6, time.UTC)
	end := time.Date(2026, 12, 4, 0, 10, 21, 0, time.UTC)
	got := rawPhases(kiwiMarks(kisLog, start), start, end)
	want := phases{
		"setup": 7500 * time.Millisecond, "bootstrap": 40 * time.Second, "install": 8 * time.Minute,
		"config": 5 * time.Second, "pack": time.Minute, "initrd": 31 * time.Second,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("rawPhases() (-want +got):\n%s", diff)
	}
}

func TestOursPhases(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	log := func(s float64, line string) engine.Event {
		return engine.Event{Time: at(s), Step: "image.base/prepare", Status: engine.StatusLog, Line: line}
	}
	events := []engine.Event{
		{Time: at(0.1), Step: "image.base", Status: engine.StatusStarted},
		log(1, "[ INFO    ]: 10:00:01 | Loading XML description"),
		log(3, "[ INFO    ]: 10:00:03 | Installing bootstrap packages"),
		log(13, "[ INFO    ]: 10:00:13 | Installing system (chroot) for build type: tbz"),
		log(13, "[ INFO    ]: 10:00:13 | --> package: dracut"),
		log(13.5, "Get:1 http://deb.debian.org/debian bookworm/main amd64 dracut"),
		log(113, "[ INFO    ]: 10:01:53 | Calling config.sh script"),
		{Time: at(115), Step: "image.base/prepare", Status: engine.StatusDone},
		{Time: at(135), Step: "image.base", Status: engine.StatusDone},
	}
	got := oursPhases(events, t0)
	want := phases{
		"setup": 3 * time.Second, "bootstrap": 10 * time.Second, "install": 100 * time.Second,
		"config": 2 * time.Second, "pack": 20 * time.Second,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("oursPhases() (-want +got):\n%s", diff)
	}
	if got := phaseTable([]phases{got}, []phases{{"initrd": time.Second}}); got !=
		"setup 3s/–, bootstrap 10s/–, install 1m40s/–, config 2s/–, pack 20s/–, initrd –/1s (imsbuild/kiwi-ng, medians)" {
		t.Errorf("phaseTable() = %q", got)
	}
}

func TestOursPhasesDerived(t *testing.T) {
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	log := func(s float64, line string) engine.Event {
		return engine.Event{Time: at(s), Step: "image.base/prepare", Status: engine.StatusLog, Line: line}
	}
	events := []engine.Event{
		log(1, "derive: deriving from base sha256:…, adding less"),
		log(4, "[ INFO    ]: 10:00:04 | Installing system (chroot) for build type: tbz"),
		log(4, "[ INFO    ]: 10:00:04 | --> package: less"),
		log(12, "[ INFO    ]: 10:00:12 | Setting up timezone: UTC"),
		{Time: at(14), Step: "image.base/prepare", Status: engine.StatusDone},
		{Time: at(17), Step: "image.base", Status: engine.StatusDone},
	}
	want := phases{
		"setup": 4 * time.Second, "bootstrap": 0, "install": 8 * time.Second,
		"config": 2 * time.Second, "pack": 3 * time.Second,
	}
	if diff := cmp.Diff(want, oursPhases(events, t0)); diff != "" {
		t.Errorf("oursPhases() of a derived root (-want +got):\n%s", diff)
	}
}
