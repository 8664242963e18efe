package customize

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/imsbuild/imsbuild/builders/sandbox"
	"github.com/imsbuild/imsbuild/spec"
)

// ids is a resolved owner; -1 keeps the uid or gid as it is.
type ids struct{ uid, gid int }

// keep is the ids that change nothing.
func keep() ids { return ids{uid: -1, gid: -1} }

// resolveOwner turns an owner ("user", "user:group", "uid", "uid:gid"; see
// spec.ParseOwner) into ids. Names are looked up in the image's /etc/passwd
// and /etc/group, never the host's: the file belongs to the image. "" keeps
// both ids; an owner without a group keeps the gid.
func resolveOwner(root, owner string) (ids, error) {
	if owner == "" {
		return keep(), nil
	}
	user, group, err := spec.ParseOwner(owner)
	if err != nil {
		return keep(), fmt.Errorf("owner: %w", err)
	}
	o := keep()
	if o.uid, err = lookupID(root, "/etc/passwd", "user", user); err != nil {
		return keep(), fmt.Errorf("owner %q: %w", owner, err)
	}
	if group != "" {
		if o.gid, err = lookupID(root, "/etc/group", "group", group); err != nil {
			return keep(), fmt.Errorf("owner %q: %w", owner, err)
		}
	}
	return o, nil
}

// lookupID returns name as a number when it is one, else the id (third
// field) of the entry called name in db, a passwd(5) or group(5) file of the
// image; what is "user" or "group".
func lookupID(root, db, what, name string) (int, error) {
	if n, err := strconv.ParseUint(name, 10, 32); err == nil {
		return int(n), nil
	}
	notFound := fmt.Errorf("no such %s in the image's %s", what, db)
	rel, err := sandbox.ResolveIn(root, db)
	if err != nil {
		return -1, fmt.Errorf("image %s: %w", db, err)
	}
	p := filepath.Join(root, rel)
	fi, err := os.Lstat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return -1, notFound
	case err != nil:
		return -1, fmt.Errorf("image %s: %w", db, err)
	case !fi.Mode().IsRegular():
		return -1, fmt.Errorf("image %s: not a regular file", db)
	}
	f, err := os.Open(p)
	if err != nil {
		return -1, fmt.Errorf("image %s: %w", db, err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Split(sc.Text(), ":")
		if len(fields) < 3 || fields[0] != name {
			continue
		}
		n, err := strconv.ParseUint(fields[2], 10, 32)
		if err != nil {
			return -1, fmt.Errorf("image %s: %s %q has an invalid id %q", db, what, name, fields[2])
		}
		return int(n), nil
	}
	if err := sc.Err(); err != nil {
		return -1, fmt.Errorf("image %s: %w", db, err)
	}
	return -1, notFound
}
