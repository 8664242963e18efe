// Package atomicfile writes files so that readers see either the old content
// or the complete new content, never a partial file: data goes to a temporary
// file on the same filesystem, which is fsynced, renamed into place, and
// followed by an fsync of the target directory.
//
// A typical streaming use:
//
//	f, err := atomicfile.Create(path, 0o644)
//	if err != nil {
//		return err
//	}
//	defer f.Abort() // no-op after a successful Commit
//	if _, err := io.Copy(f, r); err != nil {
//		return err
//	}
//	return f.Commit()
//
// The permission given to Create is applied exactly (the umask is not used),
// so cache entries and published files get the same modes everywhere.
package atomicfile
