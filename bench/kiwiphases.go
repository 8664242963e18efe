package main

// The phases of a kiwi build, for both sides of the kiwi comparison: raw
// kiwi-ng's from the INFO lines of its log (second resolution), imsbuild's
// from its --json events (kiwi's INFO lines arrive as log events of the
// prepare step, timed by imsbuild; the pack is the image step after it).
// dracut builds the initrd inside package installation on both sides (the
// kernel package's postinst); `kiwi-ng --type kis` then builds a second one,
// its "initrd" phase, which imsbuild does not.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/imsbuild/imsbuild/engine"
)

// phaseNames are the phases in build order.
var phaseNames = []string{"setup", "bootstrap", "install", "config", "pack", "initrd"}

// phases are the durations of one build's phases; a phase that could not
// be told is missing.
type phases map[string]time.Duration

// mark is one INFO line of kiwi: when, and its message.
type mark struct {
	t   time.Time
	msg string
}

// kiwiInfo matches kiwi's "[ INFO    ]: 15:41:33 | Installing bootstrap packages".
var kiwiInfo = regexp.MustCompile(`^\[ INFO\s*\]: (\d\d):(\d\d):(\d\d) \| (.*)$`)

// kiwiMarks returns the INFO lines of a kiwi log written by a run that
// started at start (its clock times are local, without a date).
func kiwiMarks(log string, start time.Time) []mark {
	var ms []mark
	day := time.Date(start.Year(), start.Month(), start.Day(), 0, 0, 0, 0, start.Location())
	for line := range strings.Lines(log) {
		m := kiwiInfo.FindStringSubmatch(strings.TrimRight(line, "\r\n"))
		if m == nil {
			continue
		}
		h, _ := strconv.Atoi(m[1])
		mi, _ := strconv.Atoi(m[2])
		s, _ := strconv.Atoi(m[3])
		t := day.Add(time.Duration(h)*time.Hour + time.Duration(mi)*time.Minute + time.Duration(s)*time.Second)
		if t.Before(start.Truncate(time.Second)) {
			t = t.Add(24 * time.Hour) // past midnight
		}
		ms = append(ms, mark{t, m[4]})
	}
	return ms
}

// find returns the time of the first mark at or after index from whose
// message starts with prefix, and its index; -1 if none.
func find(ms []mark, from int, prefix string) (time.Time, int) {
	for i := max(from, 0); i < len(ms); i++ {
		if strings.HasPrefix(ms[i].msg, prefix) {
			return ms[i].t, i
		}
	}
	return time.Time{}, -1
}

// prepPhases fills setup, bootstrap, install and config from the marks of
// a kiwi prepare that started at start and ended at end (bootstrap 0 for
// one without a bootstrap: a derived root): install ends at
// the first line after "Installing system" that is not one of its
// "--> package" lines.
func prepPhases(p phases, ms []mark, start, end time.Time) {
	boot, bi := find(ms, 0, "Installing bootstrap packages")
	inst, ii := find(ms, bi, "Installing system (chroot)")
	if ii < 0 {
		return
	}
	if bi < 0 {
		// A root derived from a cached one (kiwi --allow-existing-root):
		// no bootstrap; setup holds unpacking the base.
		boot = inst
	}
	p["setup"] = boot.Sub(start)
	p["bootstrap"] = inst.Sub(boot)
	instEnd := end
	for _, m := range ms[ii+1:] {
		if !strings.HasPrefix(m.msg, "-->") {
			instEnd = m.t
			break
		}
	}
	p["install"] = instEnd.Sub(inst)
	p["config"] = end.Sub(instEnd)
}

// rawPhases are the phases of `kiwi-ng --type kis system build`: prepare
// until "Creating system image", the pack until "Creating boot image" (the
// rootfs image, its checksum, the kernel) and the initrd after it.
func rawPhases(ms []mark, start, end time.Time) phases {
	p := phases{}
	build, bi := find(ms, 0, "Creating system image")
	if bi < 0 {
		return p
	}
	prepPhases(p, ms[:bi], start, build)
	if boot, i := find(ms, bi, "Creating boot image"); i >= 0 {
		p["pack"] = boot.Sub(build)
		p["initrd"] = end.Sub(boot)
	}
	return p
}

// oursPhases are the phases of an imsbuild build from its --json events:
// setup from start to kiwi's bootstrap (the engine, fetching and rendering
// the recipe, waiting for its repositories), kiwi's phases from the log
// events of the prepare step until it is done, and the pack from then until
// its image step is done (the scheduler starts the image step before its
// prepare sub-step).
func oursPhases(events []engine.Event, start time.Time) phases {
	p := phases{}
	var ms []mark
	var image string
	var prepDone time.Time
	for _, ev := range events {
		if img, ok := strings.CutSuffix(ev.Step, "/prepare"); ok {
			switch ev.Status {
			case engine.StatusLog:
				if m := kiwiInfo.FindStringSubmatch(ev.Line); m != nil {
					ms = append(ms, mark{ev.Time, m[4]})
				}
			case engine.StatusDone:
				image, prepDone = img, ev.Time
			}
		}
	}
	if prepDone.IsZero() {
		return p
	}
	prepPhases(p, ms, start, prepDone)
	for _, ev := range events {
		if ev.Step == image && ev.Status == engine.StatusDone {
			p["pack"] = ev.Time.Sub(prepDone)
		}
	}
	return p
}

// buildPhases runs `imsbuild args… --json` with kiwiCache as its kiwi
// cache dir and returns the build's phases.
func buildPhases(kiwiCache, bin string, args ...string) phases {
	cmd := privateCache(kiwiCache, engine.DefaultKiwiCacheDir, bin, append(args[:len(args):len(args)], "--json")...)
	cmd.Stderr = os.Stderr
	start := time.Now()
	out, err := cmd.Output()
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s %v: %v\n%s", bin, args, err, tailLines(string(out), 30))
		os.Exit(1)
	}
	var events []engine.Event
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var ev engine.Event
		if json.Unmarshal(sc.Bytes(), &ev) == nil {
			events = append(events, ev)
		}
	}
	return oursPhases(events, start)
}

// String lists the phases in build order, as they progress.
func (p phases) String() string {
	var parts []string
	for _, n := range phaseNames {
		if d, ok := p[n]; ok {
			parts = append(parts, fmt.Sprintf("%s %v", n, d.Round(100*time.Millisecond)))
		}
	}
	return strings.Join(parts, ", ")
}

// phaseTable prints each phase's median over the runs of both sides,
// "install 150s/500s", "–" where a side has no such phase.
func phaseTable(ours, raw []phases) string {
	med := func(ps []phases, name string) string {
		var ds []time.Duration
		for _, p := range ps {
			if d, ok := p[name]; ok {
				ds = append(ds, d)
			}
		}
		if len(ds) == 0 {
			return "–"
		}
		slices.Sort(ds)
		return ds[len(ds)/2].Round(100 * time.Millisecond).String()
	}
	var parts []string
	for _, n := range phaseNames {
		parts = append(parts, fmt.Sprintf("%s %s/%s", n, med(ours, n), med(raw, n)))
	}
	return strings.Join(parts, ", ") + " (imsbuild/kiwi-ng, medians)"
}
